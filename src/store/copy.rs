//! `storehook copy-store`: every webhook, delivery and attempt of one store written into
//! another, empty one, with their ids, whichever backends the two URLs name. The copy is
//! written here once; each backend gives the few primitives it needs ([`CopySource`],
//! [`CopyTarget`]: read a page of rows after an id, write rows, move the id sequences on).
//!
//! - The source is read in one read transaction (a snapshot: SQLite's WAL read transaction,
//!   PostgreSQL's `REPEATABLE READ, READ ONLY`), page by page in id order, so what a running
//!   instance writes meanwhile is either wholly in the copy or wholly out of it. The source
//!   is never written to, nor migrated: it needs the migrations that shape the rows.
//! - The target is migrated first, then written in one transaction (its tables locked
//!   against other writers on PostgreSQL): it is refused unless it holds no webhook,
//!   delivery or attempt, and a failure anywhere leaves it without a row.
//! - Rows keep every column as stored, ids included, so each delivery keeps its mapping
//!   and key (its `Idempotency-Key`) and its payload (the Legion event id in it). A
//!   delivery in flight keeps its lease: the target claims it again once the lease ends, as
//!   after a crash, so an attempt the source may still be making is not doubled at once.
//! - The target's ids then continue after the highest id the source ever gave (which may be
//!   above the highest it still holds: the retention purge deletes attempts).
//! - A source with a fresh heartbeat ([`super::heartbeat`]) is refused unless the caller
//!   allows it: the copy would miss what that instance accepts after the snapshot.

use async_trait::async_trait;

use super::heartbeat::Heartbeat;
use super::{Backend, StoreError, redacted_url};
use crate::domain::DeliveryStatus;

/// Rows read and written per page (webhooks are a few KiB each; at most 2 MiB).
pub const PAGE_ROWS: usize = 100;

/// The columns copied, in the order both backends read and write them (the row types below
/// list them in the same order).
const WEBHOOK_COLUMNS: &str =
    "id, source, platform, topic, dedupe_id, headers, body, status, error, received_at";
const DELIVERY_COLUMNS: &str = "id, webhook_id, mapping, key, destination, operation, \
     payload, needs_mapping, needs_key, status, skip_kind, attempts, next_attempt_at, \
     lease_until, conversion_id, last_error, request, created_at, updated_at";
const ATTEMPT_COLUMNS: &str =
    "id, delivery_id, started_at, duration_ms, outcome, http_status, response";

/// One of the three tables copied, in the order their foreign keys need.
#[derive(Debug, Clone, Copy)]
pub(super) enum Table {
    Webhooks,
    Deliveries,
    Attempts,
}

impl Table {
    pub(super) const ALL: [Table; 3] = [Table::Webhooks, Table::Deliveries, Table::Attempts];

    pub(super) fn name(self) -> &'static str {
        match self {
            Table::Webhooks => "webhooks",
            Table::Deliveries => "deliveries",
            Table::Attempts => "attempts",
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Table::Webhooks => WEBHOOK_COLUMNS,
            Table::Deliveries => DELIVERY_COLUMNS,
            Table::Attempts => ATTEMPT_COLUMNS,
        }
    }

    /// A page of rows, every column copied: those after the id `$1`, at most `$2`, in id
    /// order (`$N` parameters: both SQLite and PostgreSQL read them).
    pub(super) fn page_query(self) -> String {
        format!(
            "SELECT {} FROM {} WHERE id > $1 ORDER BY id LIMIT $2",
            self.columns(),
            self.name()
        )
    }

    /// `INSERT INTO table (every column copied) `, for the values to follow.
    pub(super) fn insert_into(self) -> String {
        format!("INSERT INTO {} ({}) ", self.name(), self.columns())
    }

    /// `VALUES ($1, …, $N)`, one parameter a column copied.
    pub(super) fn values(self) -> String {
        let count = self.columns().split(',').count();
        let parameters: Vec<String> = (1..=count).map(|i| format!("${i}")).collect();
        format!("VALUES ({})", parameters.join(", "))
    }
}

/// The rows each table holds, as one row of three counts.
pub(super) const COUNTS: &str = "SELECT (SELECT count(*) FROM webhooks), \
     (SELECT count(*) FROM deliveries), (SELECT count(*) FROM attempts)";

