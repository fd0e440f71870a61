//! The writes that add deliveries: the receive path's (a webhook and its deliveries, unless
//! its (source, dedupe id) is already stored) and `replay --retranslate`'s (a stored
//! webhook's new deliveries). Each runs in a transaction of its own; the unique constraints
//! refuse a second copy of a webhook or a delivery whichever instance writes it.

use std::sync::LazyLock;

use sqlx::PgConnection;

use crate::domain::SkipKind;
use crate::store::{
    Accepted, DeliveryStatus, NewDelivery, NewWebhook, WebhookId, WebhookStatus, stored_key,
};

/// A webhook whose (source, dedupe id) is stored already (by any instance, committed before
/// or while this one waited for the row's lock) is not written again: no id comes back.
const INSERT_WEBHOOK: &str = "INSERT INTO webhooks \
     (source, platform, topic, dedupe_id, headers, body, status, error, received_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (source, dedupe_id) DO NOTHING RETURNING id";
const STORED_ID: &str = "SELECT id FROM webhooks WHERE source = $1 AND dedupe_id = $2";

/// A delivery whose (mapping, key) is stored already is not written again, unless the
/// stored one is a mapping's skip and this one is not: a skip does not hold the key, and
/// the later webhook's delivery takes its place.
static INSERT_DELIVERY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO deliveries \
         (webhook_id, mapping, key, destination, operation, payload, needs_mapping, \
          needs_key, status, skip_kind, last_error, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12) \
         ON CONFLICT (mapping, key) DO UPDATE SET webhook_id = excluded.webhook_id, \
           destination = excluded.destination, operation = excluded.operation, \
           payload = excluded.payload, needs_mapping = excluded.needs_mapping, \
           needs_key = excluded.needs_key, status = excluded.status, skip_kind = NULL, \
           last_error = NULL, attempts = 0, next_attempt_at = excluded.next_attempt_at, \
           updated_at = excluded.updated_at \
         WHERE deliveries.skip_kind = '{mapping}' AND excluded.skip_kind IS NULL",
        mapping = SkipKind::Mapping
    )
});

/// Writes one webhook and its deliveries, unless its (source, dedupe id) is already stored.
/// Returns what was done and the destinations of the deliveries written due now.
pub(super) async fn insert_webhook(
    conn: &mut PgConnection,
    webhook: &NewWebhook,
) -> Result<(Accepted, Vec<String>), sqlx::Error> {
    let headers = serde_json::to_string(&webhook.headers).expect("a string map serialises");
    let inserted: Option<i64> = sqlx::query_scalar(INSERT_WEBHOOK)
        .bind(&webhook.source)
        .bind(&webhook.platform)
        .bind(&webhook.topic)
        .bind(&webhook.dedupe_id)
        .bind(headers)
        .bind(&webhook.body)
        .bind(webhook_status(&webhook.translation_error).as_str())
        .bind(&webhook.translation_error)
        .bind(webhook.received_at_ms)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(webhook_id) = inserted.map(WebhookId) else {
        let stored: i64 = sqlx::query_scalar(STORED_ID)
            .bind(&webhook.source)
            .bind(&webhook.dedupe_id)
            .fetch_one(&mut *conn)
            .await?;
        let duplicate = Accepted::Duplicate {
            webhook_id: WebhookId(stored),
        };
        return Ok((duplicate, Vec::new()));
    };
    let (mut deliveries, mut skipped) = (0, 0);
    let mut due = Vec::new();
    for delivery in &webhook.deliveries {
        let written = insert_delivery(
            conn,
            webhook_id,
            &webhook.source,
            delivery,
            webhook.received_at_ms,
        )
        .await?;
        match delivery.skipped {
            None => deliveries += written,
            Some(_) => skipped += written,
        }
        if written > 0 && initial_status(delivery) == DeliveryStatus::Pending {
            due.push(delivery.destination.clone());
        }
    }
    let accepted = Accepted::Stored {
        webhook_id,
        deliveries,
        skipped,
    };
    Ok((accepted, due))
}

/// Adds a delivery of a webhook from `source`, due at `now_ms`, unless its (mapping, key) is
/// already stored for that source as anything but a mapping's skip; returns how many rows
/// were written (0 or 1).
async fn insert_delivery(
    conn: &mut PgConnection,
    webhook_id: WebhookId,
    source: &str,
    delivery: &NewDelivery,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let (needs_mapping, needs_key) = needs_of(source, delivery);
    let written = sqlx::query(INSERT_DELIVERY.as_str())
        .bind(webhook_id.0)
        .bind(&delivery.mapping)
        .bind(stored_key(source, &delivery.key))
        .bind(&delivery.destination)
        .bind(&delivery.operation)
        .bind(&delivery.payload)
        .bind(needs_mapping)
        .bind(needs_key)
        .bind(initial_status(delivery).as_str())
        .bind(skip_kind(delivery).map(SkipKind::as_str))
        .bind(&delivery.skipped)
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(written.rows_affected())
}

