//! `storehook copy-store`'s SQLite side ([`crate::store::copy`]): a source read in one read
//! transaction (in WAL mode, a snapshot of the last commit when it began), and a target
//! written in one `BEGIN IMMEDIATE` transaction (no other writer meanwhile). Each holds a
//! connection of its own, used off the async runtime.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use super::{BUSY_TIMEOUT, heartbeats, migrate, open_writer_connection, path_of, prepare_file};
use crate::store::copy::{
    AttemptRow, COUNTS, CopySource, CopyTarget, Counts, DeliveryRow, IdMarks, Table, WebhookRow,
};
use crate::store::{Heartbeat, Migrations, StoreError};

/// A connection used in blocking tasks: each call takes it into one and gives it back.
struct Blocking(Option<Connection>);

impl Blocking {
    async fn run<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.0.take().ok_or_else(|| {
            StoreError::Unavailable("an earlier step of the copy did not finish".into())
        })?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = work(&conn);
            (conn, result)
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("a copy step did not finish: {error}")))?;
        self.0 = Some(conn);
        result
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| StoreError::Open(format!("opening the store did not finish: {error}")))?
}

pub(in crate::store) struct SqliteSource {
    conn: Blocking,
}

impl SqliteSource {
    /// Opens the existing store at `url` (never creating one), checks that its rows can be
    /// read as this build writes them, and begins the read transaction.
    pub(in crate::store) async fn open(url: &str) -> Result<Self, StoreError> {
        let path = path_of(url)?;
        let conn = blocking(move || open_snapshot(&path)).await?;
        Ok(SqliteSource {
            conn: Blocking(Some(conn)),
        })
    }
}

fn open_snapshot(path: &Path) -> Result<Connection, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Open(format!(
            "there is no SQLite store at {}",
            path.display()
        )));
    }
    // Read-write but `query_only`, as the store's readers: a read-only connection cannot
    // create the WAL's shared-memory file, should it be missing.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    // The snapshot is taken at the first read after BEGIN, and holds until the connection
    // is dropped (the copy never commits it: it wrote nothing).
    conn.execute_batch("BEGIN")?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    migrate::require_copyable(&conn)?;
    Ok(conn)
}

#[async_trait]
impl CopySource for SqliteSource {
    async fn heartbeats(&mut self) -> Result<Vec<Heartbeat>, StoreError> {
        self.conn
            .run(|conn| {
                let kept: bool = conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                     WHERE type = 'table' AND name = 'heartbeats')",
                    [],
                    |row| row.get(0),
                )?;
                if kept {
                    heartbeats::list(conn)
                } else {
                    Ok(Vec::new())
                }
            })
            .await
    }

    async fn counts(&mut self) -> Result<Counts, StoreError> {
        self.conn.run(counts).await
    }

    async fn id_marks(&mut self) -> Result<IdMarks, StoreError> {
        self.conn
            .run(|conn| {
                let mut marks = [0; 3];
                for (mark, table) in marks.iter_mut().zip(Table::ALL) {
                    // AUTOINCREMENT keeps the highest id given in `sqlite_sequence`.
                    let given: Option<i64> = conn
                        .query_row(
                            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                            [table.name()],
                            |row| row.get(0),
                        )
                        .optional()?;
                    *mark = given.unwrap_or(0);
                }
                let [webhooks, deliveries, attempts] = marks;
                Ok(IdMarks {
                    webhooks,
                    deliveries,
                    attempts,
                })
            })
            .await
    }

    async fn webhooks_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<WebhookRow>, StoreError> {
        self.conn
            .run(move |conn| {
                page(conn, &Table::Webhooks.page_query(), after, limit, |row| {
                    Ok(WebhookRow {
                        id: row.get(0)?,
                        source: row.get(1)?,
                        platform: row.get(2)?,
                        topic: row.get(3)?,
                        dedupe_id: row.get(4)?,
                        headers: row.get(5)?,
                        body: bytes(row, 6)?,
                        status: row.get(7)?,
                        error: row.get(8)?,
                        received_at: row.get(9)?,
                    })
                })
            })
            .await
    }

    async fn deliveries_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        self.conn
            .run(move |conn| {
                page(conn, &Table::Deliveries.page_query(), after, limit, |row| {
                    Ok(DeliveryRow {
                        id: row.get(0)?,
                        webhook_id: row.get(1)?,
                        mapping: row.get(2)?,
                        key: row.get(3)?,
                        destination: row.get(4)?,
                        operation: row.get(5)?,
                        payload: row.get(6)?,
                        needs_mapping: row.get(7)?,
                        needs_key: row.get(8)?,
                        status: row.get(9)?,
                        skip_kind: row.get(10)?,
                        attempts: row.get(11)?,
                        next_attempt_at: row.get(12)?,
                        lease_until: row.get(13)?,
                        conversion_id: row.get(14)?,
                        last_error: row.get(15)?,
                        request: row.get(16)?,
                        created_at: row.get(17)?,
                        updated_at: row.get(18)?,
                    })
                })
            })
            .await
    }

    async fn attempts_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AttemptRow>, StoreError> {
        self.conn
            .run(move |conn| {
                page(conn, &Table::Attempts.page_query(), after, limit, |row| {
                    Ok(AttemptRow {
                        id: row.get(0)?,
                        delivery_id: row.get(1)?,
                        started_at: row.get(2)?,
                        duration_ms: row.get(3)?,
                        outcome: row.get(4)?,
                        http_status: row.get(5)?,
                        response: row.get(6)?,
                    })
                })
            })
            .await
    }
}

