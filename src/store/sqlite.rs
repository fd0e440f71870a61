//! SQLite backend, on rusqlite alone: one file, WAL mode, every write made by one writer
//! thread (group commit, see [`writer`]), every commit synced to the disk before its writes
//! are answered; reads on connections of their own, off the async runtime ([`reads`]). The
//! delivery rules are stated in [`rules`], the schema in [`migrate`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

mod accept;
pub(super) mod copy;
mod heartbeats;
mod migrate;
mod reads;
mod rounds;
mod rules;
mod types;
mod writer;
use reads::Readers;
use writer::{Claim, Job, Pending, UpkeepJob};

use super::{
    Accepted, Attempt, AttemptRecord, Cancelled, ClaimedDelivery, DeliveryFilter, DeliveryId,
    DeliveryRecord, DeliveryStats, DeliveryStatus, DeliverySummary, Heartbeat, Migrations,
    NewDelivery, NewWebhook, Requeued, Store, StoreError, StoredWebhook, Touched, WebhookFilter,
    WebhookId, WebhookRecord,
};

/// How long a connection waits for another process's write lock (the CLI beside `serve`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The file a store URL names: `sqlite://PATH` or `sqlite:PATH`.
fn path_of(url: &str) -> Result<PathBuf, StoreError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .filter(|path| !path.is_empty() && !path.contains('?') && !path.starts_with(':'))
        .ok_or_else(|| StoreError::UnsupportedUrl(url.to_string()))?;
    Ok(PathBuf::from(path))
}

/// Creates the database at `path` if need be (and its directory), puts it in WAL mode and
/// applies the migrations it lacks, on a connection of its own with `synchronous = FULL`,
/// closed before the writer opens its own. With [`Migrations::Require`] it applies none, and
/// refuses a database that lacks any.
fn prepare_file(path: &Path, migrations: Migrations) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| {
            StoreError::Open(format!(
                "cannot create the store's directory {}: {source}",
                dir.display()
            ))
        })?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open(format!(
            "the database cannot be put in WAL mode (it is in {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    match migrations {
        Migrations::Apply => migrate::migrate(&mut conn),
        Migrations::Require => migrate::require_migrated(&conn),
    }
}

