//! Group commit of every write of the store: one thread, with its own rusqlite
//! connection, takes all the writes waiting (webhooks from the receive path, claims and
//! attempt records from the delivery workers, re-translated deliveries from `replay`, and the
//! occasional upkeep: requeues, releases, purge steps) and runs them in one
//! `BEGIN IMMEDIATE … COMMIT`; a failing one does not fail the others (see
//! [`batch::write_batch`]). The connection runs with `synchronous = FULL`, so the commit
//! returns once the WAL is on disk, and only then are the batch's writes answered: nobody is
//! answered before the commit that holds their write is durable, and the writes that arrive
//! meanwhile share the next commit and its one sync.
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
#[cfg(test)]
mod tests;

use batch::{CLAIM_AHEAD, write_batch};

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

/// Starts the writer's thread on `conn`; it ends when the returned sender (the store) is
/// dropped. `commits` counts the transactions it commits; `stopped` is set when a write
/// failed for an I/O error, after which nothing is written any more (see [`stops_writing`]).
pub(super) fn spawn_writer(
    conn: Connection,
    commits: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
) -> Result<mpsc::Sender<Job>, StoreError> {
    conn.set_prepared_statement_cache_capacity(64);
    let (sender, receiver) = mpsc::channel(MAX_BATCH * 4);
    std::thread::Builder::new()
        .name("storehook-writer".into())
        .spawn(move || run_writer(conn, receiver, &commits, &stopped))
        .map_err(|source| StoreError::Open(format!("cannot start the store's writer: {source}")))?;
    Ok(sender)
}

/// Whether a batch that failed with `error` stops the writer for good: an I/O error (a
/// failed `fsync` of the WAL among them). After a failed sync the kernel may have dropped the
/// pages it could not write, and every later commit in the WAL would then be lost in a crash
/// too (a WAL is read up to its first bad frame); so the store answers every write with an
/// error, and is not ready, until storehook is restarted.
pub(super) fn stops_writing(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::SystemIoFailure)
}

/// The error every write gets once the writer has stopped.
fn stopped_writing() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
        Some("storehook stopped writing after an I/O error of the database (see the log)".into()),
    )
}

fn run_writer(
    conn: Connection,
    mut receiver: mpsc::Receiver<Job>,
    commits: &AtomicU64,
    stopped: &AtomicBool,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    // Whatever arrived while the previous batch was written forms the next one.
    while receiver.blocking_recv_many(&mut jobs, MAX_BATCH) > 0 {
        if stopped.load(Ordering::Acquire) {
            // Nothing more is written; dropping the receiver refuses the writes to come.
            let refused = Err(Arc::new(stopped_writing()));
            jobs.drain(..).for_each(|job| job.send(&refused));
            break;
        }
        let mut kinds = [0usize; 5];
        jobs.iter().for_each(|job| kinds[job.kind()] += 1);
        let wrote = std::time::Instant::now();
        let batch = write_batch(&conn, &mut jobs);
        tracing::debug!(
            webhooks = kinds[0],
            claims = kinds[1],
            records = kinds[2],
            replacements = kinds[3],
            upkeep = kinds[4],
            retried = batch.retried,
            write_us = wrote.elapsed().as_micros() as u64,
            "group commit"
        );
        match &batch.committed {
            Ok(()) if batch.succeeded > 0 => {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) if stops_writing(error) => {
                // Set before the batch is answered, so that no later write is accepted.
                stopped.store(true, Ordering::Release);
                tracing::error!(
                    %error,
                    "the database could not be written to the disk: storehook stops accepting writes; restart it once the disk is fixed"
                );
            }
            _ => {}
        }
        jobs.drain(..).for_each(|job| job.send(&batch.committed));
    }
}
