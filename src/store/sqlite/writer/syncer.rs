//! The syncer: makes the writer's commits durable, one `fdatasync` of the WAL for all those
//! made while the last one ran, and answers their writes only then.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;

use super::Job;
use crate::store::StoreError;

/// A batch the writer has committed (or failed to), on its way to the syncer.
pub(super) struct Committed {
    pub jobs: Vec<Job>,
    pub outcome: Result<(), Arc<rusqlite::Error>>,
    /// Whether its jobs may be answered only once the WAL is on disk ([`Job::must_sync`]).
    pub sync: bool,
}

impl Committed {
    pub(super) fn new(jobs: Vec<Job>, outcome: Result<(), Arc<rusqlite::Error>>) -> Self {
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
pub(super) struct Wal {
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
    pub(super) fn open(conn: &Connection) -> Result<Self, StoreError> {
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
    pub(super) fn sync(&self) -> Result<(), rusqlite::Error> {
        self.file
            .sync_data()
            .map_err(|error| sync_failure(format!("cannot sync {}: {error}", self.path.display())))
    }
}

/// The error of a sync that failed (SQLite's `SQLITE_IOERR_FSYNC`).
pub(super) fn sync_failure(message: impl Into<String>) -> rusqlite::Error {
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
pub(super) fn run_syncer(
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
