//! The Store seam: where webhooks are kept durably before they are acknowledged. One room per
//! backend (SQLite, PostgreSQL), chosen by the store URL's scheme ([`open`]); the HTTP layer
//! and the CLI see only [`Store`]. [`copy`] moves one store's rows into another
//! (`storehook copy-store`); [`heartbeat`] is how a running `serve` says so in its store.

pub mod copy;
pub mod heartbeat;
pub mod periodic;
mod postgres;
mod records;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use crate::domain::{
    AttemptOutcome, DeliveryId, DeliveryStatus, Operation, PlatformKind, SkipKind, WebhookId,
    WebhookStatus,
};
pub use heartbeat::Heartbeat;
pub use postgres::PostgresStore;
pub use records::{
    AttemptRecord, Cancelled, DeliveryFilter, DeliveryRecord, DeliveryStats, DeliverySummary,
    MinuteCount, Requeued, StatusCount, StoredWebhook, Touched, WebhookFilter, WebhookRecord,
};
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
    /// The mapping's skip, with its reason: stored `skipped` ([`SkipKind::Mapping`]), with
    /// the payload `null`, and never sent. It does not hold the key: a later plan of the
    /// same mapping and key replaces it.
    pub skipped: Option<String>,
}

impl From<crate::mapping::Outcome> for NewDelivery {
    fn from(outcome: crate::mapping::Outcome) -> Self {
        use crate::mapping::Outcome;
        match outcome {
            Outcome::Plan(plan) => NewDelivery {
                payload: plan.payload_json,
                operation: plan.operation.as_str().to_string(),
                needs: plan.needs.map(|n| (n.mapping, n.key)),
                mapping: plan.mapping,
                key: plan.key,
                destination: plan.destination,
                skipped: None,
            },
            Outcome::Skip(skip) => NewDelivery {
                payload: "null".to_string(),
                operation: skip.operation.as_str().to_string(),
                needs: None,
                mapping: skip.mapping,
                key: skip.key,
                destination: skip.destination,
                skipped: Some(skip.skipped),
            },
        }
    }
}

/// A delivery's key as the store keeps it: the mapping's key within its webhook's source,
/// `source/key`. Every source of a platform shares that platform's mappings, and shops number
/// their orders independently (WooCommerce from 1 on every site), so two shops' order 1234
/// are two orders: (mapping, key) is unique per source. A source id is a URL segment without
/// `/`, so no two sources make the same stored key. `needs` keys are stored the same way: a
/// delivery only ever waits for one of its own source.
pub fn stored_key(source: &str, key: &str) -> String {
    format!("{source}/{key}")
}

/// What [`Store::accept`] did. Either way the webhook is durably on disk when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Written now, under this id, with this many new deliveries (a delivery whose mapping
    /// and key are already stored is not written again; one that replaces a mapping's skip
    /// counts) and this many new skips of its mappings.
    Stored {
        webhook_id: WebhookId,
        deliveries: u64,
        skipped: u64,
    },
    /// The same (source, dedupe id) was stored before, under this id; nothing was written.
    Duplicate { webhook_id: WebhookId },
}

/// Why the store could not do what it was asked. Backend-neutral: each backend converts its
/// driver's errors into these (keeping the driver's text, so that operators see the cause),
/// and callers decide on the variant alone (the receive path answers every one with 503).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store URL names no backend this build has.
    #[error("unsupported store URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DATABASE")]
    UnsupportedUrl(String),
    /// The store could not be opened: its file or directory, its schema's migrations, or
    /// the threads that write it.
    #[error("{0}")]
    Open(String),
    /// The database failed or is busy (I/O, a full disk, a lock held too long): the write
    /// was not made, and may succeed later.
    #[error("database error: {0}")]
    Unavailable(String),
    /// The store stopped writing: the service is shutting down, or the database could not
    /// be made durable (see the log). Nothing is written until the service restarts.
    #[error(
        "the store's writer has stopped (the service is shutting down, or the database could not be written to the disk: see the log)"
    )]
    Stopped,
    /// The database refused the write by one of its constraints.
    #[error("database error: {0}")]
    Conflict(String),
    /// A stored row cannot be read back as the type it stands for.
    #[error("unreadable stored row: {0}")]
    Corrupt(String),
}

