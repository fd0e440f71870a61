//! Delivery workers: one per destination, so a failing service never delays another. Each
//! claims due deliveries with a lease, sends them, and records the attempt: delivered, a
//! retry at the next step of its schedule, or dead. New deliveries wake their worker at once;
//! due retries are picked up on time. A rate limit spaces the requests; a circuit breaker
//! pauses a destination after failures in a row. On shutdown the round in flight may finish
//! up to `delivery.shutdown_grace`; then the attempts that finished are recorded and the
//! leases of the others released, so the next start sends those deliveries at once instead
//! of waiting for the lease to expire, and never sends again one that was answered.
//!
//! - this file: the [`Worker`], its loop and its waits, and [`Worker::step`], one turn of
//!   that loop for a test to drive;
//! - `round.rs`: one round, claim → send → record;
//! - `attempt.rs`: one request and what its answer records;
//! - `held.rs`: the leases, the round claimed ahead and the unrecorded attempts
//!   a worker holds, and their release;
//! - `schedule.rs`: how much a round claims, and the retry schedule;
//! - `breaker.rs`: failures in a row and the cool-down;
//! - `clock.rs`: the time the worker runs on, injected.
//!
//! A delivery that needs another first (a Scalef status update and its conversion) is
//! `waiting` in the store; each round moves those of its destination on, at most every
//! 250 ms, before it claims.

mod attempt;
mod breaker;
mod clock;
mod held;
mod round;
mod schedule;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tracing::Instrument as _;

use self::attempt::Sender;
use self::breaker::Breaker;
pub use self::breaker::{Circuit, CircuitState};
pub use self::clock::{Clock, ManualClock};
use self::held::{Held, Release};
pub use self::schedule::{next_retry, round_size};
use crate::config::{DeliveryConfig, DestinationConfig};
use crate::domain::Redactions;
use crate::store::{Store, StoreError};

/// The longest a worker sleeps between looks at its queue (waiting deliveries and expired
/// leases are noticed within this).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// After a wake-up, or a round that did not fill, how long a worker lets more deliveries
/// arrive before it claims, so that batches fill (Legion takes 50 events a request) and
/// rounds stay few under load: each round is two writes (claim, record) whatever it holds,
/// and workers claiming back to back a few deliveries a round would fill the store's single
/// writer with their commits.
const CLAIM_LINGER: Duration = Duration::from_millis(50);
/// How long after `delivery.shutdown_grace` a round may take to record the attempts that
/// finished, before the worker is abandoned with its leases (they then expire).
const RECORD_AFTER_GRACE: Duration = Duration::from_secs(2);
/// How often, at most, a worker moves its `waiting` deliveries on (a write transaction, so
/// not on every claim); also between rounds claimed ahead, or under a steady backlog the
/// status updates would wait for the backlog to end.
const RELEASE_WAITING_EVERY: Duration = Duration::from_millis(250);
/// How long a worker backs off after the store failed.
const STORE_BACKOFF: Duration = Duration::from_secs(2);

pub struct Worker {
    sender: Sender,
    store: Arc<dyn Store>,
    clock: Clock,
    delivery: DeliveryConfig,
    /// Notified by the receive path when it stored deliveries for this destination; a
    /// notification while the worker is busy is kept, so none is lost.
    wake: Arc<Notify>,
    /// Shared with the [`Circuit`] views an operator's overview reads.
    breaker: Arc<Breaker>,
    concurrency: usize,
    /// How many deliveries a round claims ([`round_size`]).
    round_size: usize,
    held: Held,
    /// When `waiting` deliveries were last moved on.
    waiting_released_at: Mutex<Option<Instant>>,
}

