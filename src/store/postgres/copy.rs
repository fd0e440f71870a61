//! `storehook copy-store`'s PostgreSQL side ([`crate::store::copy`]): a source read on a
//! connection of its own in one `REPEATABLE READ, READ ONLY` transaction (one snapshot for
//! every page), and a target written in one transaction of the store's pool, its tables
//! locked against other writers until it ends.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres, QueryBuilder, Row};

use super::{PostgresStore, Tx, heartbeats, migrate};
use crate::store::copy::{
    AttemptRow, COUNTS, CopySource, CopyTarget, Counts, DeliveryRow, IdMarks, Table, WebhookRow,
};
use crate::store::{Heartbeat, Migrations, StoreError, redacted_url};

/// How long the target waits for another writer's lock on its tables before it gives up.
const LOCK_TIMEOUT: &str = "10s";

pub(in crate::store) struct PgSource {
    conn: PgConnection,
}

impl PgSource {
    /// Connects to the schema `url` names, begins the snapshot, and checks that its rows
    /// can be read as this build writes them.
    pub(in crate::store) async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|error| {
            StoreError::Open(format!(
                "invalid PostgreSQL URL {}: {error}",
                redacted_url(url)
            ))
        })?;
        let options = options.application_name("storehook copy-store");
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|error| {
                StoreError::Open(format!("cannot connect to {}: {error}", redacted_url(url)))
            })?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut conn)
            .await?;
        migrate::require_copyable(&mut conn).await?;
        Ok(PgSource { conn })
    }
}

#[async_trait]
impl CopySource for PgSource {
    async fn heartbeats(&mut self) -> Result<Vec<Heartbeat>, StoreError> {
        let kept: bool = sqlx::query_scalar("SELECT to_regclass('heartbeats') IS NOT NULL")
            .fetch_one(&mut self.conn)
            .await?;
        if !kept {
            return Ok(Vec::new());
        }
        Ok(heartbeats::list(&mut self.conn).await?)
    }

    async fn counts(&mut self) -> Result<Counts, StoreError> {
        counts(&mut self.conn).await
    }

    /// Each identity sequence's last value (not transactional: the source is not written to
    /// meanwhile, or what is written is not copied anyway).
    async fn id_marks(&mut self) -> Result<IdMarks, StoreError> {
        let (webhooks, deliveries, attempts): (i64, i64, i64) = sqlx::query_as(
            "SELECT \
             coalesce(pg_sequence_last_value(pg_get_serial_sequence('webhooks', 'id')::regclass), 0), \
             coalesce(pg_sequence_last_value(pg_get_serial_sequence('deliveries', 'id')::regclass), 0), \
             coalesce(pg_sequence_last_value(pg_get_serial_sequence('attempts', 'id')::regclass), 0)",
        )
        .fetch_one(&mut self.conn)
        .await?;
        Ok(IdMarks {
            webhooks,
            deliveries,
            attempts,
        })
    }