/// A delivery claimed by a worker, leased until the attempt is recorded.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub mapping: String,
    /// The key as stored (`source/key`).
    pub key: String,
    pub operation: String,
    /// JSON text.
    pub payload: String,
    pub conversion_id: Option<String>,
    /// Attempts made so far, this one included.
    pub attempts: i64,
    /// When the delivery was made: its webhook's acknowledgement, or the re-translation that
    /// added it.
    pub created_at_ms: i64,
}

#[cfg(test)]
impl ClaimedDelivery {
    /// A Legion delivery `id` of `mapping`, on its first attempt, for unit tests.
    pub(crate) fn example(id: i64, mapping: &str) -> ClaimedDelivery {
        ClaimedDelivery {
            id,
            mapping: mapping.into(),
            key: format!("shop/{id}"),
            operation: "legion.purchase_event".into(),
            payload: "{}".into(),
            conversion_id: None,
            attempts: 1,
            created_at_ms: 0,
        }
    }
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
    /// A batch of several deliveries was refused: the attempt is recorded for each, and the
    /// deliveries stay in flight, each sent again alone within the same lease.
    Split {
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_at_ms: i64,
    pub duration_ms: i64,
    /// The destination's answer's HTTP status, when there was an answer.
    pub http_status: Option<u16>,
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
    /// Records attempts (each of one or more deliveries) and moves their deliveries on
    /// (delivered, pending again, dead or dry_run), all in one transaction.
    async fn record_attempts(&self, attempts: &[(Vec<i64>, Attempt)]) -> Result<(), StoreError>;
    /// [`Store::record_attempts`], then [`Store::claim_due_deliveries`]: a worker whose round
    /// was full records it and claims the next at once. A store may write both in one
    /// transaction; nothing is claimed when the record fails.
    async fn record_attempts_and_claim(
        &self,
        attempts: &[(Vec<i64>, Attempt)],
        destination: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.record_attempts(attempts).await?;
        self.claim_due_deliveries(destination, limit, now_ms, lease_ms)
            .await
    }
    /// Moves `waiting` deliveries on: to `pending` with the conversion id once the delivery
    /// they need is delivered (due from when they were made or requeued, so they do not
    /// queue behind what was made after them); to `skipped` when it failed, ran dry, never appeared within
    /// `waiting_timeout_ms`, answered without the conversion id a Scalef status update
    /// needs, or when a later delivery of the same mapping needing the same was delivered.
    async fn release_waiting_deliveries(
        &self,
        destination: &str,
        now_ms: i64,
        waiting_timeout_ms: i64,
    ) -> Result<(), StoreError>;
    /// Deliveries matching the filter, newest first.
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliverySummary>, StoreError>;
    /// Puts matching deliveries that were not delivered back in the queue, due now, with a
    /// fresh retry schedule: `pending`, or `waiting` for one that needs another delivery
    /// first (it takes that delivery's answer again once it is delivered). The status
    /// updates that were `skipped` because a requeued delivery was not made wait for it
    /// again. A delivery whose payload the retention purge removed is not requeued. A
    /// `cancelled` delivery is requeued only when the filter names its id. Returns the
    /// counts, and the deliveries requeued.
    async fn requeue_deliveries(
        &self,
        filter: &DeliveryFilter,
        now_ms: i64,
    ) -> Result<(Requeued, Touched), StoreError>;
    /// An operator's cancel: the matching deliveries that are `pending`, `waiting` or `dead`
    /// ([`DeliveryStatus::CANCELLABLE`]) become `cancelled`, in one transaction; the others
    /// (in flight, delivered, skipped, dry run, cancelled already) are left as they are.
    /// A cancelled delivery is never claimed, and [`Store::requeue_deliveries`] puts it
    /// back only when its filter names its id ([`DeliveryFilter::id`]); a re-translation
    /// leaves it alone. The deliveries `waiting` for a cancelled one (a Scalef conversion's
    /// status updates) become `skipped` ([`SkipKind::UnmetNeed`], so a replay of the
    /// conversion re-arms them) with a reason naming the cancel, in the same transaction,
    /// and so does a delivery that comes to need it later (when waiting deliveries are
    /// released). A cancelled delivery no longer holds back the later deliveries of its
    /// mapping that need the same one (it is not [`DeliveryStatus::UNFINISHED`]). Returns
    /// the counts, and the deliveries cancelled.
    async fn cancel_deliveries(
        &self,
        filter: &DeliveryFilter,
        now_ms: i64,
    ) -> Result<(Cancelled, Touched), StoreError>;
    /// Counts for an operator's overview: deliveries per destination and status, the
    /// oldest `pending` delivery of each destination, and the attempts per minute started
    /// at or after `since_ms`.
    async fn delivery_stats(&self, since_ms: i64) -> Result<DeliveryStats, StoreError>;
    /// The webhooks whose deliveries match the filter, and the untranslated ones (or,
    /// filtering by webhook or time only, those webhooks themselves, translated or not),
    /// oldest first; never purged ones.
    async fn webhooks_for(&self, filter: &DeliveryFilter)
    -> Result<Vec<StoredWebhook>, StoreError>;
    /// Stored webhooks matching the filter (purged ones included, with their body and
    /// headers empty), newest first.
    async fn list_webhooks(&self, filter: &WebhookFilter)
    -> Result<Vec<WebhookRecord>, StoreError>;
    /// One stored webhook (a purged one with its body and headers empty), if there is one
    /// with this id.
    async fn get_webhook(&self, id: WebhookId) -> Result<Option<WebhookRecord>, StoreError>;
    /// The delivery of `mapping` with this stored key (see [`stored_key`]), if there is one:
    /// what a `waiting` delivery's `needs` names.
    async fn delivery_by_key(
        &self,
        mapping: &str,
        key: &str,
    ) -> Result<Option<DeliverySummary>, StoreError>;
    /// One delivery in full, if there is one with this id.
    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, StoreError>;
    /// The attempts recorded for a delivery, oldest first (none once the retention purge
    /// removed them).
    async fn list_attempts(&self, id: DeliveryId) -> Result<Vec<AttemptRecord>, StoreError>;
    /// Writes the deliveries of a re-translated webhook: new ones are added; existing ones
    /// that were not delivered (and are in `only_status`, when given; a `dry_run` one only
    /// when `only_status` names it) take the new payload and are due now; delivered ones are
    /// left alone, so nothing is counted twice.
    /// Returns (added, replaced).
    async fn replace_deliveries(
        &self,
        webhook_id: WebhookId,
        deliveries: &[NewDelivery],
        translation_error: Option<&str>,
        only_status: Option<DeliveryStatus>,
        now_ms: i64,
    ) -> Result<(u64, u64), StoreError>;
    /// Purges what `retention_days` allows for webhooks received before `cutoff_ms`: the
    /// bodies and headers of webhooks whose deliveries are all done, and the payloads and
    /// attempts of done deliveries. Rows, dedupe ids and keys stay. Returns how many webhooks
    /// were purged.
    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError>;
    /// Claims a run of the periodic `job` at `now_ms` (see [`periodic`]): `true`, with the
    /// run recorded, when no run of it was recorded after `now_ms - every_ms`; `false` when
    /// one was (by this instance or another). Of callers claiming at once, one gets `true`.
    async fn claim_run(&self, job: &str, now_ms: i64, every_ms: i64) -> Result<bool, StoreError>;
    /// Gives up the leases of these deliveries, if still `in_flight`: they are `pending` and
    /// due at `now_ms`, the unfinished attempt uncounted. Returns how many were released.
    async fn release_leases(&self, deliveries: &[i64], now_ms: i64) -> Result<u64, StoreError>;
    /// When the next delivery of `destination` falls due, if any is pending or leased.
    async fn next_due_at(&self, destination: &str) -> Result<Option<i64>, StoreError>;
    /// Announcements made by the processes that write this store (an instance's receive
    /// path, a replay from the CLI, a reload asked of another instance), for this process to
    /// act on; `None` when the store makes none (SQLite: one process serves it, and wakes its
    /// own workers). Announcements may be lost: [`Announcement::Listening`] says when some
    /// may have been. The announcements end when the receiver is dropped.
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Announcement>> {
        None
    }
    /// Announces to the other processes that serve this store that an operator reloaded the
    /// mappings of this one (`via` the admin API or the dashboard, asked by `client`), for
    /// each to load its own mappings directory again ([`Announcement::Reload`]); this store's
    /// own subscribers do not hear it. `Ok(false)` when the store makes no announcements
    /// (SQLite: one process serves it).
    async fn announce_reload(&self, via: &str, client: &str) -> Result<bool, StoreError> {
        let _ = (via, client);
        Ok(false)
    }
    /// Writes a running instance's heartbeat (its row, by instance id, with its `seen_at`)
    /// and removes those last seen before `forget_before_ms` (instances that were killed):
    /// see [`heartbeat`].
    async fn record_heartbeat(
        &self,
        heartbeat: &Heartbeat,
        forget_before_ms: i64,
    ) -> Result<(), StoreError>;
    /// Removes an instance's heartbeat: it stopped cleanly.
    async fn remove_heartbeat(&self, instance: &str) -> Result<(), StoreError>;
    /// Every heartbeat the store keeps, the most recently seen first.
    async fn list_heartbeats(&self) -> Result<Vec<Heartbeat>, StoreError>;
}

/// An announcement of [`Store::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// Deliveries of this destination are due.
    Due(String),
    /// An operator reloaded the mappings of another instance ([`Store::announce_reload`]).
    Reload(ReloadAnnounced),
    /// The subscription is listening: at the start (`again` false), or again after it lost
    /// its connection (`again` true). Whatever was announced while it was not listening was
    /// missed: deliveries of any destination may be due, and a reload may have been asked.
    Listening { again: bool },
}