/// What one turn of a worker did ([`Worker::step`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Deliveries the round took: claimed by it, or with the previous round's record.
    pub claimed: usize,
    /// Attempts made: one a request (a refused batch's requests of one delivery each count).
    pub attempts: usize,
    /// Attempts recorded, those an earlier round could not record included.
    pub recorded: usize,
    /// Deliveries taken and not sent (the circuit opened, or the service stops), their
    /// leases given back.
    pub given_back: usize,
    /// Deliveries claimed for the next round with this one's record.
    pub claimed_ahead: usize,
    /// What the worker does next.
    pub next: Next,
}

/// What a worker does after a turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Next {
    /// The round was full, more may be due: the next round at once (claimed ahead).
    Now,
    /// The round did not fill: the next one after a short linger (50 ms), so that more
    /// deliveries arrive and the next round fills.
    Linger,
    /// Nothing was due: the next round at a wake-up, or when the next delivery falls due
    /// (at most a second later).
    #[default]
    Idle,
    /// The circuit is open: no round for this long (wake-ups do not end it).
    Pause(Duration),
    /// The service stops: the worker ends.
    Stop,
}

/// Why a turn could not run its round.
enum Stalled {
    /// Attempts of an earlier round are still not recorded: nothing is claimed.
    Unrecorded(StoreError),
    /// The store failed during the round.
    Store(StoreError),
}

impl Worker {
    /// A worker for `config`'s destination on the system's clock; `secrets` (every
    /// configured one, [`crate::config::Config::secrets`]) are redacted from its
    /// destination's answers before they are logged or recorded.
    pub fn new(
        config: &DestinationConfig,
        delivery: &DeliveryConfig,
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
        secrets: Redactions,
    ) -> Worker {
        let sender = Sender::new(config, secrets);
        Worker {
            round_size: round_size(config, sender.max_batch(), delivery.lease),
            sender,
            store,
            clock: Clock::System,
            delivery: delivery.clone(),
            wake,
            breaker: Arc::new(Breaker::new(
                config.breaker_failures,
                config.breaker_cool_down,
            )),
            concurrency: config.concurrency.max(1),
            held: Held::default(),
            waiting_released_at: Mutex::new(None),
        }
    }

    /// The same worker on `clock`: its claims, leases, retries, pauses and waits follow it.
    pub fn with_clock(mut self, clock: impl Into<Clock>) -> Worker {
        self.clock = clock.into();
        self
    }

    /// A view of its circuit breaker, on its clock.
    pub fn circuit(&self) -> Circuit {
        Circuit::new(self.breaker.clone(), self.clock.clone())
    }

    /// The id of the destination it delivers to.
    pub fn destination_id(&self) -> &str {
        &self.sender.destination_id
    }

