//! Delivery workers: one per destination, so a failing service never delays another. Each
//! claims due deliveries with a lease, sends them, and records the attempt: delivered, a
//! retry at the next step of its schedule (never sooner than `Retry-After`), or dead.
//! New deliveries wake their worker at once; due retries are picked up on time. A rate
//! limit spaces the requests; a circuit breaker pauses a destination after failures in a row.
//! Each round claims up to a few requests a lane's worth of due deliveries at once (see
//! [`round_size`]), sends them `concurrency` requests at a time, and records all their
//! attempts in one transaction: the store sees two writes per round, not two per request,
//! which kept deliveries from starving ingest of SQLite's single writer. A request not yet
//! started when the circuit opens or the service stops is not sent: its lease is released.
//! On shutdown the round in flight may finish up to `delivery.shutdown_grace`; then the attempts that finished are recorded and the leases
//! of the others released, so the next start sends those deliveries at once instead of
//! waiting for the lease to expire, and never sends again one that was answered. A batch
//! of several deliveries that the destination refuses is sent again one delivery a request,
//! in the same round, so that one bad Legion event does not kill the 49 beside it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::config::{DeliveryConfig, DestinationConfig};
use crate::destination::{self, Destination, Outcome, Outgoing};
use crate::domain::Operation;
use crate::store::{Attempt, ClaimedDelivery, Recorded, Store, StoreError, now_ms};

/// The longest a worker sleeps between looks at its queue (waiting deliveries and expired
/// leases are noticed within this).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// After a wake-up, or a round that did not fill, how long a worker lets more deliveries
/// arrive before it claims, so that batches fill (Legion takes 50 events a request) and
/// rounds stay few under load: each round is two writes (claim, record). Without it after
/// part-filled rounds, a steady 2,000 webhooks/s kept both workers claiming back to back,
/// a few deliveries a round, and their writes were most of the store's commits.
const CLAIM_LINGER: Duration = Duration::from_millis(50);

/// How long after `delivery.shutdown_grace` a round may take to record the attempts that
/// finished, before the worker is abandoned with its leases (they then expire).
const RECORD_AFTER_GRACE: Duration = Duration::from_secs(2);
/// How often, at most, a worker moves its `waiting` deliveries on (a write transaction, so
/// not on every claim).
const RELEASE_WAITING_EVERY: Duration = Duration::from_millis(250);
/// How long a worker backs off after the store failed.
const STORE_BACKOFF: Duration = Duration::from_secs(2);
/// The most requests a round holds per lane (see [`round_size`]).
const MAX_REQUESTS_PER_LANE: usize = 8;

/// How much a round claimed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Round {
    /// Nothing was due.
    Empty,
    /// Less than a round holds: what was due is sent, the next round can wait a little.
    Partial,
    /// As much as a round holds: more may be due at once.
    Full,
}

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
    rate_limit: Option<DefaultDirectRateLimiter>,
    breaker_failures: u32,
    breaker_cool_down: Duration,
    /// Failed attempts in a row; at `breaker_failures` the worker pauses.
    failures_in_a_row: AtomicU32,
    concurrency: usize,
    /// How many deliveries a round claims ([`round_size`]).
    round_size: usize,
    /// Deliveries claimed and not yet recorded, released if the shutdown grace runs out.
    held: Mutex<HashSet<i64>>,
    /// Attempts made whose record failed: recorded before anything else is claimed, so a
    /// delivery that was answered is not sent again when its lease expires.
    unrecorded: Mutex<Vec<(Vec<i64>, Attempt)>>,
}

impl Worker {
    pub fn new(
        config: &DestinationConfig,
        delivery: &DeliveryConfig,
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
    ) -> Result<Worker, String> {
        let destination = destination::build(config)?;
        Ok(Worker {
            destination_id: config.id.clone(),
            round_size: round_size(config, destination.max_batch(), delivery.lease),
            destination,
            dry: config.is_dry(),
            store,
            client: destination::client(config.connect_timeout, config.timeout),
            retry_schedule: config.retry_schedule.clone(),
            delivery: delivery.clone(),
            wake,
            rate_limit: config
                .rate_limit_per_second
                .map(|n| RateLimiter::direct(Quota::per_second(n))),
            breaker_failures: config.breaker_failures,
            breaker_cool_down: config.breaker_cool_down,
            failures_in_a_row: AtomicU32::new(0),
            concurrency: config.concurrency.max(1),
            held: Mutex::new(HashSet::new()),
            unrecorded: Mutex::new(Vec::new()),
        })
    }