/// A reload of the mappings asked of another instance, as [`Announcement::Reload`] tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadAnnounced {
    /// Where it was asked: `admin API` or `dashboard`.
    pub via: String,
    /// The address of the client that asked, as that instance saw it.
    pub client: String,
    /// The instance that was asked, for the log: its host name and process id.
    pub from: String,
}

/// Whether opening a store applies the migrations its schema lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Apply them (`storehook migrate`, and `serve` with `store.migrate = true`).
    Apply,
    /// Apply none, and refuse a schema that lacks any, naming them (`serve` with
    /// `store.migrate = false`, where migrations are run as a step of their own).
    Require,
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
    open_with(url, Migrations::Apply).await
}

/// Opens the store named by `url`: `sqlite:` for SQLite, `postgres://` or `postgresql://`
/// for PostgreSQL. Only this URL: the server never falls back to `DATABASE_URL`, which may
/// name another application's database.
pub async fn open_with(url: &str, migrations: Migrations) -> Result<Arc<dyn Store>, StoreError> {
    match Backend::of(url)? {
        Backend::Sqlite => Ok(Arc::new(SqliteStore::open_with(url, migrations).await?)),
        Backend::Postgres => Ok(Arc::new(PostgresStore::open(url, migrations).await?)),
    }
}

/// The backend a store URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redacted_url(url)))
        }
    }
}

