//! The Store seam: where webhooks are kept durably before they are acknowledged. One file per
//! backend; the HTTP layer and the CLI see only [`Store`].

mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use sqlite::SqliteStore;

/// A verified webhook, ready to be written.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub source: String,
    pub platform: String,
    pub topic: String,
    pub dedupe_id: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub received_at_ms: i64,
}

/// What [`Store::accept`] did. Either way the webhook is durably on disk when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Written now, under this id.
    Stored { webhook_id: i64 },
    /// The same (source, dedupe id) was stored before, under this id; nothing was written.
    Duplicate { webhook_id: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL `{0}`: use sqlite://PATH")]
    UnsupportedUrl(String),
    #[error("cannot create the store's directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Writes the webhook unless its (source, dedupe id) is already stored; returns only once
    /// the write is durable.
    async fn accept(&self, webhook: NewWebhook) -> Result<Accepted, StoreError>;
    /// Succeeds when the store answers a query.
    async fn check_ready(&self) -> Result<(), StoreError>;
}

/// Opens the store named by `url`, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