/// The rows `sql` reads with an id above `after`, at most `limit` of them.
fn page<T>(
    conn: &Connection,
    sql: &str,
    after: i64,
    limit: usize,
    read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params![after, limit], read)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A body column: a blob as the store writes it, or text, which SQLite's column affinity
/// does not forbid.
fn bytes(row: &Row<'_>, column: usize) -> rusqlite::Result<Vec<u8>> {
    match row.get_ref(column)? {
        ValueRef::Text(text) => Ok(text.to_vec()),
        _ => row.get(column),
    }
}

fn counts(conn: &Connection) -> Result<Counts, StoreError> {
    let (webhooks, deliveries, attempts): (i64, i64, i64) = conn.query_row(COUNTS, [], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })?;
    Ok(Counts {
        webhooks: webhooks.unsigned_abs(),
        deliveries: deliveries.unsigned_abs(),
        attempts: attempts.unsigned_abs(),
    })
}

pub(in crate::store) struct SqliteTarget {
    conn: Blocking,
}

impl SqliteTarget {
    /// Creates the store at `url` if need be, applies the migrations it lacks, and begins
    /// the write transaction.
    pub(in crate::store) async fn open(url: &str) -> Result<Self, StoreError> {
        let path = path_of(url)?;
        let conn = blocking(move || {
            prepare_file(&path, Migrations::Apply)?;
            let conn = open_writer_connection(&path)?;
            conn.execute_batch("BEGIN IMMEDIATE")?;
            Ok(conn)
        })
        .await?;
        Ok(SqliteTarget {
            conn: Blocking(Some(conn)),
        })
    }
}

#[async_trait]
impl CopyTarget for SqliteTarget {
    async fn counts(&mut self) -> Result<Counts, StoreError> {
        self.conn.run(counts).await
    }

    async fn write_webhooks(&mut self, rows: Vec<WebhookRow>) -> Result<(), StoreError> {
        self.conn
            .run(move |conn| {
                let mut insert = conn
                    .prepare_cached(&(Table::Webhooks.insert_into() + &Table::Webhooks.values()))?;
                for row in &rows {
                    insert.execute(params![
                        row.id,
                        row.source,
                        row.platform,
                        row.topic,
                        row.dedupe_id,
                        row.headers,
                        row.body,
                        row.status,
                        row.error,
                        row.received_at
                    ])?;
                }
                Ok(())
            })
            .await
    }

    async fn write_deliveries(&mut self, rows: Vec<DeliveryRow>) -> Result<(), StoreError> {
        self.conn
            .run(move |conn| {
                let mut insert = conn.prepare_cached(
                    &(Table::Deliveries.insert_into() + &Table::Deliveries.values()),
                )?;
                for row in &rows {
                    insert.execute(params![
                        row.id,
                        row.webhook_id,
                        row.mapping,
                        row.key,
                        row.destination,
                        row.operation,
                        row.payload,
                        row.needs_mapping,
                        row.needs_key,
                        row.status,
                        row.skip_kind,
                        row.attempts,
                        row.next_attempt_at,
                        row.lease_until,
                        row.conversion_id,
                        row.last_error,
                        row.request,
                        row.created_at,
                        row.updated_at
                    ])?;
                }
                Ok(())
            })
            .await
    }

    async fn write_attempts(&mut self, rows: Vec<AttemptRow>) -> Result<(), StoreError> {
        self.conn
            .run(move |conn| {
                let mut insert = conn
                    .prepare_cached(&(Table::Attempts.insert_into() + &Table::Attempts.values()))?;
                for row in &rows {
                    insert.execute(params![
                        row.id,
                        row.delivery_id,
                        row.started_at,
                        row.duration_ms,
                        row.outcome,
                        row.http_status,
                        row.response
                    ])?;
                }
                Ok(())
            })
            .await
    }

    /// Inserting a row with its id already moved the table's `sqlite_sequence` entry to the
    /// highest id written; this raises it to the source's mark when that is higher.
    async fn continue_ids(&mut self, marks: IdMarks) -> Result<(), StoreError> {
        self.conn
            .run(move |conn| {
                let marks = [marks.webhooks, marks.deliveries, marks.attempts];
                for (table, mark) in Table::ALL.into_iter().zip(marks) {
                    let kept = conn.execute(
                        "UPDATE sqlite_sequence SET seq = max(seq, ?2) WHERE name = ?1",
                        params![table.name(), mark],
                    )?;
                    if kept == 0 && mark > 0 {
                        conn.execute(
                            "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
                            params![table.name(), mark],
                        )?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.conn
            .run(|conn| Ok(conn.execute_batch("COMMIT")?))
            .await
    }
}