/// The store URL with its password masked (`postgres://user:***@host/db`, and a
/// `password=` parameter likewise), for log lines and messages.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some(split) => split,
        None => return url.to_string(),
    };
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority_end = authority_and_path
        .find('/')
        .unwrap_or(authority_and_path.len());
    let (authority, path) = authority_and_path.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let query = query.map(|query| {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                _ => pair.to_string(),
            })
            .collect();
        format!("?{}", masked.join("&"))
    });
    format!("{scheme}://{authority}{path}{}", query.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn a_redacted_url_keeps_everything_but_the_password() {
        for (url, shown) in [
            (
                "postgres://storehook:s3cr%40t@db.internal:5432/app?sslmode=require",
                "postgres://storehook:***@db.internal:5432/app?sslmode=require",
            ),
            (
                "postgresql://db/app?user=u&password=p@ss&options=-csearch_path%3Dx",
                "postgresql://db/app?user=u&password=***&options=-csearch_path%3Dx",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            ("sqlite://data/storehook.db", "sqlite://data/storehook.db"),
            ("sqlite:x.db", "sqlite:x.db"),
            // An `@` in the password: the host is what follows the last one.
            ("postgres://u:a@b@h/d", "postgres://u:***@h/d"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
            assert!(!redacted_url(url).contains("s3cr"), "{url}");
        }
    }
}
