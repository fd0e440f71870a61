//! What operators ask the store for and what it answers: filters, and the typed records
//! of webhooks, deliveries and attempts it reads back.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Recorded;
use crate::domain::{
    AttemptOutcome, DeliveryId, DeliveryStatus, Operation, PlatformKind, SkipKind, WebhookId,
    WebhookStatus,
};

/// Which deliveries an operator means. Every field set must hold; an unset one matches
/// every delivery.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub destination: Option<String>,
    /// Created at or after this Unix time in milliseconds.
    pub since_ms: Option<i64>,
    /// Created before this Unix time in milliseconds.
    pub until_ms: Option<i64>,
    pub webhook_id: Option<WebhookId>,
    /// The delivery with this id only. A replay whose filter names an id may put a
    /// `cancelled` delivery back in the queue; no other replay does.
    pub id: Option<DeliveryId>,
    /// The deliveries of this mapping (its id, e.g. `haravan/legion-purchase`).
    pub mapping: Option<String>,
    /// Only ids below this one: the cursor of a listing's next page (newest first).
    pub before_id: Option<DeliveryId>,
    pub limit: Option<i64>,
}

impl DeliveryFilter {
    /// The delivery `id` only.
    pub fn one(id: DeliveryId) -> DeliveryFilter {
        DeliveryFilter {
            id: Some(id),
            ..DeliveryFilter::default()
        }
    }
}

/// A delivery as operators see it (`storehook deliveries --json` prints these as they
/// serialise: the ids as numbers, the status and operation as their words).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliverySummary {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub mapping: String,
    pub key: String,
    pub destination: String,
    pub operation: Operation,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: i64,
    /// The last failure; for a skipped delivery, the reason it was skipped.
    pub last_error: Option<String>,
    /// Why a `skipped` delivery was skipped (left out of the JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip: Option<SkipKind>,
}

/// A delivery in full, as [`Store::get_delivery`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    #[serde(flatten)]
    pub summary: DeliverySummary,
    /// JSON text; `null` once the retention purge removed it.
    pub payload: String,
    /// (mapping, stored key) of the delivery this one waits for.
    pub needs: Option<(String, String)>,
    /// A Scalef create's answer, or for a status update the one it took from its create.
    pub conversion_id: Option<String>,
    /// For `dry_run`: the request that would have been sent (secrets masked).
    pub request: Option<String>,
    /// While `in_flight`: when the lease ends (Unix time in milliseconds).
    pub lease_until: Option<i64>,
}

impl From<&Recorded> for AttemptOutcome {
    /// The outcome an attempt is recorded with.
    fn from(recorded: &Recorded) -> AttemptOutcome {
        match recorded {
            Recorded::Delivered { .. } => Self::Delivered,
            Recorded::Retry { .. } => Self::Retry,
            Recorded::Dead { .. } => Self::Dead,
            Recorded::DryRun { .. } => Self::DryRun,
            Recorded::Split { .. } => Self::Split,
        }
    }
}

/// One attempt of a delivery, as [`Store::list_attempts`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub outcome: AttemptOutcome,
    /// The destination's answer's HTTP status, when there was an answer.
    pub http_status: Option<u16>,
    /// The answer's excerpt, the reason of a failure, or a dry run's request.
    pub response: Option<String>,
    /// Unix time in milliseconds.
    pub started_at: i64,
    pub duration_ms: i64,
}

/// Which webhooks an operator means. Every field set must hold; an unset one matches every
/// webhook.
#[derive(Debug, Clone, Default)]
pub struct WebhookFilter {
    pub status: Option<WebhookStatus>,
    pub source: Option<String>,
    pub topic: Option<String>,
    /// Received at or after this Unix time in milliseconds.
    pub since_ms: Option<i64>,
    /// Received before this Unix time in milliseconds.
    pub until_ms: Option<i64>,
    /// Webhooks of this order: the body's top-level `id`, `order_number` or `number` (every
    /// platform's order id or the number the shop shows) is this text.
    pub order_id: Option<String>,
    /// Only ids below this one: the cursor of a listing's next page (newest first).
    pub before_id: Option<WebhookId>,
    pub limit: Option<i64>,
}

/// A stored webhook as operators see it, as [`Store::list_webhooks`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookRecord {
    pub id: WebhookId,
    pub source: String,
    pub platform: PlatformKind,
    pub topic: String,
    pub dedupe_id: String,
    /// The headers kept (lowercase names); empty once purged.
    pub headers: BTreeMap<String, String>,
    /// The body byte for byte as it arrived; empty once purged.
    pub body: Vec<u8>,
    pub status: WebhookStatus,
    /// Why its translation failed, when it did.
    pub error: Option<String>,
    /// Unix time in milliseconds.
    pub received_at: i64,
}

