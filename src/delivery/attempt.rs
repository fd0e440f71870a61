//! One attempt: a request's worth of claimed deliveries sent to the destination (or, dry,
//! only made), and its answer turned into what to record: delivered, a retry at the next
//! step of the schedule (never sooner than `Retry-After`), dead, or a refused batch split.

use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;

use super::breaker::Breaker;
use super::clock::Clock;
use super::schedule::{millis, next_retry};
use crate::config::DestinationConfig;
use crate::destination::{self, Destination, Outcome, Outgoing};
use crate::domain::{Operation, Redactions};
use crate::store::{Attempt, ClaimedDelivery, Recorded};

/// What a worker sends with: its destination, the HTTP client, the rate limit and the
/// retry schedule.
pub(super) struct Sender {
    pub(super) destination_id: String,
    destination: Box<dyn Destination>,
    /// Without credentials: record the request that would have been sent, send nothing.
    pub(super) dry: bool,
    client: reqwest::Client,
    /// Shared by every lane; it keeps its own clock.
    rate_limit: Option<DefaultDirectRateLimiter>,
    retry_schedule: Vec<Duration>,
    /// Redacted from the destination's answers before they are logged or recorded.
    secrets: Redactions,
}

impl Sender {
    pub(super) fn new(config: &DestinationConfig, secrets: Redactions) -> Sender {
        Sender {
            destination_id: config.id.clone(),
            destination: destination::build(config),
            dry: config.is_dry(),
            client: destination::client(config.connect_timeout, config.timeout),
            rate_limit: config
                .rate_limit_per_second
                .map(|n| RateLimiter::direct(Quota::per_second(n))),
            retry_schedule: config.retry_schedule.clone(),
            secrets,
        }
    }

    /// Deliveries per request.
    pub(super) fn max_batch(&self) -> usize {
        self.destination.max_batch().max(1)
    }

    /// Sends one request's worth of deliveries, counting its outcome in `breaker`; the batch
    /// with the attempt to record.
    pub(super) async fn request<'a>(
        &self,
        batch: &'a [ClaimedDelivery],
        breaker: &Breaker,
        clock: &Clock,
    ) -> (&'a [ClaimedDelivery], Attempt) {
        let started_at_ms = clock.now_ms();
        let started = clock.now();
        let (recorded, http_status) = match outgoing(batch) {
            Ok(outgoing) => self.attempt(batch, &outgoing, breaker, clock).await,
            Err(reason) => (refused(batch, reason, None), None),
        };
        let attempt = Attempt {
            started_at_ms,
            duration_ms: clock.now().saturating_duration_since(started).as_millis() as i64,
            http_status,
            recorded,
        };
        log_attempt(&self.destination_id, batch, &attempt);
        let ages: Vec<i64> = batch
            .iter()
            .map(|d| (started_at_ms - d.created_at_ms).max(0) + attempt.duration_ms)
            .collect();
        let outcome = match &attempt.recorded {
            Recorded::Delivered { .. } => "delivered",
            Recorded::DryRun { .. } => "dry_run",
            Recorded::Retry { .. } => "retry",
            Recorded::Dead { .. } => "dead",
            Recorded::Split { .. } => "split",
        };
        crate::observe::attempted(&self.destination_id, outcome, &ages);
        (batch, attempt)
    }

    /// Sends `outgoing` (or, dry, makes its request only); what to record, and the HTTP
    /// status of the answer when there was one.
    async fn attempt(
        &self,
        batch: &[ClaimedDelivery],
        outgoing: &[Outgoing],
        breaker: &Breaker,
        clock: &Clock,
    ) -> (Recorded, Option<u16>) {
        if self.dry {
            let recorded = match destination::request(self.destination.as_ref(), outgoing) {
                Ok(request) => Recorded::DryRun {
                    request: serde_json::to_string(&request.shown()).expect("a request serialises"),
                },
                Err(reason) => Recorded::Dead { reason },
            };
            return (recorded, None);
        }
        if let Some(limit) = &self.rate_limit {
            limit.until_ready().await;
        }
        let outcome = destination::send(
            &self.client,
            self.destination.as_ref(),
            outgoing,
            &self.secrets,
        )
        .await;
        breaker.count(&outcome);
        let http_status = outcome.http_status();
        let recorded = match outcome {
            Outcome::Delivered {
                response,
                conversion_id,
                ..
            } => Recorded::Delivered {
                response,
                conversion_id,
            },
            Outcome::Failed { reason, status } => refused(batch, reason, status),
            Outcome::Retry { after, reason, .. } => {
                let attempts = batch.iter().map(|d| d.attempts).max().unwrap_or(1);
                match next_retry(&self.retry_schedule, attempts, after) {
                    Some(wait) => Recorded::Retry {
                        next_attempt_at_ms: clock.now_ms() + millis(wait),
                        reason,
                    },
                    None => Recorded::Dead {
                        reason: format!("gave up after {attempts} attempts: {reason}"),
                    },
                }
            }
        };
        (recorded, http_status)
    }
}