/// A `webhooks` row, every column as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: i64,
    pub source: String,
    pub platform: String,
    pub topic: String,
    pub dedupe_id: String,
    /// JSON text.
    pub headers: String,
    pub body: Vec<u8>,
    pub status: String,
    pub error: Option<String>,
    pub received_at: i64,
}

/// A `deliveries` row, every column as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: i64,
    pub webhook_id: i64,
    pub mapping: String,
    pub key: String,
    pub destination: String,
    pub operation: String,
    pub payload: String,
    pub needs_mapping: Option<String>,
    pub needs_key: Option<String>,
    pub status: String,
    pub skip_kind: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_until: Option<i64>,
    pub conversion_id: Option<String>,
    pub last_error: Option<String>,
    pub request: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An `attempts` row, every column as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub id: i64,
    pub delivery_id: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub outcome: String,
    pub http_status: Option<i32>,
    pub response: Option<String>,
}

/// How many rows each table holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub webhooks: u64,
    pub deliveries: u64,
    pub attempts: u64,
}

impl Counts {
    fn is_empty(&self) -> bool {
        *self == Counts::default()
    }
}

/// The highest id each table has given (0 for none): the ids the target continues after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdMarks {
    pub webhooks: i64,
    pub deliveries: i64,
    pub attempts: i64,
}

/// A backend's side of reading a store to copy: every call reads the one snapshot taken
/// when it was opened.
#[async_trait]
pub trait CopySource: Send {
    /// Every heartbeat (none when the store's schema predates them).
    async fn heartbeats(&mut self) -> Result<Vec<Heartbeat>, StoreError>;
    async fn counts(&mut self) -> Result<Counts, StoreError>;
    /// The highest id each table has given, held rows or not.
    async fn id_marks(&mut self) -> Result<IdMarks, StoreError>;
    /// Up to `limit` rows with an id above `after`, in id order.
    async fn webhooks_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<WebhookRow>, StoreError>;
    async fn deliveries_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError>;
    async fn attempts_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AttemptRow>, StoreError>;
}

/// A backend's side of writing a copy: every call writes in the one transaction begun when
/// it was opened; dropped uncommitted, nothing of it stays.
#[async_trait]
pub trait CopyTarget: Send {
    async fn counts(&mut self) -> Result<Counts, StoreError>;
    /// Writes the rows with their ids.
    async fn write_webhooks(&mut self, rows: Vec<WebhookRow>) -> Result<(), StoreError>;
    async fn write_deliveries(&mut self, rows: Vec<DeliveryRow>) -> Result<(), StoreError>;
    async fn write_attempts(&mut self, rows: Vec<AttemptRow>) -> Result<(), StoreError>;
    /// Makes each table's next id follow both its highest id and `marks`.
    async fn continue_ids(&mut self, marks: IdMarks) -> Result<(), StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// What the caller allows, and when the copy runs.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Copy a source that a running instance may still write to (a fresh heartbeat).
    pub allow_running_source: bool,
    /// Now, as Unix time in milliseconds: heartbeats are judged fresh from it.
    pub now_ms: i64,
    /// Rows per page ([`PAGE_ROWS`]).
    pub page_rows: usize,
}

/// What a copy wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub counts: Counts,
    /// Deliveries copied in flight, and when the last of their leases ends: the target
    /// claims each once its lease has ended.
    pub in_flight: u64,
    pub last_lease_until: Option<i64>,
    /// The fresh heartbeats of the source, when the caller allowed a running source.
    pub running: Vec<Heartbeat>,
}