    async fn webhooks_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<WebhookRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(Table::Webhooks.page_query()))
            .bind(after)
            .bind(limit_of(limit))
            .fetch_all(&mut self.conn)
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(WebhookRow {
                    id: row.try_get("id")?,
                    source: row.try_get("source")?,
                    platform: row.try_get("platform")?,
                    topic: row.try_get("topic")?,
                    dedupe_id: row.try_get("dedupe_id")?,
                    headers: row.try_get("headers")?,
                    body: row.try_get("body")?,
                    status: row.try_get("status")?,
                    error: row.try_get("error")?,
                    received_at: row.try_get("received_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn deliveries_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(Table::Deliveries.page_query()))
            .bind(after)
            .bind(limit_of(limit))
            .fetch_all(&mut self.conn)
            .await?;
        Ok(rows
            .iter()
            .map(delivery)
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn attempts_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AttemptRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(Table::Attempts.page_query()))
            .bind(after)
            .bind(limit_of(limit))
            .fetch_all(&mut self.conn)
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok(AttemptRow {
                    id: row.try_get("id")?,
                    delivery_id: row.try_get("delivery_id")?,
                    started_at: row.try_get("started_at")?,
                    duration_ms: row.try_get("duration_ms")?,
                    outcome: row.try_get("outcome")?,
                    http_status: row.try_get("http_status")?,
                    response: row.try_get("response")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn delivery(row: &PgRow) -> Result<DeliveryRow, sqlx::Error> {
    Ok(DeliveryRow {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        mapping: row.try_get("mapping")?,
        key: row.try_get("key")?,
        destination: row.try_get("destination")?,
        operation: row.try_get("operation")?,
        payload: row.try_get("payload")?,
        needs_mapping: row.try_get("needs_mapping")?,
        needs_key: row.try_get("needs_key")?,
        status: row.try_get("status")?,
        skip_kind: row.try_get("skip_kind")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        lease_until: row.try_get("lease_until")?,
        conversion_id: row.try_get("conversion_id")?,
        last_error: row.try_get("last_error")?,
        request: row.try_get("request")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn counts(conn: &mut PgConnection) -> Result<Counts, StoreError> {
    let (webhooks, deliveries, attempts): (i64, i64, i64) =
        sqlx::query_as(COUNTS).fetch_one(conn).await?;
    Ok(Counts {
        webhooks: webhooks.unsigned_abs(),
        deliveries: deliveries.unsigned_abs(),
        attempts: attempts.unsigned_abs(),
    })
}

pub(in crate::store) struct PgTarget {
    tx: Tx,
    /// The store whose pool the transaction's connection belongs to.
    _store: PostgresStore,
}

impl PgTarget {
    /// Opens the store at `url`, applying the migrations it lacks, begins the transaction
    /// and locks the copied tables against other writers (readers still read).
    pub(in crate::store) async fn open(url: &str) -> Result<Self, StoreError> {
        let store = PostgresStore::open(url, Migrations::Apply).await?;
        let mut tx = store.pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query("LOCK TABLE webhooks, deliveries, attempts IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        Ok(PgTarget { tx, _store: store })
    }
}

#[async_trait]
impl CopyTarget for PgTarget {
    async fn counts(&mut self) -> Result<Counts, StoreError> {
        counts(&mut self.tx).await
    }

    async fn write_webhooks(&mut self, rows: Vec<WebhookRow>) -> Result<(), StoreError> {
        let mut insert = QueryBuilder::<Postgres>::new(Table::Webhooks.insert_into());
        insert.push_values(&rows, |mut values, row| {
            values
                .push_bind(row.id)
                .push_bind(&row.source)
                .push_bind(&row.platform)
                .push_bind(&row.topic)
                .push_bind(&row.dedupe_id)
                .push_bind(&row.headers)
                .push_bind(&row.body)
                .push_bind(&row.status)
                .push_bind(&row.error)
                .push_bind(row.received_at);
        });
        insert.build().execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn write_deliveries(&mut self, rows: Vec<DeliveryRow>) -> Result<(), StoreError> {
        let mut insert = QueryBuilder::<Postgres>::new(Table::Deliveries.insert_into());
        insert.push_values(&rows, |mut values, row| {
            values
                .push_bind(row.id)
                .push_bind(row.webhook_id)
                .push_bind(&row.mapping)
                .push_bind(&row.key)
                .push_bind(&row.destination)
                .push_bind(&row.operation)
                .push_bind(&row.payload)
                .push_bind(&row.needs_mapping)
                .push_bind(&row.needs_key)
                .push_bind(&row.status)
                .push_bind(&row.skip_kind)
                .push_bind(row.attempts)
                .push_bind(row.next_attempt_at)
                .push_bind(row.lease_until)
                .push_bind(&row.conversion_id)
                .push_bind(&row.last_error)
                .push_bind(&row.request)
                .push_bind(row.created_at)
                .push_bind(row.updated_at);
        });
        insert.build().execute(&mut *self.tx).await?;
        Ok(())
    }

    async fn write_attempts(&mut self, rows: Vec<AttemptRow>) -> Result<(), StoreError> {
        let mut insert = QueryBuilder::<Postgres>::new(Table::Attempts.insert_into());
        insert.push_values(&rows, |mut values, row| {
            values
                .push_bind(row.id)
                .push_bind(row.delivery_id)
                .push_bind(row.started_at)
                .push_bind(row.duration_ms)
                .push_bind(&row.outcome)
                .push_bind(row.http_status)
                .push_bind(&row.response);
        });
        insert.build().execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Moves each identity sequence to the higher of the table's highest id and the
    /// source's mark, so that the next id follows both. `setval` is not rolled back with
    /// the transaction: a copy that fails after it leaves the sequences ahead in a target
    /// without rows, which only skips ids.
    async fn continue_ids(&mut self, marks: IdMarks) -> Result<(), StoreError> {
        for (sql, mark) in [
            (
                "SELECT setval(pg_get_serial_sequence('webhooks', 'id'), GREATEST($1, max(id))) \
                 FROM webhooks HAVING GREATEST($1, max(id)) >= 1",
                marks.webhooks,
            ),
            (
                "SELECT setval(pg_get_serial_sequence('deliveries', 'id'), GREATEST($1, max(id))) \
                 FROM deliveries HAVING GREATEST($1, max(id)) >= 1",
                marks.deliveries,
            ),
            (
                "SELECT setval(pg_get_serial_sequence('attempts', 'id'), GREATEST($1, max(id))) \
                 FROM attempts HAVING GREATEST($1, max(id)) >= 1",
                marks.attempts,
            ),
        ] {
            sqlx::query(sql).bind(mark).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let PgTarget { tx, _store } = *self;
        tx.commit().await?;
        Ok(())
    }
}
