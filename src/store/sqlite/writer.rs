//! Group commit of every write of the store: one thread, with its own rusqlite
//! connection, takes all the writes waiting (webhooks from the receive path, claims and
//! attempt records from the delivery workers, re-translated deliveries from `replay`, and the
//! occasional upkeep: requeues, releases, purge steps) and runs them in one
//! `BEGIN IMMEDIATE … COMMIT`; a failing one does not fail the others (see
//! [`batch::write_batch`]). A second thread, the syncer, makes the commits durable with one
//! `fdatasync` of the WAL for all those made while the last one ran, and only then answers
//! their writes (see [`syncer`]): nobody is answered before the commit that holds their
//! write is on disk.
//!
//! One writer for everything, not one each: with two, every claim and every record was a
//! transaction of its own that the receive path's commits queued behind, and at 2,000
//! webhooks/s the workers' small transactions were most of what a webhook waited for. Since
//! no other connection of this process writes, none ever waits in SQLite's busy handler
//! (which sleeps in steps of up to 100 ms) for another of ours.
//!
//! The thread is a plain one: through an async driver every statement was a hand-off to the
//! driver's connection thread and back, and those hand-offs, not SQLite, bounded ingest.
//! Here a batch costs one hand-off in and one answer out per write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{accept, rounds};
use crate::store::{Accepted, Attempt, ClaimedDelivery, NewWebhook, StoreError};

mod batch;
mod syncer;
#[cfg(test)]
mod tests;

use batch::{CLAIM_AHEAD, write_batch};
use syncer::{Committed, Wal, run_syncer, sync_failure};

/// Most writes run by one commit.
const MAX_BATCH: usize = 256;

/// Where the outcome of a write goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write for the writer thread, with where its outcome goes.
pub(super) enum Job {
    /// A webhook and its deliveries ([`accept::insert_webhook`]).
    Accept(NewWebhook, Pending<Accepted>),
    /// A delivery worker's round ([`rounds::claim`]).
    Claim(Claim, Pending<Vec<ClaimedDelivery>>),
    /// A round's attempts ([`rounds::record`]).
    Record(Vec<(Vec<i64>, Attempt)>, Pending<()>),
    /// A full round's attempts, then the next round's claim.
    RecordAndClaim(
        Vec<(Vec<i64>, Attempt)>,
        Claim,
        Pending<Vec<ClaimedDelivery>>,
    ),
    /// A re-translated webhook's deliveries ([`accept::replace_deliveries`]).
    Replace(accept::Replace, Pending<(u64, u64)>),
    /// An occasional write (a requeue, releasing waiting deliveries or leases, a purge
    /// step), off the hot path: see [`Upkeep`].
    Upkeep(Box<dyn Upkeep>),
}

/// An occasional write, run as any other job and answered once durable.
pub(super) trait Upkeep: Send {
    /// Runs the write and keeps its outcome (see [`Job::run`]); whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers whoever waits for it (see [`Pending::send`]).
    fn send(self: Box<Self>, committed: &Result<(), Arc<rusqlite::Error>>);
}

/// A write of any `T`: a function of the writer's connection, and who waits for its outcome.
pub(super) struct UpkeepJob<T, W> {
    pub write: W,
    pub pending: Pending<T>,
}

impl<T, W> Upkeep for UpkeepJob<T, W>
where
    T: Send,
    W: FnMut(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        self.pending.set((self.write)(conn))
    }

    fn send(self: Box<Self>, committed: &Result<(), Arc<rusqlite::Error>>) {
        self.pending.send(committed)
    }
}

pub(super) struct Claim {
    pub destination: String,
    pub limit: usize,
    pub now_ms: i64,
    pub lease_ms: i64,
}

impl Claim {
    fn run(&self, conn: &Connection) -> Result<Vec<ClaimedDelivery>, StoreError> {
        rounds::claim(
            conn,
            &self.destination,
            self.limit,
            self.now_ms,
            self.lease_ms,
        )
    }
}

/// A job's outcome inside the batch's transaction, kept until the batch commits (or not),
/// and who is waiting for it.
pub(super) struct Pending<T> {
    reply: Reply<T>,
    /// The outcome of the job's last run (`None` before it runs): when the batch commits,
    /// the run in the committed transaction.
    result: Option<Result<T, StoreError>>,
}

impl<T> Pending<T> {
    pub(super) fn new(reply: Reply<T>) -> Self {
        Pending {
            reply,
            result: None,
        }
    }

    /// Keeps `result`; whether it is a success.
    fn set(&mut self, result: Result<T, StoreError>) -> bool {
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    /// Sends the outcome, or the commit's failure when the batch did not commit. The caller
    /// may have gone (a client that disconnected): its webhook is stored anyway, and the
    /// shop's retry is answered as a duplicate.
    fn send(self, committed: &Result<(), Arc<rusqlite::Error>>) {
        let result = match committed {
            Ok(()) => self.result.unwrap_or(Err(StoreError::Stopped)),
            Err(error) => Err(StoreError::from(&**error)),
        };
        let _ = self.reply.send(result);
    }
}

impl Job {
    /// Runs the write on `conn`, inside the batch's transaction, and keeps its outcome;
    /// whether it succeeded. It runs again when its first transaction is rolled back, and
    /// the outcome of the run that commits is the one sent.
    fn run(&mut self, conn: &Connection) -> bool {
        match self {
            Job::Accept(webhook, pending) => pending.set(accept::insert_webhook(conn, webhook)),
            Job::Claim(claim, pending) => pending.set(claim.run(conn)),
            Job::Record(attempts, pending) => pending.set(rounds::record(conn, attempts)),
            Job::RecordAndClaim(attempts, claim, pending) => {
                // A claim that fails claims nothing (its own savepoint goes) and the record
                // stands: the worker's next round claims again.
                let claimed = rounds::record(conn, attempts).and_then(|()| {
                    CLAIM_AHEAD.begin(conn)?;
                    let claimed = claim.run(conn);
                    CLAIM_AHEAD.end(conn, claimed.is_ok())?;
                    Ok(claimed.unwrap_or_else(|error| {
                        tracing::warn!(%error, "claim after a record failed; the next round claims again");
                        Vec::new()
                    }))
                });
                pending.set(claimed)
            }
            Job::Replace(replace, pending) => {
                pending.set(accept::replace_deliveries(conn, replace))
            }
            Job::Upkeep(upkeep) => upkeep.run(conn),
        }
    }

