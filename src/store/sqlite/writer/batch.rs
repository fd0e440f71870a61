//! One batch of the writer: its jobs in one transaction, each job's failure rolled back
//! alone, with the transaction control compiled once per connection.

use std::sync::Arc;

use rusqlite::Connection;

use super::Job;

/// Runs `sql`, a statement without rows, compiled once per connection: the batch's
/// transaction control (`BEGIN`, `SAVEPOINT`, `RELEASE`, `COMMIT`) runs several times per
/// commit, and through `execute_batch` each was parsed anew: with the `synchronous` pragma
/// then set before each batch, about a tenth of the writer's time at 2,000 webhooks/s
/// (`perf`).
pub(super) fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// A named savepoint's statements, each compiled once (see [`run_cached`]).
pub(super) struct Savepoint {
    begin: &'static str,
    release: &'static str,
    rollback_to: &'static str,
}

/// Each job of a batch runs under it.
pub(super) const JOB: Savepoint = Savepoint {
    begin: "SAVEPOINT job",
    release: "RELEASE job",
    rollback_to: "ROLLBACK TO job",
};

/// The claim that follows a record in [`Job::RecordAndClaim`] runs under it.
pub(super) const CLAIM_AHEAD: Savepoint = Savepoint {
    begin: "SAVEPOINT claim_ahead",
    release: "RELEASE claim_ahead",
    rollback_to: "ROLLBACK TO claim_ahead",
};

impl Savepoint {
    pub(super) fn begin(&self, conn: &Connection) -> rusqlite::Result<()> {
        run_cached(conn, self.begin)
    }

    /// Leaves the savepoint: what was written under it is kept, or else rolled back first,
    /// so that nothing of it stays.
    pub(super) fn end(&self, conn: &Connection, keep: bool) -> rusqlite::Result<()> {
        if !keep {
            run_cached(conn, self.rollback_to)?;
        }
        run_cached(conn, self.release)
    }
}

/// How a batch went.
pub(super) struct Batch {
    /// Whether its transaction committed; the jobs' own outcomes stand only if it did.
    pub committed: Result<(), Arc<rusqlite::Error>>,
    /// How many of its jobs succeeded.
    pub succeeded: usize,
    /// Whether a job failed on the first run, so that the batch ran again, each job under a
    /// savepoint of its own.
    pub retried: bool,
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
pub(super) fn write_batch(conn: &Connection, jobs: &mut [Job]) -> Batch {
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
