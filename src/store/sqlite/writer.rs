//! Group commit of every write that adds or moves deliveries: one thread, with its own
//! rusqlite connection, takes all the writes waiting (webhooks from the receive path, claims
//! and attempt records from the delivery workers, re-translated deliveries from `replay`)
//! and runs them in one `BEGIN IMMEDIATE … COMMIT`; a failing one does not fail the others
//! (see [`write_batch`]). A second thread, the syncer, makes the commits durable with one
//! `fdatasync` of the WAL for all those made while the last one ran, and only then answers
//! their writes (see [`Wal`] and [`run_syncer`]): nobody is answered before the commit that
//! holds their write is on disk.
//!
//! One writer for both sides, not one each: with two, every claim and every record was a
//! transaction of its own that the receive path's commits queued behind (the store's write
//! gate), and at 2,000 webhooks/s the workers' small transactions were most of what a
//! webhook waited for.
//!
//! The thread is a plain one: through sqlx every statement was a hand-off to sqlx's
//! connection thread and back, and those hand-offs, not SQLite, bounded ingest. Here a batch
//! costs one hand-off in and one answer out per write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::Connection;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{accept, rounds};
use crate::store::{Accepted, Attempt, ClaimedDelivery, NewWebhook, StoreError};

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
        }
    }
}

/// Starts the writer's thread on `conn` and the syncer's beside it; both end when the
/// returned sender (the store) is dropped. `commits` counts the transactions the writer
/// commits; `gate` is the store's write gate, held for each batch (the sqlx side's
/// occasional writes hold it too); `stopped` is set when a sync fails, after which no write
/// is made any more (see [`run_syncer`]).
pub(super) fn spawn_writer(
    conn: Connection,
    commits: Arc<AtomicU64>,
    gate: Arc<Mutex<()>>,
    stopped: Arc<AtomicBool>,
) -> Result<mpsc::Sender<Job>, StoreError> {
    let wal = Wal::open(&conn)?;
    spawn_threads(conn, move || wal.sync(), commits, gate, stopped)
}

/// [`spawn_writer`] with `sync` as the syncer's way to make the WAL durable.
fn spawn_threads(
    conn: Connection,
    sync: impl FnMut() -> Result<(), rusqlite::Error> + Send + 'static,
    commits: Arc<AtomicU64>,
    gate: Arc<Mutex<()>>,
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
        .spawn(move || run_writer(conn, receiver, to_syncer, &commits, &gate, &stopped))
        .map_err(|source| StoreError::Open(format!("cannot start the store's writer: {source}")))?;
    Ok(sender)
}

/// A batch the writer has committed (or failed to), on its way to the syncer.
struct Committed {
    jobs: Vec<Job>,
    outcome: Result<(), Arc<rusqlite::Error>>,
    /// Whether its jobs may be answered only once the WAL is on disk ([`Job::must_sync`]).
    sync: bool,
}

fn run_writer(
    conn: Connection,
    mut receiver: mpsc::Receiver<Job>,
    syncer: std::sync::mpsc::Sender<Committed>,
    commits: &AtomicU64,
    gate: &Mutex<()>,
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
        let mut kinds = [0usize; 4];
        jobs.iter().for_each(|job| kinds[job.kind()] += 1);
        let waited = std::time::Instant::now();
        let _gate = gate.blocking_lock();
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
            sync = committed.sync,
            retried = batch.retried,
            gate_wait_us = (wrote - waited).as_micros() as u64,
            write_us = wrote.elapsed().as_micros() as u64,
            "group commit"
        );
        drop(_gate);
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

impl Committed {
    fn new(jobs: Vec<Job>, outcome: Result<(), Arc<rusqlite::Error>>) -> Self {
        let sync = jobs.iter().any(Job::must_sync);
        Committed {
            jobs,
            outcome,
            sync,
        }
    }

    fn answer(self, outcome: &Result<(), Arc<rusqlite::Error>>) {
        for job in self.jobs {
            job.send(outcome);
        }
    }
}