    /// Answers whoever waits for the job (see [`Pending::send`]); a job that did not run
    /// in the committed transaction is answered with an error.
    fn send(self, committed: &Result<(), Arc<rusqlite::Error>>) {
        match self {
            Job::Accept(_, pending) => pending.send(committed),
            Job::Claim(_, pending) | Job::RecordAndClaim(_, _, pending) => pending.send(committed),
            Job::Record(_, pending) => pending.send(committed),
            Job::Replace(_, pending) => pending.send(committed),
            Job::Upkeep(upkeep) => upkeep.send(committed),
        }
    }

    /// Whether the write must be on disk before it is answered. A claim need not be: a
    /// lease lost in a crash leaves its deliveries as they were before it (pending, or
    /// leased by an earlier claim), so they are claimed again after the restart, as an
    /// expired lease is. Any later sync syncs the claim too, since the WAL is synced as a
    /// whole: a recorded attempt is never on disk without its claim. A claim is still
    /// answered only after the syncs of the batches before it (see [`run_syncer`]).
    fn must_sync(&self) -> bool {
        !matches!(self, Job::Claim(..))
    }

    fn kind(&self) -> usize {
        match self {
            Job::Accept(..) => 0,
            Job::Claim(..) => 1,
            Job::Record(..) | Job::RecordAndClaim(..) => 2,
            Job::Replace(..) => 3,
            Job::Upkeep(..) => 4,
        }
    }
}

/// Starts the writer's thread on `conn` and the syncer's beside it; both end when the
/// returned sender (the store) is dropped. `commits` counts the transactions the writer
/// commits; `stopped` is set when a sync fails, after which no write is made any more (see
/// [`run_syncer`]).
pub(super) fn spawn_writer(
    conn: Connection,
    commits: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
) -> Result<mpsc::Sender<Job>, StoreError> {
    let wal = Wal::open(&conn)?;
    spawn_threads(conn, move || wal.sync(), commits, stopped)
}

/// [`spawn_writer`] with `sync` as the syncer's way to make the WAL durable.
fn spawn_threads(
    conn: Connection,
    sync: impl FnMut() -> Result<(), rusqlite::Error> + Send + 'static,
    commits: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
) -> Result<mpsc::Sender<Job>, StoreError> {
    conn.set_prepared_statement_cache_capacity(64);
    let (sender, receiver) = mpsc::channel(MAX_BATCH * 4);
    let (to_syncer, committed) = std::sync::mpsc::channel();
    let thread = |name: &str| std::thread::Builder::new().name(name.into());
    let syncer_stopped = stopped.clone();
    thread("storehook-syncer")
        .spawn(move || run_syncer(sync, committed, &syncer_stopped))
        .map_err(|source| StoreError::Open(format!("cannot start the store's writer: {source}")))?;
    thread("storehook-writer")
        .spawn(move || run_writer(conn, receiver, to_syncer, &commits, &stopped))
        .map_err(|source| StoreError::Open(format!("cannot start the store's writer: {source}")))?;
    Ok(sender)
}

fn run_writer(
    conn: Connection,
    mut receiver: mpsc::Receiver<Job>,
    syncer: std::sync::mpsc::Sender<Committed>,
    commits: &AtomicU64,
    stopped: &AtomicBool,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let refuse = |jobs: Vec<Job>| {
        let stopped = "storehook stopped writing after a failed sync of the WAL";
        let failure = Err(Arc::new(sync_failure(stopped)));
        jobs.into_iter().for_each(|job| job.send(&failure));
    };
    // Whatever arrived while the previous batch was written forms the next one.
    while receiver.blocking_recv_many(&mut jobs, MAX_BATCH) > 0 {
        if stopped.load(Ordering::Acquire) {
            // Nothing more is written; dropping the receiver refuses the writes to come.
            refuse(std::mem::take(&mut jobs));
            break;
        }
        let mut kinds = [0usize; 5];
        jobs.iter().for_each(|job| kinds[job.kind()] += 1);
        let wrote = std::time::Instant::now();
        let batch = write_batch(&conn, &mut jobs);
        // `jobs` keeps its capacity for the next batch; this one goes in a Vec of its size.
        #[allow(clippy::drain_collect)]
        let committed = Committed::new(jobs.drain(..).collect(), batch.committed);
        tracing::debug!(
            webhooks = kinds[0],
            claims = kinds[1],
            records = kinds[2],
            replacements = kinds[3],
            upkeep = kinds[4],
            sync = committed.sync,
            retried = batch.retried,
            write_us = wrote.elapsed().as_micros() as u64,
            "group commit"
        );
        if committed.outcome.is_ok() && batch.succeeded > 0 {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(std::sync::mpsc::SendError(committed)) = syncer.send(committed) {
            // The syncer stopped on a failed sync: nothing can be acknowledged any more.
            refuse(committed.jobs);
            break;
        }
    }
}