    /// Works until `shutdown` turns true; attempts in flight are then finished and recorded
    /// for up to `delivery.shutdown_grace`, and the leases of those still unfinished are
    /// released.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(destination = %self.destination_id(), dry = self.sender.dry, concurrency = self.concurrency, round_size = self.round_size, "delivery worker started");
        let worker = Arc::new(self);
        // A task of its own, so the grace below can abandon it. Its lines name the
        // destination even where the code that writes them does not know it (a
        // destination's reading of an answer).
        let span = tracing::info_span!("worker", destination = %worker.destination_id());
        let mut rounds = tokio::spawn(
            worker
                .clone()
                .work_rounds(shutdown.clone())
                .instrument(span),
        );
        // A dropped sender means the service is going away: stop as well.
        let _ = shutdown.wait_for(|stop| *stop).await;
        // The round in flight records what finished by the end of the grace itself; this
        // bound is for a store that does not answer.
        let grace = worker.delivery.shutdown_grace + RECORD_AFTER_GRACE;
        let finished = tokio::select! {
            _ = &mut rounds => true,
            () = worker.clock.sleep(grace) => false,
        };
        if !finished {
            rounds.abort();
            let _ = rounds.await;
            worker.release_held(Release::GraceOver).await;
        }
        tracing::info!(destination = %worker.destination_id(), "delivery worker stopped");
    }

    /// Runs one turn of the worker's loop, as [`Worker::run`] does, without the waits
    /// between turns: records the attempts an earlier round could not record, then, unless
    /// the circuit is open, one round (claim, send, record). For a test that drives the
    /// worker instead of running it: when this returns, every request of the round has been
    /// answered or given back unsent, so what the destination received is all it will
    /// receive from the round. An error is the store's; attempts it left unrecorded are
    /// recorded by a later step before anything more is claimed.
    pub async fn step(&self) -> Result<RoundReport, StoreError> {
        // Kept until the turn ends: a dropped sender would be a stop.
        let (_running, running) = watch::channel(false);
        self.turn(&running).await.map_err(|stalled| match stalled {
            Stalled::Unrecorded(err) | Stalled::Store(err) => err,
        })
    }

    /// Turns until `shutdown` turns true.
    async fn work_rounds(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let wait = match self.turn(&shutdown).await {
                Ok(report) => match report.next {
                    Next::Stop => break,
                    Next::Now => continue,
                    // A part-filled round lingers as a wake-up does.
                    Next::Linger => Duration::ZERO,
                    Next::Idle => self.idle_wait().await,
                    Next::Pause(pause) => pause,
                },
                Err(Stalled::Unrecorded(_)) => {
                    tokio::select! {
                        () = self.clock.sleep(STORE_BACKOFF) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Err(Stalled::Store(err)) => {
                    tracing::error!(destination = %self.destination_id(), error = %err, "delivery worker cannot reach the store; backing off");
                    STORE_BACKOFF
                }
            };
            let woken = wait.is_zero()
                || tokio::select! {
                    () = self.wake.notified() => true,
                    () = self.clock.sleep(wait) => false,
                    _ = shutdown.changed() => false,
                };
            if woken {
                tokio::select! {
                    () = self.clock.sleep(CLAIM_LINGER) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// One turn: the attempts left unrecorded first; then, unless `shutdown` has come or
    /// the circuit is open, one round, after which the circuit opens if the round's
    /// failures in a row reached the breaker's count.
    async fn turn(&self, shutdown: &watch::Receiver<bool>) -> Result<RoundReport, Stalled> {
        let recorded = self.record_unrecorded().await;
        if *shutdown.borrow() {
            // Between rounds, what is held is the round claimed ahead, if any.
            let given_back = self.release_held(Release::ClaimedAhead).await;
            return Ok(RoundReport {
                recorded: recorded.unwrap_or(0),
                given_back,
                next: Next::Stop,
                ..RoundReport::default()
            });
        }
        let recorded = recorded.map_err(Stalled::Unrecorded)?;
        if let Some(pause) = self.breaker.pause_left(self.clock.now()) {
            return Ok(RoundReport {
                recorded,
                next: Next::Pause(pause),
                ..RoundReport::default()
            });
        }
        let mut report = self
            .round(self.release_waiting_now(), shutdown)
            .await
            .map_err(Stalled::Store)?;
        report.recorded += recorded;
        if report.claimed > 0 && self.breaker.is_open() {
            let cool_down = self.breaker.pause(self.destination_id(), self.clock.now());
            report.next = Next::Pause(cool_down);
        }
        Ok(report)
    }

    /// Whether this round moves `waiting` deliveries on ([`RELEASE_WAITING_EVERY`]).
    fn release_waiting_now(&self) -> bool {
        let now = self.clock.now();
        let mut last = self
            .waiting_released_at
            .lock()
            .expect("waiting released at");
        let due = last.is_none_or(|at| now.saturating_duration_since(at) >= RELEASE_WAITING_EVERY);
        if due {
            *last = Some(now);
        }
        due
    }

    /// Until the next delivery falls due, at most [`IDLE_POLL`].
    async fn idle_wait(&self) -> Duration {
        match self.store.next_due_at(self.destination_id()).await {
            Ok(Some(due)) => {
                Duration::from_millis((due - self.clock.now_ms()).max(0) as u64).min(IDLE_POLL)
            }
            _ => IDLE_POLL,
        }
    }
}