/// The database's write-ahead log, as the syncer sees it: its own handle on the file the
/// writer's connection appends to. The connection runs with `synchronous = NORMAL`, so a
/// commit only writes the WAL (and SQLite syncs it before each checkpoint); the syncer's
/// `fdatasync` makes the commits before it durable, and only then are their writes answered.
/// Meanwhile the writer runs the next batch: with `FULL`, the writer waited for the disk in
/// every commit, and in the closed loop it was busy 92 % of the time, half of it waiting.
struct Wal {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl Wal {
    /// Opens the WAL of the writer's database. It exists: the pool's connections and the
    /// writer's have read the database in WAL mode. It is opened now and kept, not by its
    /// name at each sync: SQLite deletes or replaces the WAL only when its last connection
    /// closes, and the writer's stays open as long as the syncer runs, so this handle is
    /// always on the file the writer appends to. Its directory is synced once, since the
    /// file may be new.
    fn open(conn: &Connection) -> Result<Self, StoreError> {
        let db = conn
            .path()
            .filter(|path| !path.is_empty())
            .ok_or_else(|| StoreError::Open("the writer's database has no file".into()))?;
        let path = std::path::PathBuf::from(format!("{db}-wal"));
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|file| {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(file)
            });
        match opened {
            Ok(file) => Ok(Wal { path, file }),
            Err(error) => Err(StoreError::Open(format!(
                "cannot open {} to sync it: {error}",
                path.display()
            ))),
        }
    }

    /// Writes everything appended to the WAL so far to the disk, as SQLite's own sync of a
    /// `FULL` commit would; a failure is the error SQLite gives for one.
    fn sync(&self) -> Result<(), rusqlite::Error> {
        self.file
            .sync_data()
            .map_err(|error| sync_failure(format!("cannot sync {}: {error}", self.path.display())))
    }
}

/// The error of a sync that failed (SQLite's `SQLITE_IOERR_FSYNC`).
fn sync_failure(message: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
        Some(message.into()),
    )
}

/// Answers the committed batches in the order they were committed, each once the WAL is on
/// disk if it must be: one `sync` for all the batches that arrived while the last one ran.
/// A batch that need not be synced (claims only) still waits for the syncs of the batches
/// before it, so that no delivery is sent for a webhook that is not yet on disk.
///
/// A failed sync stops the syncer, and sets `stopped` before it answers, so that the writer
/// writes nothing more: after a failed `fdatasync` the kernel may have dropped the pages it
/// could not write, and every later commit in the WAL would then be lost in a crash too (a
/// WAL is read up to its first bad frame). The store answers every write with an error, and
/// is not ready, until storehook is restarted.
fn run_syncer(
    mut sync: impl FnMut() -> Result<(), rusqlite::Error>,
    committed: std::sync::mpsc::Receiver<Committed>,
    stopped: &AtomicBool,
) {
    let mut ready = Vec::new();
    while let Ok(first) = committed.recv() {
        ready.push(first);
        ready.extend(committed.try_iter());
        let must_sync = ready
            .iter()
            .any(|batch| batch.sync && batch.outcome.is_ok());
        let started = std::time::Instant::now();
        let synced = if must_sync {
            sync().map_err(Arc::new)
        } else {
            Ok(())
        };
        tracing::debug!(
            batches = ready.len(),
            synced = must_sync,
            sync_us = started.elapsed().as_micros() as u64,
            "sync"
        );
        if let Err(error) = &synced {
            stopped.store(true, Ordering::Release);
            tracing::error!(
                %error,
                "the WAL cannot be synced: storehook stops accepting writes; restart it once the disk is fixed"
            );
        }
        // After a failed sync, a claim too is answered with the failure: it may hold
        // deliveries of webhooks that are not on disk.
        for batch in ready.drain(..) {
            let outcome = batch.outcome.clone().and_then(|()| synced.clone());
            batch.answer(&outcome);
        }
        if synced.is_err() {
            return;
        }
    }
}