    /// Works until `shutdown` turns true; attempts in flight are then finished and recorded
    /// for up to `delivery.shutdown_grace`, and the leases of those still unfinished are
    /// released.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(destination = %self.destination_id, dry = self.dry, concurrency = self.concurrency, round_size = self.round_size, "delivery worker started");
        let worker = Arc::new(self);
        // A task of its own, so the grace below can abandon it.
        let mut rounds = tokio::spawn(worker.clone().work_rounds(shutdown.clone()));
        // A dropped sender means the service is going away: stop as well.
        let _ = shutdown.wait_for(|stop| *stop).await;
        // The round in flight records what finished by the end of the grace itself; this
        // bound is for a store that does not answer.
        let grace = worker.delivery.shutdown_grace + RECORD_AFTER_GRACE;
        if tokio::time::timeout(grace, &mut rounds).await.is_err() {
            rounds.abort();
            let _ = rounds.await;
            worker.release_held(Release::GraceOver).await;
        }
        tracing::info!(destination = %worker.destination_id, "delivery worker stopped");
    }

    /// Gives back the leases of every delivery still held, for the reason `why`.
    async fn release_held(&self, why: Release) {
        let held: Vec<i64> = self.held.lock().expect("held ids").drain().collect();
        self.release(held, why).await;
    }

    /// Gives back the leases of `held` (no longer in [`Worker::held`]), for the reason `why`.
    async fn release(&self, held: Vec<i64>, why: Release) {
        if held.is_empty() {
            return;
        }
        let what = match why {
            Release::GraceOver => "shutdown grace over: attempts in flight abandoned",
            Release::ClaimedAhead => "stopping: the round claimed ahead is not sent",
            Release::NotStarted => "circuit open or stopping: the rest of the round is not sent",
        };
        match self.store.release_leases(&held).await {
            Ok(released) => tracing::warn!(
                destination = %self.destination_id,
                deliveries = ?held,
                released,
                "{what}; their leases released, they are sent again at the next start"
            ),
            Err(err) => tracing::error!(
                destination = %self.destination_id,
                deliveries = ?held,
                error = %err,
                "{what}, and the leases could not be released: they are claimed again when they expire"
            ),
        }
    }

    /// Claims and sends rounds until `shutdown` turns true.
    async fn work_rounds(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        // Until when the open circuit pauses this destination (wake-ups do not end it).
        let mut paused_until: Option<Instant> = None;
        // When `waiting` deliveries were last moved on.
        let mut waiting_released_at: Option<Instant> = None;
        // The next round, claimed with the record of a full one.
        let mut ahead: Vec<ClaimedDelivery> = Vec::new();
        loop {
            let recorded = self.record_unrecorded().await;
            if *shutdown.borrow() {
                // between rounds, what is held is the round claimed ahead, if any
                self.release_held(Release::ClaimedAhead).await;
                break;
            }
            if !recorded {
                tokio::select! {
                    () = tokio::time::sleep(STORE_BACKOFF) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let pause_left = paused_until
                .and_then(|until| until.checked_duration_since(Instant::now()))
                .filter(|left| !left.is_zero());
            let wait = if let Some(pause) = pause_left {
                pause
            } else {
                // Also between rounds claimed ahead: under a steady backlog every round is,
                // and the status updates would wait for the backlog to end.
                let release_waiting =
                    waiting_released_at.is_none_or(|at| at.elapsed() >= RELEASE_WAITING_EVERY);
                if release_waiting {
                    waiting_released_at = Some(Instant::now());
                }
                match self
                    .work_once(release_waiting, std::mem::take(&mut ahead), &shutdown)
                    .await
                    .map(|(round, next)| {
                        ahead = next;
                        round
                    }) {
                    Ok(round) if round != Round::Empty && self.breaker_open() => {
                        tracing::warn!(
                            destination = %self.destination_id,
                            failures = self.breaker_failures,
                            cool_down_ms = self.breaker_cool_down.as_millis() as u64,
                            "circuit open: pausing this destination"
                        );
                        self.failures_in_a_row.store(0, Ordering::Relaxed);
                        paused_until = Some(Instant::now() + self.breaker_cool_down);
                        self.breaker_cool_down
                    }
                    Ok(Round::Full) => continue,
                    Ok(Round::Partial) => Duration::ZERO,
                    Ok(Round::Empty) => self.idle_wait().await,
                    Err(err) => {
                        tracing::error!(destination = %self.destination_id, error = %err, "delivery worker cannot reach the store; backing off");
                        STORE_BACKOFF
                    }
                }
            };
            // A part-filled round (`wait` zero) lingers as a wake-up does.
            let woken = wait.is_zero()
                || tokio::select! {
                    () = self.wake.notified() => true,
                    () = tokio::time::sleep(wait) => false,
                    _ = shutdown.changed() => false,
                };
            if woken {
                tokio::select! {
                    () = tokio::time::sleep(CLAIM_LINGER) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// Sends one round, `ahead` if it was claimed already, else what it claims, after
    /// moving `waiting` deliveries on when `release_waiting`; how full the round was, and
    /// the next round when this one was full (claimed with its record, in one write),
    /// unless `shutdown` came meanwhile.
    async fn work_once(
        &self,
        release_waiting: bool,
        ahead: Vec<ClaimedDelivery>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(Round, Vec<ClaimedDelivery>), StoreError> {
        let now = now_ms();
        if release_waiting {
            let released = self
                .store
                .release_waiting_deliveries(
                    &self.destination_id,
                    now,
                    millis(self.delivery.waiting_timeout),
                )
                .await;
            // A round claimed ahead is sent all the same (returning here would drop it, and
            // its leases would have to expire); the next release tries again.
            if let Err(err) = released {
                if ahead.is_empty() {
                    return Err(err);
                }
                tracing::error!(destination = %self.destination_id, error = %err, "cannot move waiting deliveries on; sending the round claimed ahead");
            }
        }
        let max_batch = self.destination.max_batch().max(1);
        let limit = self.round_size;
        let claimed = if ahead.is_empty() {
            self.store
                .claim_due_deliveries(
                    &self.destination_id,
                    limit,
                    now,
                    millis(self.delivery.lease),
                )
                .await?
        } else {
            ahead
        };
        if claimed.is_empty() {
            return Ok((Round::Empty, Vec::new()));
        }
        let round = if claimed.len() < limit {
            Round::Partial
        } else {
            Round::Full
        };
        let ids: Vec<i64> = claimed.iter().map(|d| d.id).collect();
        self.held.lock().expect("held ids").extend(&ids);
        let (attempts, not_started, abandoned) = self.send_all(&claimed, max_batch, shutdown).await;
        // A full round leaves more due, likely: claim the next with this record (one write,
        // not two), unless the circuit is about to open or the service is stopping (a
        // shutdown whose grace ran out during that write would abort it before the claimed
        // ids are held, and their leases would only expire).
        let recorded = if round == Round::Full && !self.breaker_open() && !*shutdown.borrow() {
            self.store
                .record_attempts_and_claim(
                    &attempts,
                    &self.destination_id,
                    limit,
                    now_ms(),
                    millis(self.delivery.lease),
                )
                .await
        } else {
            self.store
                .record_attempts(&attempts)
                .await
                .map(|()| Vec::new())
        };
        // Recorded or not, the leases of the attempts made are no longer this round's to
        // release (released, they would be sent again at once): an attempt not recorded is
        // kept, and recorded before the next round.
        {
            let mut held = self.held.lock().expect("held ids");
            // A split batch's deliveries are held until their own attempts finish.
            let finished = attempts
                .iter()
                .filter(|(_, attempt)| !matches!(attempt.recorded, Recorded::Split { .. }));
            for id in finished.flat_map(|(ids, _)| ids).chain(&not_started) {
                held.remove(id);
            }
            if let Ok(next) = &recorded {
                held.extend(next.iter().map(|d| d.id));
            }
        }
        if recorded.is_err() {
            self.unrecorded.lock().expect("unrecorded").extend(attempts);
        }
        // Only those: the circuit may have closed again meanwhile (an answer in flight
        // came back), and the next round been claimed with the record.
        self.release(not_started, Release::NotStarted).await;
        if abandoned {
            // What is still held is the requests the grace cut short.
            self.release_held(Release::GraceOver).await;
        }
        Ok((round, recorded?))
    }

    /// Records the attempts whose record failed before, if any; whether none is left.
    async fn record_unrecorded(&self) -> bool {
        let attempts = std::mem::take(&mut *self.unrecorded.lock().expect("unrecorded"));
        if attempts.is_empty() {
            return true;
        }
        match self.store.record_attempts(&attempts).await {
            Ok(()) => {
                tracing::info!(destination = %self.destination_id, attempts = attempts.len(), "attempts recorded after a failed record");
                true
            }
            Err(err) => {
                let deliveries: Vec<i64> =
                    attempts.iter().flat_map(|(ids, _)| ids.clone()).collect();
                tracing::error!(destination = %self.destination_id, ?deliveries, error = %err, "cannot record attempts made; nothing more is claimed until they are recorded");
                self.unrecorded.lock().expect("unrecorded").extend(attempts);
                false
            }
        }
    }

    /// Sends `claimed`, `max_batch` deliveries a request, `concurrency` requests at a time;
    /// their attempts, in the order they finished. A refused request of several deliveries
    /// is sent again one delivery a request ([`Recorded::Split`]). A request whose turn
    /// comes once the circuit is open or `shutdown` has come is not started: its
    /// deliveries come second, left out of the attempts. Once `delivery.shutdown_grace`
    /// has passed after `shutdown`, the requests not finished are given up: then `true`,
    /// and their deliveries are left out of both (still held).
    async fn send_all(
        &self,
        claimed: &[ClaimedDelivery],
        max_batch: usize,
        shutdown: &watch::Receiver<bool>,
    ) -> (Vec<(Vec<i64>, Attempt)>, Vec<i64>, bool) {
        use futures::StreamExt as _;
        // At most `concurrency` requests in flight, the split batches' ones included.
        let lanes = tokio::sync::Semaphore::new(self.concurrency);
        let send = |batch| {
            let lanes = &lanes;
            async move {
                let _lane = lanes
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                if self.breaker_open() || *shutdown.borrow() {
                    return Err(batch);
                }
                Ok(self.request(batch).await)
            }
        };
        let mut requests: futures::stream::FuturesUnordered<_> =
            claimed.chunks(max_batch).map(send).collect();
        let mut attempts = Vec::with_capacity(requests.len());
        let mut not_started = Vec::new();
        let mut stop = shutdown.clone();
        let grace = self.delivery.shutdown_grace;
        let grace_over = async move {
            // A dropped sender is a stop too.
            let _ = stop.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(grace_over);
        loop {
            tokio::select! {
                sent = requests.next() => match sent {
                    Some(Err(batch)) => not_started.extend(batch.iter().map(|d| d.id)),
                    Some(Ok((batch, attempt))) => {
                        if matches!(attempt.recorded, Recorded::Split { .. }) {
                            requests.extend(batch.chunks(1).map(send));
                        }
                        attempts.push((batch.iter().map(|d| d.id).collect(), attempt));
                    }
                    None => return (attempts, not_started, false),
                },
                () = &mut grace_over => return (attempts, not_started, true),
            }
        }
    }

    /// Sends one request's worth of deliveries; the batch with the attempt to record.
    async fn request<'a>(&self, batch: &'a [ClaimedDelivery]) -> (&'a [ClaimedDelivery], Attempt) {
        let started_at_ms = now_ms();
        let started = Instant::now();
        let (recorded, http_status) = match outgoing(batch) {
            Ok(outgoing) => self.attempt(batch, &outgoing).await,
            Err(reason) => (refused(batch, reason, None), None),
        };
        let attempt = Attempt {
            started_at_ms,
            duration_ms: started.elapsed().as_millis() as i64,
            http_status,
            recorded,
        };
        let ids: Vec<i64> = batch.iter().map(|d| d.id).collect();
        log_attempt(&self.destination_id, &ids, &attempt);
        (batch, attempt)
    }

    /// Sends `outgoing` (or, dry, makes its request only); what to record, and the HTTP
    /// status of the answer when there was one.
    async fn attempt(
        &self,
        batch: &[ClaimedDelivery],
        outgoing: &[Outgoing],
    ) -> (Recorded, Option<u16>) {
        if self.dry {
            let recorded = match self.destination.request(outgoing) {
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
        let outcome = destination::send(&self.client, self.destination.as_ref(), outgoing).await;
        // Only an unreachable or failing service opens the circuit; an answer, even a
        // refusal of one payload, shows it is up.
        if matches!(outcome, Outcome::Retry { .. }) {
            self.failures_in_a_row.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
        }
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
                        next_attempt_at_ms: now_ms() + millis(wait),
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

    fn breaker_open(&self) -> bool {
        self.failures_in_a_row.load(Ordering::Relaxed) >= self.breaker_failures
    }

    /// Until the next delivery falls due, at most [`IDLE_POLL`].
    async fn idle_wait(&self) -> Duration {
        match self.store.next_due_at(&self.destination_id).await {
            Ok(Some(due)) => Duration::from_millis((due - now_ms()).max(0) as u64).min(IDLE_POLL),
            _ => IDLE_POLL,
        }
    }
}

/// Why a worker gives back the leases it holds.
#[derive(Clone, Copy)]
enum Release {
    /// The shutdown grace ran out with requests in flight.
    GraceOver,
    /// The service stops between rounds, with the next round claimed ahead.
    ClaimedAhead,
    /// Requests of the round were not started: the circuit opened, or the service stops.
    NotStarted,
}

/// How many deliveries a round of `destination` claims: `concurrency` lanes of requests of
/// `max_batch` deliveries (1 for a destination that takes one a request), and as many
/// requests a lane as end within the `lease` even if each takes its whole `timeout`
/// and the rate limit spaces them, up to [`MAX_REQUESTS_PER_LANE`], and at least one. A
/// round is two writes (its claim; its record with the next round's claim) whatever it
/// holds: with one request a lane, a steady 2,000 Salekit deliveries a second (one a
/// request, 4 lanes) were 500 records a second, a fifth of the store's commits.
pub fn round_size(destination: &DestinationConfig, max_batch: usize, lease: Duration) -> usize {
    let lanes = destination.concurrency.max(1);
    let by_timeout = lease.as_millis() / destination.timeout.as_millis().max(1);
    let by_rate = destination.rate_limit_per_second.map_or(u128::MAX, |rate| {
        (lease.as_secs_f64() * f64::from(rate.get()) / lanes as f64) as u128
    });
    let per_lane = by_timeout
        .min(by_rate)
        .min(MAX_REQUESTS_PER_LANE as u128)
        .max(1) as usize;
    max_batch.max(1) * lanes * per_lane
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
        Recorded::Split { reason } => {
            tracing::warn!(destination, deliveries = ?ids, duration_ms, %reason, "batch refused; each delivery is sent again alone, so that only those refused go dead")
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

    #[test]
    fn a_round_holds_several_requests_a_lane_within_its_lease_and_rate() {
        let config =
            crate::config::Config::parse(crate::config::EMBEDDED, "storehook.toml", &|_| None)
                .expect("the shipped configuration loads");
        let mut salekit = config.destinations["salekit"].clone();
        salekit.rate_limit_per_second = None;
        let minute = Duration::from_secs(60);
        // 4 lanes, 10 s time-outs: 6 requests a lane end within a 60 s lease.
        assert_eq!(round_size(&salekit, 1, minute), 24);
        assert_eq!(
            round_size(&salekit, 50, minute),
            1200,
            "Legion's batches of 50"
        );
        assert_eq!(
            round_size(&salekit, 1, Duration::from_secs(3600)),
            4 * MAX_REQUESTS_PER_LANE,
            "at most"
        );
        assert_eq!(
            round_size(&salekit, 1, Duration::from_secs(5)),
            4,
            "one at least"
        );
        salekit.timeout = Duration::from_secs(1);
        salekit.rate_limit_per_second = std::num::NonZeroU32::new(1);
        // 60 requests pass a limit of 1/s within the lease: 15 a lane, so the bound is 8.
        assert_eq!(round_size(&salekit, 1, minute), 4 * MAX_REQUESTS_PER_LANE);
        // 10 s at 2/s: 20 requests, 5 a lane.
        salekit.rate_limit_per_second = std::num::NonZeroU32::new(2);
        assert_eq!(round_size(&salekit, 1, Duration::from_secs(10)), 20);
    }

    #[test]
    fn a_refused_batch_is_split_only_when_the_refusal_may_be_about_one_event() {
        let delivery = |id| ClaimedDelivery {
            id,
            operation: "legion.purchase_event".into(),
            payload: "{}".into(),
            conversion_id: None,
            attempts: 1,
        };
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