/// Why a copy was refused or failed. The URLs are shown with their passwords masked.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("--from and --to name the same store ({0})")]
    SameStore(String),
    #[error("cannot read the source store {url}: {error}")]
    Source { url: String, error: StoreError },
    #[error("cannot write the target store {url}: {error}; no row was written to it")]
    Target { url: String, error: StoreError },
    #[error(
        "the target store {url} is not empty ({} webhooks, {} deliveries, {} attempts): \
         copy-store writes only into a store without any; no row was written to it",
        counts.webhooks, counts.deliveries, counts.attempts
    )]
    TargetNotEmpty { url: String, counts: Counts },
    #[error(
        "the source store {url} is in use by a running storehook serve ({}): what it \
         accepts after the copy would be missing from the target. Stop it first (its \
         heartbeat is removed when it stops; a killed one's goes stale within {} s), or \
         pass --allow-running-source to copy what it holds now",
        running.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        super::heartbeat::FRESH_FOR.as_secs()
    )]
    SourceRunning {
        url: String,
        running: Vec<Heartbeat>,
    },
    #[error(
        "the copy does not match its source ({read:?} read, {written:?} written); no row \
         was written to the target"
    )]
    Mismatch { read: Counts, written: Counts },
}

/// Copies every webhook, delivery and attempt of the store at `from` into the store at
/// `to` (migrated first; refused unless empty), in one transaction: see the module's
/// documentation.
#[tracing::instrument(skip_all, fields(from = %redacted_url(from), to = %redacted_url(to)))]
pub async fn copy_store(from: &str, to: &str, options: CopyOptions) -> Result<Copied, CopyError> {
    let source_error = |error| CopyError::Source {
        url: redacted_url(from),
        error,
    };
    let target_error = |error| CopyError::Target {
        url: redacted_url(to),
        error,
    };
    if from == to {
        return Err(CopyError::SameStore(redacted_url(from)));
    }
    Backend::of(to).map_err(target_error)?;
    let mut source = open_source(from).await.map_err(source_error)?;
    let running: Vec<Heartbeat> = source
        .heartbeats()
        .await
        .map_err(source_error)?
        .into_iter()
        .filter(|heartbeat| heartbeat.is_fresh(options.now_ms))
        .collect();
    if !running.is_empty() && !options.allow_running_source {
        return Err(CopyError::SourceRunning {
            url: redacted_url(from),
            running,
        });
    }
    let read = source.counts().await.map_err(source_error)?;
    let marks = source.id_marks().await.map_err(source_error)?;

    let mut target = open_target(to).await.map_err(target_error)?;
    let held = target.counts().await.map_err(target_error)?;
    if !held.is_empty() {
        return Err(CopyError::TargetNotEmpty {
            url: redacted_url(to),
            counts: held,
        });
    }
    let page = options.page_rows.max(1);
    let mut after = 0;
    loop {
        let rows = source
            .webhooks_after(after, page)
            .await
            .map_err(source_error)?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        target.write_webhooks(rows).await.map_err(target_error)?;
    }
    let (mut in_flight, mut last_lease_until) = (0, None);
    after = 0;
    loop {
        let rows = source
            .deliveries_after(after, page)
            .await
            .map_err(source_error)?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in rows
            .iter()
            .filter(|row| row.status == DeliveryStatus::InFlight.as_str())
        {
            in_flight += 1;
            last_lease_until = last_lease_until.max(row.lease_until);
        }
        target.write_deliveries(rows).await.map_err(target_error)?;
    }
    after = 0;
    loop {
        let rows = source
            .attempts_after(after, page)
            .await
            .map_err(source_error)?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        target.write_attempts(rows).await.map_err(target_error)?;
    }
    target.continue_ids(marks).await.map_err(target_error)?;
    let written = target.counts().await.map_err(target_error)?;
    if written != read {
        return Err(CopyError::Mismatch { read, written });
    }
    target.commit().await.map_err(target_error)?;
    Ok(Copied {
        counts: written,
        in_flight,
        last_lease_until,
        running,
    })
}

async fn open_source(url: &str) -> Result<Box<dyn CopySource>, StoreError> {
    Ok(match Backend::of(url)? {
        Backend::Sqlite => Box::new(super::sqlite::copy::SqliteSource::open(url).await?),
        Backend::Postgres => Box::new(super::postgres::copy::PgSource::open(url).await?),
    })
}

async fn open_target(url: &str) -> Result<Box<dyn CopyTarget>, StoreError> {
    Ok(match Backend::of(url)? {
        Backend::Sqlite => Box::new(super::sqlite::copy::SqliteTarget::open(url).await?),
        Backend::Postgres => Box::new(super::postgres::copy::PgTarget::open(url).await?),
    })
}

#[cfg(test)]
mod tests;