/// Runs `sql`, a statement without rows, compiled once per connection: the batch's
/// transaction control (`BEGIN`, `SAVEPOINT`, `RELEASE`, `COMMIT`) runs several times per
/// commit, and through `execute_batch` each was parsed anew: with the `synchronous` pragma
/// then set before each batch, about a tenth of the writer's time at 2,000 webhooks/s
/// (`perf`).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// A named savepoint's statements, each compiled once (see [`run_cached`]).
struct Savepoint {
    begin: &'static str,
    release: &'static str,
    rollback_to: &'static str,
}

/// Each job of a batch runs under it.
const JOB: Savepoint = Savepoint {
    begin: "SAVEPOINT job",
    release: "RELEASE job",
    rollback_to: "ROLLBACK TO job",
};

/// The claim that follows a record in [`Job::RecordAndClaim`] runs under it.
const CLAIM_AHEAD: Savepoint = Savepoint {
    begin: "SAVEPOINT claim_ahead",
    release: "RELEASE claim_ahead",
    rollback_to: "ROLLBACK TO claim_ahead",
};

impl Savepoint {
    fn begin(&self, conn: &Connection) -> rusqlite::Result<()> {
        run_cached(conn, self.begin)
    }

    /// Leaves the savepoint: what was written under it is kept, or else rolled back first,
    /// so that nothing of it stays.
    fn end(&self, conn: &Connection, keep: bool) -> rusqlite::Result<()> {
        if !keep {
            run_cached(conn, self.rollback_to)?;
        }
        run_cached(conn, self.release)
    }
}

/// How a batch went.
struct Batch {
    /// Whether its transaction committed; the jobs' own outcomes stand only if it did.
    committed: Result<(), Arc<rusqlite::Error>>,
    /// How many of its jobs succeeded.
    succeeded: usize,
    /// Whether a job failed on the first run, so that the batch ran again, each job under a
    /// savepoint of its own.
    retried: bool,
}

/// Runs the jobs in one transaction, in which a job that fails leaves no row behind and the
/// others stand. Each job's outcome is kept in it, to be sent once the batch is over.
///
/// They run first one after the other, as one transaction. If one fails, that transaction is
/// rolled back and the batch runs again, each job under a savepoint of its own, which the
/// failing one is rolled back to. Jobs are only writes to the database, so running one twice
/// does nothing twice. Not every job under a savepoint at once: SQLite copies every page a
/// job changes into the savepoint's journal before changing it, and with the savepoints'
/// own statements that was about a tenth of the writer's time in the closed loop (`perf`),
/// for failures that do not happen (a duplicate is an insert that does nothing, not one
/// that fails).
fn write_batch(conn: &Connection, jobs: &mut [Job]) -> Batch {
    let mut succeeded = 0;
    let mut retried = false;
    let committed = (|| {
        run_cached(conn, "BEGIN IMMEDIATE")?;
        if jobs.iter_mut().all(|job| job.run(conn)) {
            succeeded = jobs.len();
            return run_cached(conn, "COMMIT");
        }
        retried = true;
        rollback(conn)?;
        run_cached(conn, "BEGIN IMMEDIATE")?;
        for job in jobs.iter_mut() {
            JOB.begin(conn)?;
            let ok = job.run(conn);
            JOB.end(conn, ok)?;
            succeeded += usize::from(ok);
        }
        run_cached(conn, "COMMIT")
    })();
    if committed.is_err() {
        // Nothing of a batch that did not commit stays; the connection is ready for the next.
        if let Err(error) = rollback(conn) {
            tracing::error!(%error, "cannot roll back a failed batch");
        }
    }
    Batch {
        committed: committed.map_err(Arc::new),
        succeeded,
        retried,
    }
}

/// Rolls back the open transaction, if one is (SQLite rolls back by itself after some
/// errors).
fn rollback(conn: &Connection) -> rusqlite::Result<()> {
    if conn.is_autocommit() {
        return Ok(());
    }
    run_cached(conn, "ROLLBACK")
}

