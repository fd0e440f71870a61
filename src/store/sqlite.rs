//! SQLite backend: one file, WAL mode, every commit that stores a webhook or an attempt
//! synced before it is acknowledged (a delivery worker's claim alone is not: see [`writer`]).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

/// The condition, on a delivery `d`, that it is not held back: the deliveries of one mapping
/// that need the same delivery (a conversion's status updates) go out one at a time, in the
/// order they were made, so one waits while an older one is unfinished. Else a retried
/// `approved` could land after a later `rejected`, and Scalef would pay the commission of a
/// refunded order.
macro_rules! not_held_back {
    () => {
        "(d.needs_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries e \
             WHERE e.needs_mapping = d.needs_mapping AND e.needs_key = d.needs_key \
             AND e.mapping = d.mapping AND e.id < d.id \
             AND e.status IN ('pending', 'waiting', 'in_flight')))"
    };
}

mod accept;
mod housekeeping;
mod migrate;
mod reads;
mod rounds;
mod types;
mod writer;
use reads::{Readers, filter_sql};
use writer::{Claim, Job, Pending};

use super::{
    Accepted, Attempt, AttemptRecord, ClaimedDelivery, DeliveryFilter, DeliveryId, DeliveryRecord,
    DeliveryStatus, DeliverySummary, NewDelivery, NewWebhook, Requeued, Store, StoreError,
    StoredWebhook, WebhookFilter, WebhookId, WebhookRecord,
};

/// Binds a [`DeliveryFilter`] as `filter_sql!` and `LIMIT ?5` expect it.
fn bind_filter<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    filter: &DeliveryFilter,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    query
        .bind(filter.status.map(DeliveryStatus::as_str))
        .bind(filter.destination.clone())
        .bind(filter.since_ms)
        .bind(filter.webhook_id.map(|id| id.0))
        .bind(filter.limit.unwrap_or(-1))
}