/// The writer's connection to the (migrated) database at `path`: foreign keys on, the busy
/// timeout, WAL mode (the file's, set at [`prepare_file`]) and `synchronous = FULL`: a
/// commit returns only once the WAL is synced to the disk, so every write the writer answers
/// is durable (see [`writer`]).
///
/// `temp_store = MEMORY`: SQLite copies every page changed under a savepoint or a statement
/// journal into a sub-journal first (a batch run again after a failing job runs each job
/// under a savepoint; a statement that may write several rows and then fail, such as a claim
/// or a record, runs under a statement journal). In a temporary file, that was a `pwrite` per
/// page and about a fifth of the writer thread's time under load, when every job had its own
/// savepoint; in memory it is a copy. It holds one transaction's pages at most.
///
/// Query planner stability (`SQLITE_DBCONFIG_ENABLE_QPSG`): a statement is planned once,
/// whatever values are bound to it. Without it, SQLite compiled as it is here (with STAT4)
/// marks a statement whose plan could depend on a bound value (a range on an indexed column,
/// a `LIMIT ?`) to be parsed and planned again whenever that value changes: every delivery
/// worker's claim, whose time changes each round, was compiled anew (a tenth of the
/// writer's time at 2,000 webhooks/s). The hot statements' plans do not depend on the
/// values (`rounds` tests the claim's).
fn open_writer_connection(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open(format!(
            "the database is in journal mode {mode}, not WAL"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

pub struct SqliteStore {
    /// Read connections, used off the async runtime; they never write.
    readers: Arc<Readers>,
    /// The group-commit writer: every write of this store goes through it, so no two of
    /// our connections ever contend for SQLite's write lock ([`writer`]).
    writer: mpsc::Sender<Job>,
    /// Transactions the writer has committed.
    commits: Arc<AtomicU64>,
    /// Set when a write failed for an I/O error (the WAL could not be synced, say): the
    /// writer writes nothing any more.
    stopped: Arc<AtomicBool>,
}

impl SqliteStore {
    #[tracing::instrument(name = "open_sqlite_store", skip_all, fields(url = %url))]
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, Migrations::Apply).await
    }

    /// [`SqliteStore::open`], applying the migrations or requiring them applied.
    pub async fn open_with(url: &str, migrations: Migrations) -> Result<Self, StoreError> {
        let path = path_of(url)?;
        tokio::task::spawn_blocking(move || Self::open_file(&path, migrations))
            .await
            .map_err(|error| {
                StoreError::Open(format!("opening the store did not finish: {error}"))
            })?
    }

    fn open_file(path: &Path, migrations: Migrations) -> Result<Self, StoreError> {
        let opened = (|| {
            prepare_file(path, migrations)?;
            let commits = Arc::new(AtomicU64::new(0));
            let stopped = Arc::new(AtomicBool::new(false));
            let writer = writer::spawn_writer(
                open_writer_connection(path)?,
                commits.clone(),
                stopped.clone(),
            )?;
            Ok(Self {
                readers: Readers::new(path),
                writer,
                commits,
                stopped,
            })
        })();
        opened.map_err(|error| match error {
            StoreError::Open(_) | StoreError::UnsupportedUrl(_) => error,
            other => StoreError::Open(format!("cannot open {}: {other}", path.display())),
        })
    }

    /// Hands a write to the writer thread and waits for its commit.
    async fn write<T>(&self, job: impl FnOnce(Pending<T>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(job(Pending::new(reply)))
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Hands an occasional write (`write` on the writer's connection, inside its batch's
    /// transaction) to the writer thread and waits for its commit.
    async fn upkeep<T: Send + 'static>(
        &self,
        write: impl FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write(|pending| Job::Upkeep(Box::new(UpkeepJob { write, pending })))
            .await
    }

    /// How many group commits the writer has made (each holds one or more writes).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The retention purge, `step` webhooks at a time, each step a write job of its own, so
    /// that webhooks are acknowledged between the steps.
    async fn purge_in_steps(&self, cutoff_ms: i64, step: i64) -> Result<u64, StoreError> {
        let mut cursor = Some(rules::PurgeCursor::START);
        let mut purged = 0;
        while let Some(at) = cursor {
            let (done, next) = self
                .upkeep(move |conn| rules::purge_step(conn, cutoff_ms, at, step))
                .await?;
            purged += done;
            cursor = next;
        }
        Ok(purged)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn accept(&self, webhook: NewWebhook) -> Result<Accepted, StoreError> {
        self.write(|reply| Job::Accept(webhook, reply)).await
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        // The writer stops for good after an I/O error (see `writer::stops_writing`).
        if self.stopped.load(Ordering::Acquire) || self.writer.is_closed() {
            return Err(StoreError::Stopped);
        }
        self.readers
            .read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn claim_due_deliveries(
        &self,
        destination: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let claim = Claim {
            destination: destination.to_string(),
            limit,
            now_ms,
            lease_ms,
        };
        self.write(|reply| Job::Claim(claim, reply)).await
    }

    async fn record_attempts(&self, attempts: &[(Vec<i64>, Attempt)]) -> Result<(), StoreError> {
        let attempts = attempts.to_vec();
        self.write(|reply| Job::Record(attempts, reply)).await
    }

    /// One write for both: a full round's record and the next round's claim would otherwise
    /// be two synced commits for every round of a destination with a backlog.
    async fn record_attempts_and_claim(
        &self,
        attempts: &[(Vec<i64>, Attempt)],
        destination: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let attempts = attempts.to_vec();
        let claim = Claim {
            destination: destination.to_string(),
            limit,
            now_ms,
            lease_ms,
        };
        self.write(|reply| Job::RecordAndClaim(attempts, claim, reply))
            .await
    }

    async fn release_waiting_deliveries(
        &self,
        destination: &str,
        now_ms: i64,
        waiting_timeout_ms: i64,
    ) -> Result<(), StoreError> {
        // Most destinations never have a waiting delivery: a read (no write job) tells.
        let destination = destination.to_string();
        let looked_up = destination.clone();
        let waiting = self
            .readers
            .read(move |conn| rules::has_waiting(conn, &looked_up))
            .await?;
        if !waiting {
            return Ok(());
        }
        self.upkeep(move |conn| {
            rules::release_waiting(conn, &destination, now_ms, waiting_timeout_ms)
        })
        .await
    }

    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.purge_in_steps(cutoff_ms, rules::PURGE_STEP).await
    }

    async fn claim_run(&self, job: &str, now_ms: i64, every_ms: i64) -> Result<bool, StoreError> {
        let job = job.to_string();
        self.upkeep(move |conn| {
            let mut claim = conn.prepare_cached(super::periodic::CLAIM)?;
            Ok(claim.exists(rusqlite::params![job, now_ms, now_ms - every_ms])?)
        })
        .await
    }

    async fn release_leases(&self, deliveries: &[i64], now_ms: i64) -> Result<u64, StoreError> {
        let deliveries = deliveries.to_vec();
        self.upkeep(move |conn| rules::release_leases(conn, &deliveries, now_ms))
            .await
    }

    async fn next_due_at(&self, destination: &str) -> Result<Option<i64>, StoreError> {
        let destination = destination.to_string();
        self.readers
            .read(move |conn| reads::next_due_at(conn, &destination))
            .await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliverySummary>, StoreError> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| reads::list_deliveries(conn, &filter))
            .await
    }

    async fn list_webhooks(
        &self,
        filter: &WebhookFilter,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| reads::list_webhooks(conn, &filter))
            .await
    }

    async fn get_webhook(&self, id: WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        self.readers
            .read(move |conn| reads::get_webhook(conn, id))
            .await
    }

    async fn delivery_by_key(
        &self,
        mapping: &str,
        key: &str,
    ) -> Result<Option<DeliverySummary>, StoreError> {
        let (mapping, key) = (mapping.to_string(), key.to_string());
        self.readers
            .read(move |conn| reads::delivery_by_key(conn, &mapping, &key))
            .await
    }

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.readers
            .read(move |conn| reads::get_delivery(conn, id))
            .await
    }

    async fn list_attempts(&self, id: DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.readers
            .read(move |conn| reads::list_attempts(conn, id))
            .await
    }

    async fn requeue_deliveries(
        &self,
        filter: &DeliveryFilter,
        now_ms: i64,
    ) -> Result<(Requeued, Touched), StoreError> {
        let filter = filter.clone();
        self.upkeep(move |conn| rules::requeue(conn, &filter, now_ms))
            .await
    }

    async fn cancel_deliveries(
        &self,
        filter: &DeliveryFilter,
        now_ms: i64,
    ) -> Result<(Cancelled, Touched), StoreError> {
        let filter = filter.clone();
        self.upkeep(move |conn| rules::cancel(conn, &filter, now_ms))
            .await
    }

    async fn delivery_stats(&self, since_ms: i64) -> Result<DeliveryStats, StoreError> {
        self.readers
            .read(move |conn| reads::delivery_stats(conn, since_ms))
            .await
    }

    async fn webhooks_for(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| reads::webhooks_for(conn, &filter))
            .await
    }

    async fn replace_deliveries(
        &self,
        webhook_id: WebhookId,
        deliveries: &[NewDelivery],
        translation_error: Option<&str>,
        only_status: Option<DeliveryStatus>,
        now_ms: i64,
    ) -> Result<(u64, u64), StoreError> {
        let replace = accept::Replace {
            webhook_id,
            deliveries: deliveries.to_vec(),
            translation_error: translation_error.map(str::to_string),
            only_status,
            now_ms,
        };
        self.write(|reply| Job::Replace(replace, reply)).await
    }

    async fn record_heartbeat(
        &self,
        heartbeat: &Heartbeat,
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        let heartbeat = heartbeat.clone();
        self.upkeep(move |conn| heartbeats::record(conn, &heartbeat, forget_before_ms))
            .await
    }

    async fn remove_heartbeat(&self, instance: &str) -> Result<(), StoreError> {
        let instance = instance.to_string();
        self.upkeep(move |conn| heartbeats::remove(conn, &instance))
            .await
    }

    async fn list_heartbeats(&self) -> Result<Vec<Heartbeat>, StoreError> {
        self.readers.read(heartbeats::list).await
    }
}
