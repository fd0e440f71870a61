//! SQLite backend: one file, WAL mode, every commit synced before it is acknowledged.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Accepted, NewWebhook, Store, StoreError};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

pub struct SqliteStore {
    /// `synchronous = FULL` in WAL mode: a commit returns only after the WAL is fsynced, so
    /// an acknowledged webhook survives a crash or power loss.
    pool: SqlitePool,
}

impl SqliteStore {
    #[tracing::instrument(name = "open_sqlite_store", skip_all, fields(url = %url))]
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let path = options.get_filename();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        MIGRATIONS.run(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    #[tracing::instrument(name = "accept_webhook", skip_all, fields(source = %webhook.source, topic = %webhook.topic))]
    async fn accept(&self, webhook: NewWebhook) -> Result<Accepted, StoreError> {
        let headers = serde_json::to_string(&webhook.headers).expect("a string map serialises");
        let status = match webhook.translation_error {
            None => "translated",
            Some(_) => "untranslated",
        };
        let mut tx = self.pool.begin().await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO webhooks \
             (source, platform, topic, dedupe_id, headers, body, status, error, received_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (source, dedupe_id) DO NOTHING RETURNING id",
        )
        .bind(&webhook.source)
        .bind(&webhook.platform)
        .bind(&webhook.topic)
        .bind(&webhook.dedupe_id)
        .bind(headers)
        .bind(&webhook.body)
        .bind(status)
        .bind(&webhook.translation_error)
        .bind(webhook.received_at_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(webhook_id) = inserted else {
            tx.rollback().await?;
            let webhook_id: i64 =
                sqlx::query_scalar("SELECT id FROM webhooks WHERE source = ? AND dedupe_id = ?")
                    .bind(&webhook.source)
                    .bind(&webhook.dedupe_id)
                    .fetch_one(&self.pool)
                    .await?;
            return Ok(Accepted::Duplicate { webhook_id });
        };
        let mut deliveries = 0;
        for delivery in &webhook.deliveries {
            let status = if delivery.needs.is_some() {
                "waiting"
            } else {
                "pending"
            };
            let (needs_mapping, needs_key) = delivery.needs.clone().unzip();
            deliveries += sqlx::query(
                "INSERT INTO deliveries \
                 (webhook_id, mapping, key, destination, operation, payload, needs_mapping, \
                  needs_key, status, next_attempt_at, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (mapping, key) DO NOTHING",
            )
            .bind(webhook_id)
            .bind(&delivery.mapping)
            .bind(&delivery.key)
            .bind(&delivery.destination)
            .bind(&delivery.operation)
            .bind(&delivery.payload)
            .bind(needs_mapping)
            .bind(needs_key)
            .bind(status)
            .bind(webhook.received_at_ms)
            .bind(webhook.received_at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(Accepted::Stored {
            webhook_id,
            deliveries,
        })
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