/// How long a connection waits for another process's write lock (the CLI beside `serve`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A rusqlite connection to the (migrated) database at `path`, for the hot writes, set up
/// as the pool's connections are (foreign keys on, the same busy timeout; WAL mode is the
/// file's, set by the pool) but with `synchronous = NORMAL`: a commit returns once it is in
/// the WAL, and the writer's syncer makes it durable before anyone is answered (see
/// [`writer`]).
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
    // NORMAL is durable only with the syncer, and the syncer syncs a WAL.
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open(format!(
            "the database is in journal mode {mode}, not WAL"
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

pub struct SqliteStore {
    /// `synchronous = FULL` in WAL mode: a commit returns only after the WAL is fsynced, so
    /// an acknowledged webhook survives a crash or power loss.
    pool: SqlitePool,
    /// Read connections for the operators' reads, used off the async runtime.
    readers: Arc<Readers>,
    /// The group-commit writer of the receive path and the delivery workers ([`writer`]).
    writer: mpsc::Sender<Job>,
    /// Transactions the writer has committed.
    commits: Arc<AtomicU64>,
    /// Set when the WAL could not be synced: the writer writes nothing any more.
    stopped: Arc<AtomicBool>,
    /// Held by every write of this process, so our own connections never contend for
    /// SQLite's write lock: contention would put them in SQLite's busy handler, which
    /// sleeps in steps of up to 100 ms and made ingest crawl under load.
    write_gate: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    #[tracing::instrument(name = "open_sqlite_store", skip_all, fields(url = %url))]
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let path = options.get_filename().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| {
                StoreError::Open(format!(
                    "cannot create the store's directory {}: {source}",
                    dir.display()
                ))
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        migrate::migrate(&pool).await?;
        let commits = Arc::new(AtomicU64::new(0));
        let write_gate = Arc::new(tokio::sync::Mutex::new(()));
        let stopped = Arc::new(AtomicBool::new(false));
        let writer = writer::spawn_writer(
            open_writer_connection(&path)?,
            commits.clone(),
            write_gate.clone(),
            stopped.clone(),
        )?;
        Ok(Self {
            pool,
            readers: Readers::new(&path),
            writer,
            commits,
            stopped,
            write_gate,
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

    /// How many group commits the writer has made (each holds one or more writes).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The retention purge, `step` webhooks at a time, each step under the write gate of its
    /// own, so that webhooks are acknowledged between the steps.
    async fn purge_in_steps(&self, cutoff_ms: i64, step: i64) -> Result<u64, StoreError> {
        let mut cursor = Some(housekeeping::PurgeCursor::START);
        let mut purged = 0;
        while let Some(at) = cursor {
            let _gate = self.write_gate.lock().await;
            let (done, next) = housekeeping::purge_step(&self.pool, cutoff_ms, at, step).await?;
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
        // The writer stops for good when the WAL cannot be synced (see `writer`).
        if self.stopped.load(Ordering::Acquire) || self.writer.is_closed() {
            return Err(StoreError::Stopped);
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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
    /// be two commits, one of them synced, for every round of a destination with a backlog.
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
        // Most destinations never have a waiting delivery: a read (no write lock) tells.
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE destination = ? AND status = 'waiting')",
        )
        .bind(destination)
        .fetch_one(&self.pool)
        .await?;
        if !waiting {
            return Ok(());
        }
        let _gate = self.write_gate.lock().await;
        housekeeping::release_waiting(&self.pool, destination, now_ms, waiting_timeout_ms).await
    }

    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.purge_in_steps(cutoff_ms, housekeeping::PURGE_STEP)
            .await
    }

    async fn release_leases(&self, deliveries: &[i64]) -> Result<u64, StoreError> {
        let _gate = self.write_gate.lock().await;
        housekeeping::release_leases(&self.pool, deliveries).await
    }

    async fn next_due_at(&self, destination: &str) -> Result<Option<i64>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            // Two searches of the (destination, status, next_attempt_at) index: the first
            // reads one entry (or a few), not every pending delivery as one MIN over both did.
            // A delivery held back is not due (its worker would claim nothing, again and
            // again): the first one not held back, in the index's order.
            concat!(
                "SELECT MIN(at) FROM ( \
                 SELECT * FROM (SELECT next_attempt_at AS at FROM deliveries d \
                 WHERE destination = ?1 AND status = 'pending' AND ",
                not_held_back!(),
                " ORDER BY next_attempt_at LIMIT 1) \
                 UNION ALL \
                 SELECT MIN(lease_until) FROM deliveries \
                 WHERE destination = ?1 AND status = 'in_flight')"
            ),
        )
        .bind(destination)
        .fetch_one(&self.pool)
        .await?;
        Ok(next)
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
    ) -> Result<Requeued, StoreError> {
        let _gate = self.write_gate.lock().await;
        let mut tx = self.pool.begin().await?;
        // The retention purge sets the payload of finished deliveries of old webhooks to
        // `null`: nothing is left to send.
        // (id, whether it needs another delivery) of each one to requeue.
        let chosen: Vec<(i64, bool)> = bind_filter(
            sqlx::query(concat!(
                "SELECT id, needs_mapping IS NOT NULL FROM deliveries WHERE ",
                filter_sql!(),
                " AND status IN ('dead', 'dry_run', 'skipped', 'pending') \
                 AND payload != 'null' ORDER BY id LIMIT ?5"
            )),
            filter,
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
        // A count has no limit, but `bind_filter` binds one as ?5: `?5 = ?5` takes it.
        let purged: i64 = bind_filter(
            sqlx::query(concat!(
                "SELECT count(*) FROM deliveries WHERE ",
                filter_sql!(),
                " AND status IN ('dead', 'dry_run', 'skipped', 'pending') \
                 AND payload = 'null' AND ?5 = ?5"
            )),
            filter,
        )
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        let waiting = chosen.iter().filter(|(_, needs)| *needs).count() as u64;
        let ids: Vec<i64> = chosen.iter().map(|(id, _)| *id).collect();
        let ids = serde_json::to_string(&ids).expect("ids serialise");
        // One that needs another delivery waits for it, and takes its answer (Scalef's
        // conversion id) afresh once it is delivered.
        let requeued = sqlx::query(
            "UPDATE deliveries SET attempts = 0, next_attempt_at = ?1, lease_until = NULL, \
               updated_at = ?1, \
               status = CASE WHEN needs_mapping IS NULL THEN 'pending' ELSE 'waiting' END, \
               conversion_id = CASE WHEN needs_mapping IS NULL THEN conversion_id END \
             WHERE id IN (SELECT value FROM json_each(?2))",
        )
        .bind(now_ms)
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // A status update skipped because its conversion was not made: the conversion is
        // requeued, so the update waits for it again.
        let rearmed = sqlx::query(
            "UPDATE deliveries AS w SET status = 'waiting', attempts = 0, conversion_id = NULL, \
               next_attempt_at = ?1, updated_at = ?1 \
             WHERE w.status = 'skipped' AND w.payload != 'null' AND EXISTS \
               (SELECT 1 FROM deliveries AS n WHERE n.id IN (SELECT value FROM json_each(?2)) \
                AND n.mapping = w.needs_mapping AND n.key = w.needs_key)",
        )
        .bind(now_ms)
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Requeued {
            requeued,
            waiting,
            rearmed,
            purged: purged as u64,
        })
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
}