/// A stored webhook, as re-translation reads it.
#[derive(Debug, Clone)]
pub struct StoredWebhook {
    pub id: WebhookId,
    pub source: String,
    pub platform: String,
    pub topic: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// What [`Store::cancel_deliveries`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Cancelled {
    /// Deliveries now `cancelled` (they were pending, waiting or dead).
    pub cancelled: u64,
    /// Deliveries that were waiting for a cancelled one, now `skipped` (an unmet need) with
    /// a reason naming the cancel.
    pub skipped: u64,
}

/// The deliveries an operator's replay or cancel changed (those it requeued or cancelled;
/// not the ones that change with them, re-armed or skipped, which are only counted): their
/// ids, and the mappings and destinations they belong to, for the line that logs the action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Ascending.
    pub ids: Vec<DeliveryId>,
    pub mappings: BTreeSet<String>,
    pub destinations: BTreeSet<String>,
}

impl Touched {
    /// At most this many ids are written in a log line ([`Touched::ids_shown`]).
    pub const IDS_SHOWN: usize = 50;

    /// Rows of `(id, mapping, destination)`, in any order.
    pub fn from_rows(rows: impl IntoIterator<Item = (i64, String, String)>) -> Touched {
        let mut touched = Touched::default();
        for (id, mapping, destination) in rows {
            touched.ids.push(DeliveryId(id));
            touched.mappings.insert(mapping);
            touched.destinations.insert(destination);
        }
        touched.ids.sort_unstable();
        touched
    }

    /// Adds what another replay or cancel of the same request touched.
    pub fn merge(&mut self, other: Touched) {
        self.ids.extend(other.ids);
        self.ids.sort_unstable();
        self.ids.dedup();
        self.mappings.extend(other.mappings);
        self.destinations.extend(other.destinations);
    }

    /// The ids as a log line writes them, `[3, 4, 9]`; past [`Touched::IDS_SHOWN`], the
    /// first ones and how many more (`[3, 4, …] and 950 more`), so that a bulk action's line
    /// stays short. Its mappings and destinations are few whatever the count.
    pub fn ids_shown(&self) -> String {
        let shown: Vec<String> = self
            .ids
            .iter()
            .take(Self::IDS_SHOWN)
            .map(|id| id.0.to_string())
            .collect();
        match self.ids.len().checked_sub(Self::IDS_SHOWN) {
            None | Some(0) => format!("[{}]", shown.join(", ")),
            Some(more) => format!("[{}, …] and {more} more", shown.join(", ")),
        }
    }
}

/// How many deliveries of one destination are in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatusCount {
    pub destination: String,
    pub status: DeliveryStatus,
    pub count: u64,
}

/// Attempts of one minute, by how they ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MinuteCount {
    /// The minute's start, Unix time in milliseconds.
    pub minute: i64,
    /// Attempts that delivered (a batch's attempt counts once per delivery).
    pub delivered: u64,
    /// Attempts that failed (a retry scheduled, or dead).
    pub failed: u64,
}

/// What [`Store::delivery_stats`] counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryStats {
    /// Every (destination, status) with at least one delivery.
    pub counts: Vec<StatusCount>,
    /// Per destination with a `pending` delivery: when the oldest one was made (Unix time in
    /// milliseconds).
    pub oldest_pending: Vec<(String, i64)>,
    /// The minutes since the time asked for that had attempts, oldest first.
    pub per_minute: Vec<MinuteCount>,
}

/// What [`Store::requeue_deliveries`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Requeued {
    /// Deliveries put back in the queue (`pending` or `waiting`).
    pub requeued: u64,
    /// Of those, the ones `waiting` for the delivery they need.
    pub waiting: u64,
    /// Skipped deliveries waiting again for a requeued delivery they need.
    pub rearmed: u64,
    /// Matching deliveries left as they are: the retention purge removed their payload.
    pub purged: u64,
}

#[cfg(test)]
mod tests {
    use super::Touched;

    #[test]
    fn touched_ids_are_written_in_full_up_to_fifty_then_with_how_many_more() {
        let rows = |n: i64| {
            (1..=n)
                .rev()
                .map(|id| (id, format!("m{}", id % 2), "d".into()))
        };
        let few = Touched::from_rows(rows(3));
        assert_eq!(few.ids_shown(), "[1, 2, 3]");
        assert_eq!(few.mappings.len(), 2);
        let exactly = Touched::from_rows(rows(Touched::IDS_SHOWN as i64));
        assert!(
            exactly.ids_shown().ends_with(", 50]"),
            "{}",
            exactly.ids_shown()
        );
        let many = Touched::from_rows(rows(1000));
        let shown = many.ids_shown();
        assert!(shown.starts_with("[1, 2, "), "{shown}");
        assert!(shown.ends_with(", 50, …] and 950 more"), "{shown}");
        let mut merged = few.clone();
        merged.merge(Touched::from_rows([
            (2, "m9".into(), "e".into()),
            (7, "m0".into(), "d".into()),
        ]));
        assert_eq!(merged.ids_shown(), "[1, 2, 3, 7]");
        assert_eq!(merged.destinations.len(), 2);
        assert_eq!(merged.mappings.len(), 3);
    }
}
