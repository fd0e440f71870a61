//! Seeing what happened: stored webhooks, one webhook with what became of it, one delivery
//! with its request and every attempt.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::DestinationConfig;
use crate::destination::{Outgoing, ShownRequest};
use crate::domain::{DeliveryId, DeliveryStatus, PlatformKind, SkipKind, WebhookId, WebhookStatus};
use crate::store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DeliverySummary, Store, StoreError,
    WebhookFilter, WebhookRecord,
};

use super::DEFAULT_LIST_LIMIT;

/// What a header value the store keeps but an operator is not shown reads as.
pub const REDACTED: &str = "***";

/// A stored webhook in a listing: what it is and what it came to, without its headers and
/// body (see [`webhook`] for those).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WebhookSummary {
    pub id: WebhookId,
    pub source: String,
    pub platform: PlatformKind,
    pub topic: String,
    pub dedupe_id: String,
    pub status: WebhookStatus,
    /// Why its translation failed, when it did.
    pub error: Option<String>,
    /// Unix time in milliseconds.
    pub received_at: i64,
    /// Its deliveries that are not skipped.
    pub deliveries: u64,
    /// Its deliveries that are skipped (by the mapping, an unmet need, or superseded).
    pub skipped: u64,
}

/// The webhooks matching `filter`, newest first, each with how many deliveries and skips it
/// made; at most [`DEFAULT_LIST_LIMIT`] unless the filter names a limit.
pub async fn list_webhooks(
    store: &dyn Store,
    filter: &WebhookFilter,
) -> Result<Vec<WebhookSummary>, StoreError> {
    let mut filter = filter.clone();
    filter.limit = filter.limit.or(Some(DEFAULT_LIST_LIMIT));
    let mut listed = Vec::new();
    for record in store.list_webhooks(&filter).await? {
        let deliveries = deliveries_of(store, record.id).await?;
        listed.push(summary(record, &deliveries));
    }
    Ok(listed)
}

/// The deliveries stored for a webhook, oldest first.
async fn deliveries_of(
    store: &dyn Store,
    webhook: WebhookId,
) -> Result<Vec<DeliverySummary>, StoreError> {
    let mut deliveries = store
        .list_deliveries(&DeliveryFilter {
            webhook_id: Some(webhook),
            ..DeliveryFilter::default()
        })
        .await?;
    deliveries.reverse();
    Ok(deliveries)
}

fn summary(record: WebhookRecord, deliveries: &[DeliverySummary]) -> WebhookSummary {
    let skipped = deliveries
        .iter()
        .filter(|d| d.status == DeliveryStatus::Skipped)
        .count() as u64;
    WebhookSummary {
        id: record.id,
        source: record.source,
        platform: record.platform,
        topic: record.topic,
        dedupe_id: record.dedupe_id,
        status: record.status,
        error: record.error,
        received_at: record.received_at,
        deliveries: deliveries.len() as u64 - skipped,
        skipped,
    }
}

/// A webhook's body as an operator reads it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "format", content = "content", rename_all = "snake_case")]
pub enum Body {
    /// The body parsed as JSON.
    Json(Value),
    /// A body that is not JSON, as text (bytes that are not UTF-8 replaced).
    Text(String),
    /// The retention purge removed it.
    Purged,
}

/// A delivery with every attempt recorded for it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryAttempts {
    #[serde(flatten)]
    pub delivery: DeliverySummary,
    pub attempt_log: Vec<AttemptRecord>,
}

/// One webhook in full: its headers (signatures redacted), its body, and each delivery its
/// mappings made, with every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WebhookDetail {
    #[serde(flatten)]
    pub summary: WebhookSummary,
    /// The headers kept (lowercase names), every platform's signature header's value
    /// replaced by [`REDACTED`]; empty once purged.
    pub headers: BTreeMap<String, String>,
    pub body: Body,
    /// The deliveries stored for it, oldest first. A delivery whose mapping and key an
    /// earlier webhook had made already is that webhook's, not this one's.
    pub delivery_log: Vec<DeliveryAttempts>,
}

/// The webhook with this id in full, if there is one.
pub async fn webhook(
    store: &dyn Store,
    id: WebhookId,
) -> Result<Option<WebhookDetail>, StoreError> {
    let Some(record) = store.get_webhook(id).await? else {
        return Ok(None);
    };
    let deliveries = deliveries_of(store, id).await?;
    let mut delivery_log = Vec::with_capacity(deliveries.len());
    for delivery in &deliveries {
        delivery_log.push(DeliveryAttempts {
            attempt_log: store.list_attempts(delivery.id).await?,
            delivery: delivery.clone(),
        });
    }
    let headers = redacted(&record.headers);
    let body = if record.status == WebhookStatus::Purged {
        Body::Purged
    } else {
        match serde_json::from_slice(&record.body) {
            Ok(json) => Body::Json(json),
            Err(_) => Body::Text(String::from_utf8_lossy(&record.body).into_owned()),
        }
    };
    Ok(Some(WebhookDetail {
        summary: summary(record, &deliveries),
        headers,
        body,
        delivery_log,
    }))
}