/// A re-translated webhook's outcome (see `Store::replace_deliveries`).
pub(super) struct Replace<'a> {
    pub webhook_id: WebhookId,
    pub deliveries: &'a [NewDelivery],
    pub translation_error: Option<&'a str>,
    pub only_status: Option<DeliveryStatus>,
    pub now_ms: i64,
}

/// Writes a re-translated webhook's status and deliveries: new ones are added; existing
/// ones not delivered or in flight (and in `only_status`, when given) take the new payload
/// and are due now, or the mapping's skip. Each existing one is locked first, so that no
/// instance claims it meanwhile. Returns (added, replaced) and the destinations of those
/// written due now.
pub(super) async fn replace_deliveries(
    conn: &mut PgConnection,
    replace: &Replace<'_>,
) -> Result<((u64, u64), Vec<String>), sqlx::Error> {
    let status = WebhookStatus::after_translation(replace.translation_error.is_some());
    let source: String = sqlx::query_scalar(
        "UPDATE webhooks SET status = $1, error = $2 WHERE id = $3 RETURNING source",
    )
    .bind(status.as_str())
    .bind(replace.translation_error)
    .bind(replace.webhook_id.0)
    .fetch_one(&mut *conn)
    .await?;
    let (mut added, mut replaced) = (0, 0);
    let mut due = Vec::new();
    for delivery in replace.deliveries {
        let key = stored_key(&source, &delivery.key);
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT status FROM deliveries WHERE mapping = $1 AND key = $2 FOR UPDATE",
        )
        .bind(&delivery.mapping)
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await?;
        let existing = existing
            .map(|text| {
                text.parse::<DeliveryStatus>()
                    .map_err(|error| sqlx::Error::ColumnDecode {
                        index: "status".into(),
                        source: Box::new(error),
                    })
            })
            .transpose()?;
        let written = match existing {
            None => {
                let written =
                    insert_delivery(conn, replace.webhook_id, &source, delivery, replace.now_ms)
                        .await?;
                added += written;
                written
            }
            // Sent, or being sent: a new payload would count the order twice.
            Some(status) if !status.may_take_new_payload() => 0,
            Some(status) if replace.only_status.is_some_and(|only| only != status) => 0,
            // A dry run is sent again only when asked for by its status.
            Some(DeliveryStatus::DryRun) if replace.only_status.is_none() => 0,
            Some(_) => {
                let (needs_mapping, needs_key) = needs_of(&source, delivery);
                sqlx::query(
                    "UPDATE deliveries SET payload = $1, destination = $2, operation = $3, \
                     needs_mapping = $4, needs_key = $5, status = $6, skip_kind = $7, \
                     last_error = $8, attempts = 0, next_attempt_at = $9, request = NULL, \
                     updated_at = $9 WHERE mapping = $10 AND key = $11",
                )
                .bind(&delivery.payload)
                .bind(&delivery.destination)
                .bind(&delivery.operation)
                .bind(needs_mapping)
                .bind(needs_key)
                .bind(initial_status(delivery).as_str())
                .bind(skip_kind(delivery).map(SkipKind::as_str))
                .bind(&delivery.skipped)
                .bind(replace.now_ms)
                .bind(&delivery.mapping)
                .bind(&key)
                .execute(&mut *conn)
                .await?;
                replaced += 1;
                1
            }
        };
        if written > 0 && initial_status(delivery) == DeliveryStatus::Pending {
            due.push(delivery.destination.clone());
        }
    }
    Ok(((added, replaced), due))
}

/// The (mapping, stored key) a delivery of a webhook from `source` waits for, if any.
fn needs_of(source: &str, delivery: &NewDelivery) -> (Option<String>, Option<String>) {
    match &delivery.needs {
        Some((mapping, key)) => (Some(mapping.clone()), Some(stored_key(source, key))),
        None => (None, None),
    }
}

fn webhook_status(translation_error: &Option<String>) -> WebhookStatus {
    WebhookStatus::after_translation(translation_error.is_some())
}

/// A mapping's skip is `skipped`; a delivery starts `waiting` when it needs another one,
/// else `pending`.
fn initial_status(delivery: &NewDelivery) -> DeliveryStatus {
    match delivery.skipped {
        Some(_) => DeliveryStatus::Skipped,
        None => DeliveryStatus::initial(delivery.needs.is_some()),
    }
}

fn skip_kind(delivery: &NewDelivery) -> Option<SkipKind> {
    delivery.skipped.as_ref().map(|_| SkipKind::Mapping)
}