#[cfg(test)]
mod tests {
    use super::super::accept::tests::{store, webhook};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};

    use super::super::rounds::tests::writer_connection;
    use rusqlite::Connection;
    use tokio::sync::oneshot;

    use super::{
        Batch, Claim, Committed, Job, Pending, Wal, run_syncer, spawn_threads, sync_failure,
        write_batch,
    };
    use crate::store::{Accepted, Attempt, ClaimedDelivery, Recorded, Store, StoreError};

    /// An attempt that delivered.
    fn delivered() -> Attempt {
        Attempt {
            started_at_ms: 10,
            duration_ms: 1,
            http_status: Some(200),
            recorded: Recorded::Delivered {
                response: "ok".into(),
                conversion_id: None,
            },
        }
    }

    /// Runs the jobs as the writer thread does, and answers them.
    fn run_batch(conn: &rusqlite::Connection, mut jobs: Vec<Job>) -> Batch {
        let batch = write_batch(conn, &mut jobs);
        jobs.into_iter().for_each(|job| job.send(&batch.committed));
        batch
    }

    /// A webhook's job (source `s`, dedupe id and delivery key `id`), and its answer's end.
    fn accept(id: &str) -> (Job, oneshot::Receiver<Result<Accepted, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        (Job::Accept(webhook("s", id), Pending::new(reply)), answer)
    }

    /// A job claiming up to 10 Legion deliveries due at `now_ms`, and its answer's end.
    fn claim(
        now_ms: i64,
    ) -> (
        Job,
        oneshot::Receiver<Result<Vec<ClaimedDelivery>, StoreError>>,
    ) {
        let (reply, answer) = oneshot::channel();
        let claim = Claim {
            destination: "legion".into(),
            limit: 10,
            now_ms,
            lease_ms: 60_000,
        };
        (Job::Claim(claim, Pending::new(reply)), answer)
    }

    /// The first column of every row `sql` selects.
    fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Runs the jobs as the writer thread does and hands them to the syncer.
    fn commit(conn: &Connection, mut jobs: Vec<Job>, syncer: &mpsc::Sender<Committed>) {
        let batch = write_batch(conn, &mut jobs);
        syncer.send(Committed::new(jobs, batch.committed)).unwrap();
    }

    #[test]
    fn writes_are_answered_once_the_wal_is_synced_and_claims_wait_for_the_syncs_before_them() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer_connection(&dir);
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(
            synchronous, 1,
            "NORMAL: a commit does not wait for the disk"
        );
        let record = || {
            let (reply, _) = oneshot::channel();
            Job::Record(Vec::new(), Pending::new(reply))
        };
        assert!(accept("x").0.must_sync() && record().must_sync());
        assert!(!claim(10).0.must_sync());

        // The WAL's real sync, held until the test lets it go.
        let (syncing, sync_started) = mpsc::channel();
        let (let_go, held) = mpsc::channel::<()>();
        let wal = Wal::open(&conn).unwrap();
        let sync = move || {
            syncing.send(()).unwrap();
            held.recv().unwrap();
            wal.sync()
        };
        let (syncer, committed) = mpsc::channel();
        let stopped = AtomicBool::new(false);
        let thread = std::thread::spawn(move || run_syncer(sync, committed, &stopped));

        let (job, mut stored) = accept("a");
        commit(&conn, vec![job], &syncer);
        let (job, mut claimed) = claim(10);
        commit(&conn, vec![job], &syncer);
        sync_started.recv().unwrap();
        assert!(stored.try_recv().is_err(), "not answered before the sync");
        assert!(
            claimed.try_recv().is_err(),
            "a claim waits for the sync before it"
        );
        let_go.send(()).unwrap();
        assert!(matches!(
            stored.blocking_recv(),
            Ok(Ok(Accepted::Stored { .. }))
        ));
        assert_eq!(claimed.blocking_recv().unwrap().unwrap().len(), 1);

        // A claim with nothing unsynced before it is answered without a sync.
        let (job, claimed) = claim(20);
        commit(&conn, vec![job], &syncer);
        assert!(claimed.blocking_recv().unwrap().unwrap().is_empty());
        assert!(
            sync_started.try_recv().is_err(),
            "no sync for a claim alone"
        );

        drop(syncer);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn a_failed_sync_answers_its_writes_with_the_error_and_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer_connection(&dir);
        let path = conn.path().unwrap().to_string();
        let stopped = Arc::new(AtomicBool::new(false));
        // The disk refuses the sync: a real `fdatasync` cannot be made to fail here.
        let sync = || Err(sync_failure("cannot sync (the test's disk)"));
        let writer =
            spawn_threads(conn, sync, Arc::default(), Arc::default(), stopped.clone()).unwrap();
        let accept = |id: &'static str| {
            let writer = writer.clone();
            async move {
                let (reply, answer) = oneshot::channel();
                let job = Job::Accept(webhook("s", id), Pending::new(reply));
                writer.send(job).await.map_err(|_| "not taken")?;
                answer.await.map_err(|_| "not answered")
            }
        };

        let error = accept("a").await.unwrap().unwrap_err();
        assert!(error.to_string().contains("the test's disk"), "{error}");
        assert!(stopped.load(Ordering::Acquire), "set before a was answered");
        let error = accept("b").await.unwrap().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("stopped writing after a failed sync"),
            "{error}"
        );
        assert!(accept("c").await.is_err(), "the writer has stopped");
        let stored: Vec<String> = column(
            &Connection::open(&path).unwrap(),
            "SELECT dedupe_id FROM webhooks",
        );
        assert_eq!(
            stored,
            ["a"],
            "a was written before its sync failed; b was not"
        );
    }

    #[tokio::test]
    async fn a_batch_runs_again_under_savepoints_only_when_a_job_fails() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer_connection(&dir);
        let stored_id = |id: &str| -> i64 {
            conn.query_row("SELECT id FROM webhooks WHERE dedupe_id = ?", [id], |row| {
                row.get(0)
            })
            .unwrap()
        };

        let ((a, mut a_answer), (b, mut b_answer)) = (accept("a"), accept("b"));
        let batch = run_batch(&conn, vec![a, b]);
        assert!(batch.committed.is_ok() && !batch.retried && batch.succeeded == 2);
        let Ok(Ok(Accepted::Stored {
            webhook_id: a_id, ..
        })) = a_answer.try_recv()
        else {
            panic!("a is stored");
        };
        assert!(matches!(
            b_answer.try_recv(),
            Ok(Ok(Accepted::Stored { .. }))
        ));

        // d's delivery is refused after its webhook row is written.
        conn.execute_batch(
            "CREATE TRIGGER refuse_delivery BEFORE INSERT ON deliveries WHEN NEW.key = 's/d' \
             BEGIN SELECT RAISE(ABORT, 'delivery refused by the test'); END",
        )
        .unwrap();
        let (c, mut c_answer) = accept("c");
        let (claim, mut claimed) = claim(i64::MAX / 2);
        let (d, mut d_answer) = accept("d");
        let (e, mut e_answer) = accept("e");
        let (again, mut again_answer) = accept("a");
        let batch = run_batch(&conn, vec![c, claim, d, e, again]);
        assert!(batch.committed.is_ok());
        assert!(batch.retried, "d failed, so the batch ran again");
        assert_eq!(batch.succeeded, 4);

        let error = d_answer.try_recv().unwrap().unwrap_err().to_string();
        assert!(error.contains("delivery refused by the test"), "{error}");
        // The others are answered with what the committed run wrote.
        for (id, answer) in [("c", &mut c_answer), ("e", &mut e_answer)] {
            let Ok(Ok(Accepted::Stored {
                webhook_id,
                deliveries: 1,
            })) = answer.try_recv()
            else {
                panic!("{id} is stored");
            };
            assert_eq!(webhook_id.0, stored_id(id), "{id}");
        }
        assert_eq!(
            again_answer.try_recv().unwrap().unwrap(),
            Accepted::Duplicate { webhook_id: a_id }
        );
        let claimed: Vec<i64> = claimed
            .try_recv()
            .unwrap()
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        let in_flight: Vec<i64> = column(
            &conn,
            "SELECT id FROM deliveries WHERE status = 'in_flight' ORDER BY id",
        );
        assert_eq!(claimed, in_flight, "a, b and c's deliveries, once");
        assert_eq!(claimed.len(), 3);
        let webhooks: Vec<String> = column(&conn, "SELECT dedupe_id FROM webhooks ORDER BY id");
        assert_eq!(webhooks, ["a", "b", "c", "e"], "no row of d");
    }

    #[tokio::test]
    async fn a_batch_that_cannot_begin_answers_every_job_and_the_next_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer_connection(&dir);
        conn.busy_timeout(std::time::Duration::from_millis(10))
            .unwrap();
        // Another process (the CLI beside `serve`) holds the write lock.
        let other = Connection::open(conn.path().unwrap()).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let ((a, mut a_answer), (b, mut b_answer)) = (accept("a"), accept("b"));
        let batch = run_batch(&conn, vec![a, b]);
        assert!(batch.committed.is_err());
        assert!(a_answer.try_recv().unwrap().is_err());
        assert!(b_answer.try_recv().unwrap().is_err());
        assert!(conn.is_autocommit(), "no transaction left open");
        other.execute_batch("ROLLBACK").unwrap();

        let (c, mut c_answer) = accept("c");
        run_batch(&conn, vec![c]);
        assert!(matches!(
            c_answer.try_recv(),
            Ok(Ok(Accepted::Stored { .. }))
        ));
        let stored: i64 = conn
            .query_row("SELECT count(*) FROM webhooks", [], |row| row.get(0))
            .unwrap();
        assert_eq!(stored, 1, "only c");
    }

    #[tokio::test]
    async fn a_full_round_is_recorded_and_the_next_claimed_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        for id in ["a", "b", "c"] {
            store.accept(webhook("s", id)).await.unwrap();
        }
        let first = store
            .claim_due_deliveries("legion", 2, 10, 60_000)
            .await
            .unwrap();
        let attempt = delivered();
        let attempts = [(first.iter().map(|d| d.id).collect(), attempt)];
        let before = store.commits();
        let next = store
            .record_attempts_and_claim(&attempts, "legion", 2, 20, 60_000)
            .await
            .unwrap();
        assert_eq!(store.commits() - before, 1);
        assert_eq!(next.len(), 1, "the third delivery, not the two recorded");
        assert!(first.iter().all(|d| d.id != next[0].id));
        let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM deliveries ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(statuses, ["delivered", "delivered", "in_flight"]);
    }

    #[tokio::test]
    async fn a_webhook_a_claim_and_a_record_waiting_together_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        store.accept(webhook("s", "a")).await.unwrap();
        let first = store
            .claim_due_deliveries("legion", 10, 10, 60_000)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        let before = store.commits();

        // The writer takes one webhook and waits for the gate; the three writes queue.
        let gate = store.write_gate.clone().lock_owned().await;
        let alone = store.accept(webhook("s", "x"));
        tokio::pin!(alone);
        assert!(futures::poll!(&mut alone).is_pending());
        while store.writer.capacity() < store.writer.max_capacity() {
            tokio::task::yield_now().await;
        }
        let attempt = delivered();
        let attempts = [(vec![first[0].id], attempt)];
        let together = async {
            tokio::join!(
                store.accept(webhook("s", "b")),
                store.claim_due_deliveries("legion", 10, 20, 60_000),
                store.record_attempts(&attempts),
            )
        };
        tokio::pin!(together);
        assert!(futures::poll!(&mut together).is_pending());
        drop(gate);

        alone.await.unwrap();
        let (accepted, claimed, recorded) = together.await;
        assert!(matches!(
            accepted.unwrap(),
            Accepted::Stored { deliveries: 1, .. }
        ));
        // The claim ran after the webhooks queued before it: it leases x's and b's deliveries.
        let claimed = claimed.unwrap();
        assert_eq!(claimed.len(), 2, "{claimed:?}");
        recorded.unwrap();
        assert_eq!(
            store.commits() - before,
            2,
            "x alone, then the three together"
        );
        let status: String = sqlx::query_scalar("SELECT status FROM deliveries WHERE id = ?")
            .bind(first[0].id)
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(status, "delivered");
    }
}