/// `headers` with the value of every header that may carry a platform's signature (the
/// names each platform's code checks) replaced by [`REDACTED`].
fn redacted(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let is_signature = |name: &str| {
        PlatformKind::ALL.iter().any(|kind| {
            crate::source::platform(*kind)
                .signature_headers()
                .iter()
                .any(|header| header.eq_ignore_ascii_case(name))
        })
    };
    headers
        .iter()
        .map(|(name, value)| {
            let value = if is_signature(name) {
                REDACTED.to_string()
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect()
}

/// A request as it is shown: secret header values masked as `***`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestShown {
    pub method: String,
    pub url: String,
    /// (name, value) pairs, in the order sent.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl From<ShownRequest> for RequestShown {
    fn from(shown: ShownRequest) -> Self {
        RequestShown {
            method: shown.method.to_string(),
            url: shown.url,
            headers: shown.headers,
            body: shown.body,
        }
    }
}

/// The request a delivery is (or was) sent as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum DeliveryRequest {
    /// The request a dry run kept: what would have been sent then.
    Stored { request: RequestShown },
    /// The request this delivery alone makes with the current configuration (a batch of
    /// several puts the payloads of all in one body).
    Rebuilt { request: RequestShown },
    /// No request can be shown, and why.
    Unavailable { reason: String },
}

/// What a `waiting` delivery waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WaitsFor {
    pub mapping: String,
    /// The stored key (`source/key`).
    pub key: String,
    /// The delivery of that mapping and key, when it is stored.
    pub delivery: Option<DeliveryId>,
    pub status: Option<DeliveryStatus>,
}

/// One delivery in full: its payload, its request, every attempt, and what it waits for.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub summary: DeliverySummary,
    /// The payload; `null` for a mapping's skip, or once the retention purge removed it.
    pub payload: Value,
    /// (mapping, stored key) of the delivery this one needs.
    #[schema(value_type = Option<Vec<String>>)]
    pub needs: Option<(String, String)>,
    pub conversion_id: Option<String>,
    /// While `in_flight`: when the lease ends (Unix time in milliseconds).
    pub lease_until: Option<i64>,
    pub request: DeliveryRequest,
    /// While `waiting`: the delivery it needs.
    pub waits_for: Option<WaitsFor>,
    /// Every attempt, oldest first (a replay starts the count again but keeps these).
    pub attempt_log: Vec<AttemptRecord>,
}

/// The delivery with this id in full, if there is one. Its request is the one a dry run
/// kept, or else the one `destinations` (the current configuration) make of it.
pub async fn delivery(
    store: &dyn Store,
    destinations: &BTreeMap<String, DestinationConfig>,
    id: DeliveryId,
) -> Result<Option<DeliveryDetail>, StoreError> {
    let Some(record) = store.get_delivery(id).await? else {
        return Ok(None);
    };
    let attempt_log = store.list_attempts(id).await?;
    let waits_for = match (&record.needs, record.summary.status) {
        (Some((mapping, key)), DeliveryStatus::Waiting) => {
            let needed = store.delivery_by_key(mapping, key).await?;
            Some(WaitsFor {
                mapping: mapping.clone(),
                key: key.clone(),
                delivery: needed.as_ref().map(|d| d.id),
                status: needed.as_ref().map(|d| d.status),
            })
        }
        _ => None,
    };
    let request = request_of(&record, destinations);
    let payload = serde_json::from_str(&record.payload)
        .unwrap_or_else(|_| Value::String(record.payload.clone()));
    Ok(Some(DeliveryDetail {
        summary: record.summary,
        payload,
        needs: record.needs,
        conversion_id: record.conversion_id,
        lease_until: record.lease_until,
        request,
        waits_for,
        attempt_log,
    }))
}

/// The request a dry run kept; else the one the delivery's destination, as configured now,
/// makes of it.
fn request_of(
    record: &DeliveryRecord,
    destinations: &BTreeMap<String, DestinationConfig>,
) -> DeliveryRequest {
    let unavailable = |reason: String| DeliveryRequest::Unavailable { reason };
    if record.summary.status == DeliveryStatus::DryRun {
        return match record.request.as_deref().map(serde_json::from_str) {
            Some(Ok(request)) => DeliveryRequest::Stored { request },
            Some(Err(error)) => unavailable(format!("the stored request is unreadable: {error}")),
            None => unavailable("no request kept (the retention purge removed it)".into()),
        };
    }
    if record.summary.skip == Some(SkipKind::Mapping) {
        return unavailable("the mapping skipped it: it is never sent".into());
    }
    let payload: Value = match serde_json::from_str(&record.payload) {
        Ok(Value::Null) => {
            return unavailable("no payload: the retention purge removed it".into());
        }
        Ok(payload) => payload,
        Err(error) => return unavailable(format!("the stored payload is not JSON: {error}")),
    };
    let Some(config) = destinations.get(&record.summary.destination) else {
        return unavailable(format!(
            "destination `{}` is not configured",
            record.summary.destination
        ));
    };
    let destination = crate::destination::build(config);
    let request = crate::destination::request(destination.as_ref(), &[outgoing(record, payload)]);
    match request {
        Ok(request) => DeliveryRequest::Rebuilt {
            request: request.shown().into(),
        },
        Err(reason) => unavailable(reason),
    }
}

/// The delivery as its destination is given it to send.
fn outgoing(record: &DeliveryRecord, payload: Value) -> Outgoing {
    Outgoing {
        delivery_id: record.summary.id.0,
        mapping: record.summary.mapping.clone(),
        key: record.summary.key.clone(),
        operation: record.summary.operation,
        payload,
        conversion_id: record.conversion_id.clone(),
    }
}
