//! PostgreSQL backend, on sqlx with a connection pool and runtime queries (no compile-time
//! checked ones, no `DATABASE_URL` at build time). Several storehook instances may share one
//! schema: each webhook is one transaction, the unique constraints refuse a second copy of a
//! webhook or a delivery, claims lock with `FOR UPDATE SKIP LOCKED` and lease with an expiry,
//! a transaction chosen as a deadlock's victim is run again, the retention purge runs on one
//! instance at a time (an advisory lock), and `LISTEN/NOTIFY` wakes the other instances'
//! workers and carries an operator's mappings reload to them ([`wake`]). The delivery rules
//! are stated in [`rules`], the schema in [`migrate`].
//!
//! Every connection of the pool is a session of its own: the URL must be the server's
//! direct one, not a pooler's in transaction mode (which breaks `LISTEN`, advisory locks and
//! the migrator's lock): see `docs/deploy.md`.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

mod accept;
pub(super) mod copy;
mod heartbeats;
mod migrate;
mod reads;
mod rounds;
mod rules;
mod types;
mod wake;

use super::{
    Accepted, Announcement, Attempt, AttemptRecord, Cancelled, ClaimedDelivery, DeliveryFilter,
    DeliveryId, DeliveryRecord, DeliveryStats, DeliveryStatus, DeliverySummary, Heartbeat,
    Migrations, NewDelivery, NewWebhook, Requeued, Store, StoreError, StoredWebhook, Touched,
    WebhookFilter, WebhookId, WebhookRecord, redacted_url,
};

/// Connections of one instance's pool, the `LISTEN` one among them.
const MAX_CONNECTIONS: u32 = 16;
/// How long a write waits for a free connection before it fails (the receive path then
/// answers 503, and the shop retries).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a transaction chosen as a deadlock's (or serialization conflict's) victim is
/// run again before its error is returned.
const RETRIES: u32 = 5;

/// A transaction of the pool.
type Tx = sqlx::Transaction<'static, sqlx::Postgres>;
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `self.transaction(…)` running `$body` with `$conn` the transaction's connection: the
/// body's value is the transaction's, and a `?` in it rolls the transaction back.
macro_rules! in_transaction {
    ($store:expr, |$conn:ident| $body:expr) => {
        $store.transaction(|mut tx: Tx| {
            Box::pin(async move {
                let value = {
                    let $conn: &mut PgConnection = &mut tx;
                    $body
                };
                Ok((value, tx))
            })
        })
    };
}

pub struct PostgresStore {
    pool: PgPool,
    /// The schema the tables are in (the first of the connection's `search_path`): the
    /// advisory lock of the retention purge and the payload of the notifications name it, so
    /// stores in two schemas of one database keep apart.
    schema: String,
    /// This store's name in the announcements it makes ([`wake`]).
    announcer: wake::Announcer,
}