/// What a refusal of `batch` (with the answer's `status`, if any) makes of it: dead, or for
/// a batch of several, [`Recorded::Split`]: its deliveries are sent again one a request, so
/// that a single event the destination cannot take (a Legion batch holds up to 50) kills
/// itself only. Only for refusals that may be about one event: a payload the store cannot
/// read (no request was sent), 400, 413 (the batch too large), 422, and a refusal in a 2xx
/// body. Any other answer (a key refused, a URL moved or gone) would refuse every
/// delivery alone as well; splitting would only multiply the requests.
fn refused(batch: &[ClaimedDelivery], reason: String, status: Option<u16>) -> Recorded {
    if batch.len() > 1 && matches!(status, None | Some(200..=299 | 400 | 413 | 422)) {
        Recorded::Split { reason }
    } else {
        Recorded::Dead { reason }
    }
}

fn outgoing(batch: &[ClaimedDelivery]) -> Result<Vec<Outgoing>, String> {
    batch
        .iter()
        .map(|d| {
            let operation: Operation = d
                .operation
                .parse()
                .map_err(|_| format!("unknown operation `{}`", d.operation))?;
            let payload: Value = serde_json::from_str(&d.payload)
                .map_err(|e| format!("stored payload is not JSON: {e}"))?;
            Ok(Outgoing {
                delivery_id: d.id,
                mapping: d.mapping.clone(),
                key: d.key.clone(),
                operation,
                payload,
                conversion_id: d.conversion_id.clone(),
            })
        })
        .collect()
}

fn log_attempt(destination: &str, batch: &[ClaimedDelivery], attempt: &Attempt) {
    let ids: Vec<i64> = batch.iter().map(|d| d.id).collect();
    let mut mappings: Vec<&str> = batch.iter().map(|d| d.mapping.as_str()).collect();
    mappings.dedup();
    let duration_ms = attempt.duration_ms;
    match &attempt.recorded {
        Recorded::Delivered { .. } => {
            tracing::info!(destination, deliveries = ?ids, ?mappings, duration_ms, "delivered")
        }
        Recorded::DryRun { .. } => {
            tracing::info!(destination, deliveries = ?ids, ?mappings, "dry run: request recorded, nothing sent")
        }
        Recorded::Retry { reason, .. } => {
            tracing::warn!(destination, deliveries = ?ids, ?mappings, duration_ms, %reason, "attempt failed; retry scheduled")
        }
        Recorded::Dead { reason } => {
            tracing::error!(destination, deliveries = ?ids, ?mappings, duration_ms, %reason, "delivery dead")
        }
        Recorded::Split { reason } => {
            tracing::warn!(destination, deliveries = ?ids, ?mappings, duration_ms, %reason, "batch refused; each delivery is sent again alone, so that only those refused go dead")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_batch_is_split_only_when_the_refusal_may_be_about_one_event() {
        let delivery = |id| ClaimedDelivery::example(id, "m");
        let two = [delivery(1), delivery(2)];
        let split = |batch: &[ClaimedDelivery], status| {
            matches!(refused(batch, "no".into(), status), Recorded::Split { .. })
        };
        assert!(split(&two, Some(400)));
        assert!(split(&two, Some(413)), "too large a batch");
        assert!(split(&two, Some(200)), "a refusal in a 2xx body");
        assert!(split(&two, None), "a stored payload that is not JSON");
        assert!(split(&two, Some(422)));
        for status in [301, 401, 403, 404, 405, 410] {
            assert!(!split(&two, Some(status)), "{status}");
        }
        assert!(!split(&two[..1], Some(400)), "one delivery alone is dead");
    }
}
