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

/// A delivery claimed by a worker, leased until the attempt is recorded.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub operation: String,
    /// JSON text.
    pub payload: String,
    pub conversion_id: Option<String>,
    /// Attempts made so far, this one included.
    pub attempts: i64,
}

/// What one attempt came to, as it is recorded.
#[derive(Debug, Clone)]
pub enum Recorded {
    Delivered {
        response: String,
        conversion_id: Option<String>,
    },
    Retry {
        next_attempt_at_ms: i64,
        reason: String,
    },
    Dead {
        reason: String,
    },
    /// The destination runs dry: the request that would have been sent (secrets masked).
    DryRun {
        request: String,
    },
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_at_ms: i64,
    pub duration_ms: i64,
    pub recorded: Recorded,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Writes the webhook and its deliveries in one transaction, unless its (source, dedupe
    /// id) is already stored; returns only once the write is durable.
    async fn accept(&self, webhook: NewWebhook) -> Result<Accepted, StoreError>;
    /// Succeeds when the store answers a query.
    async fn check_ready(&self) -> Result<(), StoreError>;
    /// Leases up to `limit` deliveries of `destination` that are due (or whose lease
    /// expired), oldest due first, counting the attempt.
    async fn claim_due_deliveries(
        &self,
        destination: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records one attempt of these deliveries and moves them on (delivered, pending again,
    /// dead or dry_run), in one transaction.
    async fn record_attempt(&self, deliveries: &[i64], attempt: &Attempt)
    -> Result<(), StoreError>;
    /// Moves `waiting` deliveries on: to `pending` with the conversion id once the delivery
    /// they need is delivered; to `skipped` when it failed, ran dry, or never appeared within
    /// `waiting_timeout_ms`.
    async fn release_waiting_deliveries(
        &self,
        destination: &str,
        now_ms: i64,
        waiting_timeout_ms: i64,
    ) -> Result<(), StoreError>;
    /// When the next delivery of `destination` falls due, if any is pending or leased.
    async fn next_due_at(&self, destination: &str) -> Result<Option<i64>, StoreError>;
}

/// The store's clock: Unix time in milliseconds, as every time column holds it.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Opens the store named by `url`, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