impl PostgresStore {
    #[tracing::instrument(name = "open_postgres_store", skip_all, fields(url = %redacted_url(url)))]
    pub async fn open(url: &str, migrations: Migrations) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|error| {
            StoreError::Open(format!(
                "invalid PostgreSQL URL {}: {error}",
                redacted_url(url)
            ))
        })?;
        let options = options.application_name("storehook");
        // One connection first, for the server's own reason when it cannot be had (the
        // pool says only that it timed out).
        PgConnection::connect_with(&options)
            .await
            .map_err(|error| {
                StoreError::Open(format!("cannot connect to {}: {error}", redacted_url(url)))
            })?
            .close()
            .await?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|error| {
                StoreError::Open(format!("cannot connect to {}: {error}", redacted_url(url)))
            })?;
        let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await
            .map_err(|error| {
                StoreError::Open(format!("cannot read the current schema: {error}"))
            })?;
        let schema = schema.ok_or_else(|| {
            StoreError::Open(
                "no schema of the connection's search_path exists: create it, or name one \
                 that does (options=-csearch_path=NAME in the URL)"
                    .into(),
            )
        })?;
        match migrations {
            Migrations::Apply => migrate::migrate(&pool).await?,
            Migrations::Require => migrate::require_migrated(&pool).await?,
        }
        let announcer = wake::Announcer::new(schema.clone());
        Ok(Self {
            pool,
            schema,
            announcer,
        })
    }

    /// Runs `work` in a transaction of its own and commits it; a transaction PostgreSQL
    /// rolled back as a deadlock's or serialization conflict's victim is run again (a few
    /// times, after a short pause), since nothing of it was written. `work` takes the
    /// transaction and gives it back with its value ([`in_transaction!`] writes that).
    async fn transaction<'a, T, W>(&'a self, mut work: W) -> Result<T, StoreError>
    where
        W: FnMut(Tx) -> BoxFuture<'a, Result<(T, Tx), sqlx::Error>>,
    {
        let mut tries = 0;
        loop {
            let attempt = async {
                let tx = self.pool.begin().await?;
                let (value, tx) = work(tx).await?;
                tx.commit().await?;
                Ok::<T, sqlx::Error>(value)
            };
            match attempt.await {
                Err(error) if types::is_retryable(&error) && tries < RETRIES => {
                    tries += 1;
                    tracing::debug!(%error, tries, "transaction rolled back by the server; running it again");
                    let pause = fastrand::u64(1..=20 * u64::from(tries));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                result => return result.map_err(StoreError::from),
            }
        }
    }

    /// The retention purge, `step` webhooks a transaction, on one instance at a time: it
    /// holds a session-level advisory lock (named after this store's schema) on a
    /// connection of its own while it runs; an instance that finds it held purges nothing
    /// this time (the other is purging). The connection is closed, not returned to the
    /// pool, should the lock's release fail, so the lock never outlives the purge.
    async fn purge_in_steps(&self, cutoff_ms: i64, step: i64) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext('storehook.purge'), hashtext($1))",
        )
        .bind(&self.schema)
        .fetch_one(&mut *conn)
        .await?;
        if !locked {
            tracing::debug!("retention purge running on another instance; not run here");
            return Ok(0);
        }
        let purged = async {
            let mut cursor = Some(rules::PurgeCursor::START);
            let mut purged = 0;
            while let Some(at) = cursor {
                let mut tx = conn.begin().await?;
                let (done, next) = rules::purge_step(&mut tx, cutoff_ms, at, step).await?;
                tx.commit().await?;
                purged += done;
                cursor = next;
            }
            Ok::<u64, sqlx::Error>(purged)
        }
        .await;
        let unlocked =
            sqlx::query("SELECT pg_advisory_unlock(hashtext('storehook.purge'), hashtext($1))")
                .bind(&self.schema)
                .execute(&mut *conn)
                .await;
        if unlocked.is_err() {
            conn.close_on_drop();
        }
        Ok(purged?)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn accept(&self, webhook: NewWebhook) -> Result<Accepted, StoreError> {
        let schema = &self.schema;
        let webhook = &webhook;
        in_transaction!(self, |conn| {
            let (accepted, due) = accept::insert_webhook(conn, webhook).await?;
            wake::notify_due(conn, schema, &due).await?;
            accepted
        })
        .await
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
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
        in_transaction!(self, |conn| {
            rounds::claim(conn, destination, limit, now_ms, lease_ms).await?
        })
        .await
    }

    async fn record_attempts(&self, attempts: &[(Vec<i64>, Attempt)]) -> Result<(), StoreError> {
        in_transaction!(self, |conn| rounds::record(conn, attempts).await?).await
    }

    async fn release_waiting_deliveries(
        &self,
        destination: &str,
        now_ms: i64,
        waiting_timeout_ms: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        if !rules::has_waiting(&mut conn, destination).await? {
            return Ok(());
        }
        drop(conn);
        let schema = &self.schema;
        in_transaction!(self, |conn| {
            let ready =
                rules::release_waiting(conn, destination, now_ms, waiting_timeout_ms).await?;
            if ready > 0 {
                wake::notify_due(conn, schema, &[destination.to_string()]).await?;
            }
        })
        .await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliverySummary>, StoreError> {
        Ok(reads::list_deliveries(&self.pool, filter).await?)
    }

    async fn requeue_deliveries(
        &self,
        filter: &DeliveryFilter,
        now_ms: i64,
    ) -> Result<(Requeued, Touched), StoreError> {
        let schema = &self.schema;
        in_transaction!(self, |conn| {
            let (requeued, touched) = rules::requeue(conn, filter, now_ms).await?;
            wake::notify_due(conn, schema, &touched.destinations).await?;
            (requeued, touched)
        })
        .await
    }

    async fn cancel_deliveries(
        &self,
        filter: &DeliveryFilter,
        now_ms: i64,
    ) -> Result<(Cancelled, Touched), StoreError> {
        let schema = &self.schema;
        in_transaction!(self, |conn| {
            let (cancelled, touched) = rules::cancel(conn, filter, now_ms).await?;
            // A newer delivery a cancelled one held back may be due now.
            wake::notify_due(conn, schema, &touched.destinations).await?;
            (cancelled, touched)
        })
        .await
    }

    async fn delivery_stats(&self, since_ms: i64) -> Result<DeliveryStats, StoreError> {
        Ok(reads::delivery_stats(&self.pool, since_ms).await?)
    }

    async fn webhooks_for(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        Ok(reads::webhooks_for(&self.pool, filter).await?)
    }

    async fn list_webhooks(
        &self,
        filter: &WebhookFilter,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        Ok(reads::list_webhooks(&self.pool, filter).await?)
    }

    async fn get_webhook(&self, id: WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        Ok(reads::get_webhook(&self.pool, id).await?)
    }

    async fn delivery_by_key(
        &self,
        mapping: &str,
        key: &str,
    ) -> Result<Option<DeliverySummary>, StoreError> {
        Ok(reads::delivery_by_key(&self.pool, mapping, key).await?)
    }

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(reads::get_delivery(&self.pool, id).await?)
    }

    async fn list_attempts(&self, id: DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        Ok(reads::list_attempts(&self.pool, id).await?)
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
            deliveries,
            translation_error,
            only_status,
            now_ms,
        };
        let (replace, schema) = (&replace, &self.schema);
        in_transaction!(self, |conn| {
            let (counts, due) = accept::replace_deliveries(conn, replace).await?;
            wake::notify_due(conn, schema, &due).await?;
            counts
        })
        .await
    }

    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.purge_in_steps(cutoff_ms, rules::PURGE_STEP).await
    }

    async fn claim_run(&self, job: &str, now_ms: i64, every_ms: i64) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let claimed = sqlx::query(super::periodic::CLAIM)
            .bind(job)
            .bind(now_ms)
            .bind(now_ms - every_ms)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(claimed.is_some())
    }

    async fn release_leases(&self, deliveries: &[i64], now_ms: i64) -> Result<u64, StoreError> {
        let schema = &self.schema;
        in_transaction!(self, |conn| {
            let released = rules::release_leases(conn, deliveries, now_ms).await?;
            wake::notify_due(conn, schema, &released).await?;
            released.len() as u64
        })
        .await
    }

    async fn next_due_at(&self, destination: &str) -> Result<Option<i64>, StoreError> {
        Ok(reads::next_due_at(&self.pool, destination).await?)
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<Announcement>> {
        Some(wake::subscribe(self.pool.clone(), self.announcer.clone()))
    }

    async fn announce_reload(&self, via: &str, client: &str) -> Result<bool, StoreError> {
        wake::notify_reload(&self.pool, &self.announcer, via, client).await?;
        Ok(true)
    }

    async fn record_heartbeat(
        &self,
        heartbeat: &Heartbeat,
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        in_transaction!(self, |conn| {
            heartbeats::record(conn, heartbeat, forget_before_ms).await?
        })
        .await
    }

    async fn remove_heartbeat(&self, instance: &str) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(heartbeats::remove(&mut conn, instance).await?)
    }

    async fn list_heartbeats(&self) -> Result<Vec<Heartbeat>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Ok(heartbeats::list(&mut conn).await?)
    }
}
