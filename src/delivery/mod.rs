//! Delivery workers: one per destination, so a failing service never delays another. Each
//! claims due deliveries with a lease, sends them, and records the attempt: delivered, a
//! retry at the next step of its schedule (never sooner than `Retry-After`), or dead.
//! New deliveries wake their worker at once; due retries are picked up on time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::config::{DeliveryConfig, DestinationConfig};
use crate::destination::{self, Destination, Outcome, Outgoing};
use crate::mapping::Operation;
use crate::store::{Attempt, ClaimedDelivery, Recorded, Store, StoreError, now_ms};

/// The longest a worker sleeps between looks at its queue (waiting deliveries and expired
/// leases are noticed within this).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long a worker backs off after the store failed.
const STORE_BACKOFF: Duration = Duration::from_secs(2);

pub struct Worker {
    destination_id: String,
    destination: Box<dyn Destination>,
    /// Without credentials: record the request that would have been sent, send nothing.
    dry: bool,
    store: Arc<dyn Store>,
    client: reqwest::Client,
    retry_schedule: Vec<Duration>,
    delivery: DeliveryConfig,
    /// Notified by the receive path when it stored deliveries for this destination; a
    /// notification while the worker is busy is kept, so none is lost.
    wake: Arc<Notify>,
}

impl Worker {
    pub fn new(
        config: &DestinationConfig,
        delivery: &DeliveryConfig,
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
    ) -> Result<Worker, String> {
        Ok(Worker {
            destination_id: config.id.clone(),
            destination: destination::build(config)?,
            dry: config.is_dry(),
            store,
            client: destination::client(config.connect_timeout, config.timeout),
            retry_schedule: config.retry_schedule.clone(),
            delivery: delivery.clone(),
            wake,
        })
    }

    /// Works until `shutdown` turns true; the attempt in progress is finished and recorded.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(destination = %self.destination_id, dry = self.dry, "delivery worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.work_once().await {
                Ok(true) => continue,
                Ok(false) => self.idle_wait().await,
                Err(err) => {
                    tracing::error!(destination = %self.destination_id, error = %err, "delivery worker cannot reach the store; backing off");
                    STORE_BACKOFF
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(destination = %self.destination_id, "delivery worker stopped");
    }

    /// Claims and sends one batch; `false` when nothing was due.
    async fn work_once(&self) -> Result<bool, StoreError> {
        let now = now_ms();
        self.store
            .release_waiting_deliveries(
                &self.destination_id,
                now,
                millis(self.delivery.waiting_timeout),
            )
            .await?;
        let batch = self
            .store
            .claim_due_deliveries(
                &self.destination_id,
                self.destination.max_batch(),
                now,
                millis(self.delivery.lease),
            )
            .await?;
        if batch.is_empty() {
            return Ok(false);
        }
        let ids: Vec<i64> = batch.iter().map(|d| d.id).collect();
        let started_at_ms = now_ms();
        let started = Instant::now();
        let recorded = match outgoing(&batch) {
            Ok(outgoing) => self.attempt(&batch, &outgoing).await,
            Err(reason) => Recorded::Dead { reason },
        };
        let attempt = Attempt {
            started_at_ms,
            duration_ms: started.elapsed().as_millis() as i64,
            recorded,
        };
        log_attempt(&self.destination_id, &ids, &attempt);
        self.store.record_attempt(&ids, &attempt).await?;
        Ok(true)
    }

    async fn attempt(&self, batch: &[ClaimedDelivery], outgoing: &[Outgoing]) -> Recorded {
        if self.dry {
            return match self.destination.request(outgoing) {
                Ok(request) => Recorded::DryRun {
                    request: serde_json::to_string(&request.shown()).expect("a request serialises"),
                },
                Err(reason) => Recorded::Dead { reason },
            };
        }
        match destination::send(&self.client, self.destination.as_ref(), outgoing).await {
            Outcome::Delivered {
                response,
                conversion_id,
                ..
            } => Recorded::Delivered {
                response,
                conversion_id,
            },
            Outcome::Failed { reason } => Recorded::Dead { reason },
            Outcome::Retry { after, reason } => {
                let attempts = batch.iter().map(|d| d.attempts).max().unwrap_or(1);
                match next_retry(&self.retry_schedule, attempts, after) {
                    Some(wait) => Recorded::Retry {
                        next_attempt_at_ms: now_ms() + millis(wait),
                        reason,
                    },
                    None => Recorded::Dead {
                        reason: format!("gave up after {attempts} attempts: {reason}"),
                    },
                }
            }
        }
    }

    /// Until the next delivery falls due, at most [`IDLE_POLL`].
    async fn idle_wait(&self) -> Duration {
        match self.store.next_due_at(&self.destination_id).await {
            Ok(Some(due)) => Duration::from_millis((due - now_ms()).max(0) as u64).min(IDLE_POLL),
            _ => IDLE_POLL,
        }
    }
}

/// The wait before the next attempt after `attempts` failed ones: the schedule's step with
/// ±20 % jitter, never shorter than the destination's `Retry-After`; `None` past the end.
pub fn next_retry(
    schedule: &[Duration],
    attempts: i64,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let step = *schedule.get(usize::try_from(attempts - 1).ok()?)?;
    let jittered = step.mul_f64(0.8 + 0.4 * fastrand::f64());
    Some(retry_after.map_or(jittered, |after| after.max(jittered)))
}

fn outgoing(batch: &[ClaimedDelivery]) -> Result<Vec<Outgoing>, String> {
    batch
        .iter()
        .map(|d| {
            let operation: Operation =
                serde_json::from_value(Value::String(d.operation.clone()))
                    .map_err(|_| format!("unknown operation `{}`", d.operation))?;
            let payload: Value = serde_json::from_str(&d.payload)
                .map_err(|e| format!("stored payload is not JSON: {e}"))?;
            Ok(Outgoing {
                delivery_id: d.id,
                operation,
                payload,
                conversion_id: d.conversion_id.clone(),
            })
        })
        .collect()
}

fn log_attempt(destination: &str, ids: &[i64], attempt: &Attempt) {
    let duration_ms = attempt.duration_ms;
    match &attempt.recorded {
        Recorded::Delivered { .. } => {
            tracing::info!(destination, deliveries = ?ids, duration_ms, "delivered")
        }
        Recorded::DryRun { .. } => {
            tracing::info!(destination, deliveries = ?ids, "dry run: request recorded, nothing sent")
        }
        Recorded::Retry { reason, .. } => {
            tracing::warn!(destination, deliveries = ?ids, duration_ms, %reason, "attempt failed; retry scheduled")
        }
        Recorded::Dead { reason } => {
            tracing::error!(destination, deliveries = ?ids, duration_ms, %reason, "delivery dead")
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_schedule_with_jitter_and_respect_retry_after() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(30)];
        for _ in 0..100 {
            let first = next_retry(&schedule, 1, None).unwrap();
            assert!(
                first >= Duration::from_secs(4) && first <= Duration::from_secs(6),
                "{first:?}"
            );
            let second = next_retry(&schedule, 2, None).unwrap();
            assert!(second >= Duration::from_secs(24) && second <= Duration::from_secs(36));
            let slowed = next_retry(&schedule, 1, Some(Duration::from_secs(60))).unwrap();
            assert_eq!(slowed, Duration::from_secs(60));
        }
        assert_eq!(next_retry(&schedule, 3, None), None, "past the end: dead");
    }
}
