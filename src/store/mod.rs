//! The Store seam: where webhooks are kept durably before they are acknowledged. One file per
//! backend; the HTTP layer and the CLI see only [`Store`].

mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use sqlite::SqliteStore;

/// A verified webhook, ready to be written with the deliveries translated from it.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub source: String,
    pub platform: String,
    pub topic: String,
    pub dedupe_id: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub received_at_ms: i64,
    pub deliveries: Vec<NewDelivery>,
    /// Why (part of) the translation failed; the webhook is then stored as `untranslated`.
    pub translation_error: Option<String>,
}

/// One translated payload for one destination, written with its webhook.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub mapping: String,
    pub key: String,
    pub destination: String,
    pub operation: String,
    /// JSON text.
    pub payload: String,
    /// (mapping, key) of the delivery this one waits for.
    pub needs: Option<(String, String)>,
}

impl From<crate::mapping::Plan> for NewDelivery {
    fn from(plan: crate::mapping::Plan) -> Self {
        NewDelivery {
            payload: plan.payload.to_string(),
            operation: plan.operation.as_str().to_string(),
            needs: plan.needs.map(|n| (n.mapping, n.key)),
            mapping: plan.mapping,
            key: plan.key,
            destination: plan.destination,
        }
    }
}

/// What [`Store::accept`] did. Either way the webhook is durably on disk when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Written now, under this id, with this many new deliveries (a delivery whose mapping
    /// and key are already stored is not written again).
    Stored { webhook_id: i64, deliveries: u64 },
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
    /// Writes the webhook and its deliveries in one transaction, unless its (source, dedupe
    /// id) is already stored; returns only once the write is durable.
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
