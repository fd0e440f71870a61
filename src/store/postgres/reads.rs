//! The store's reads: operators' listings, the records tests and the CLI check state
//! through, and when a destination's next delivery falls due. Each is one statement on a
//! pooled connection, reading the last commit of every instance.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::rules::{FILTER_SQL, NOT_HELD_BACK, bind_filter};
use super::types::{optional_word, word};
use crate::store::{
    AttemptOutcome, AttemptRecord, DeliveryFilter, DeliveryId, DeliveryRecord, DeliveryStats,
    DeliveryStatus, DeliverySummary, MinuteCount, StatusCount, StoredWebhook, WebhookFilter,
    WebhookId, WebhookRecord, WebhookStatus,
};

const SUMMARY_COLUMNS: &str = "id, webhook_id, mapping, key, destination, operation, status, \
     attempts, next_attempt_at, created_at, last_error, skip_kind";

/// A [`DeliverySummary`] from a row with [`SUMMARY_COLUMNS`].
fn summary(row: &PgRow) -> Result<DeliverySummary, sqlx::Error> {
    Ok(DeliverySummary {
        id: DeliveryId(row.try_get("id")?),
        webhook_id: WebhookId(row.try_get("webhook_id")?),
        mapping: row.try_get("mapping")?,
        key: row.try_get("key")?,
        destination: row.try_get("destination")?,
        operation: word(row, "operation")?,
        status: word(row, "status")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
        last_error: row.try_get("last_error")?,
        skip: optional_word(row, "skip_kind")?,
    })
}

/// Deliveries matching the filter, newest first.
pub(super) async fn list_deliveries(
    pool: &PgPool,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliverySummary>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {SUMMARY_COLUMNS} FROM deliveries WHERE {FILTER_SQL} \
             ORDER BY id DESC LIMIT $5"
        )
    });
    let rows = bind_filter!(sqlx::query(SQL.as_str()), filter)
        .fetch_all(pool)
        .await?;
    rows.iter().map(summary).collect()
}

/// The next-due query (see `Store::next_due_at`): the first pending delivery not held
/// back, in the index's order, and the first lease to end.
static NEXT_DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT MIN(at) FROM ( \
         (SELECT next_attempt_at AS at FROM deliveries d \
          WHERE destination = $1 AND status = '{pending}' AND {not_held_back} \
          ORDER BY next_attempt_at LIMIT 1) \
         UNION ALL \
         (SELECT MIN(lease_until) FROM deliveries \
          WHERE destination = $1 AND status = '{in_flight}')) AS due",
        pending = DeliveryStatus::Pending,
        in_flight = DeliveryStatus::InFlight,
        not_held_back = *NOT_HELD_BACK,
    )
});

pub(super) async fn next_due_at(
    pool: &PgPool,
    destination: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(NEXT_DUE.as_str())
        .bind(destination)
        .fetch_one(pool)
        .await
}

/// Counts for an overview (see `Store::delivery_stats`): per (destination, status), through
/// the (destination, status, next_attempt_at) index; the oldest pending per destination;
/// attempts per minute since `since_ms`, through the index on `started_at`.
pub(super) async fn delivery_stats(
    pool: &PgPool,
    since_ms: i64,
) -> Result<DeliveryStats, sqlx::Error> {
    let counts = sqlx::query(
        "SELECT destination, status, count(*) AS count FROM deliveries \
         GROUP BY destination, status ORDER BY destination, status",
    )
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        Ok(StatusCount {
            destination: row.try_get("destination")?,
            status: word(row, "status")?,
            count: count(row, "count")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let oldest_pending = sqlx::query_as(
        "SELECT destination, min(created_at) FROM deliveries WHERE status = $1 \
         GROUP BY destination ORDER BY destination",
    )
    .bind(DeliveryStatus::Pending.as_str())
    .fetch_all(pool)
    .await?;
    let per_minute = sqlx::query(
        "SELECT started_at / 60000 * 60000 AS minute, \
           count(*) FILTER (WHERE outcome = $2) AS delivered, \
           count(*) FILTER (WHERE outcome IN ($3, $4)) AS failed \
         FROM attempts WHERE started_at >= $1 GROUP BY minute ORDER BY minute",
    )
    .bind(since_ms)
    .bind(AttemptOutcome::Delivered.as_str())
    .bind(AttemptOutcome::Retry.as_str())
    .bind(AttemptOutcome::Dead.as_str())
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        Ok(MinuteCount {
            minute: row.try_get("minute")?,
            delivered: count(row, "delivered")?,
            failed: count(row, "failed")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(DeliveryStats {
        counts,
        oldest_pending,
        per_minute,
    })
}

/// A `count(*)` in column `column` (a `BIGINT`, never negative).
fn count(row: &PgRow, column: &str) -> Result<u64, sqlx::Error> {
    let count: i64 = row.try_get(column)?;
    u64::try_from(count).map_err(|error| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(error),
    })
}

/// One delivery in full.
pub(super) async fn get_delivery(
    pool: &PgPool,
    id: DeliveryId,
) -> Result<Option<DeliveryRecord>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {SUMMARY_COLUMNS}, payload, needs_mapping, needs_key, conversion_id, \
             request, lease_until FROM deliveries WHERE id = $1"
        )
    });
    let Some(row) = sqlx::query(SQL.as_str())
        .bind(id.0)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let needs: (Option<String>, Option<String>) =
        (row.try_get("needs_mapping")?, row.try_get("needs_key")?);
    Ok(Some(DeliveryRecord {
        summary: summary(&row)?,
        payload: row.try_get("payload")?,
        needs: needs.0.zip(needs.1),
        conversion_id: row.try_get("conversion_id")?,
        request: row.try_get("request")?,
        lease_until: row.try_get("lease_until")?,
    }))
}

/// The attempts of a delivery, oldest first.
pub(super) async fn list_attempts(
    pool: &PgPool,
    id: DeliveryId,
) -> Result<Vec<AttemptRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT outcome, http_status, response, started_at, duration_ms FROM attempts \
         WHERE delivery_id = $1 ORDER BY id",
    )
    .bind(id.0)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let http_status: Option<i32> = row.try_get("http_status")?;
            Ok(AttemptRecord {
                outcome: word(row, "outcome")?,
                http_status: http_status
                    .map(|status| {
                        u16::try_from(status).map_err(|error| sqlx::Error::ColumnDecode {
                            index: "http_status".into(),
                            source: Box::new(error),
                        })
                    })
                    .transpose()?,
                response: row.try_get("response")?,
                started_at: row.try_get("started_at")?,
                duration_ms: row.try_get("duration_ms")?,
            })
        })
        .collect()
}

/// The headers of a webhook as stored: a JSON object of strings.
fn headers(row: &PgRow) -> Result<BTreeMap<String, String>, sqlx::Error> {
    let text: String = row.try_get("headers")?;
    serde_json::from_str(&text).map_err(|error| sqlx::Error::ColumnDecode {
        index: "headers".into(),
        source: Box::new(error),
    })
}

const WEBHOOK_COLUMNS: &str =
    "id, source, platform, topic, dedupe_id, headers, body, status, error, received_at";

fn webhook_record(row: &PgRow) -> Result<WebhookRecord, sqlx::Error> {
    Ok(WebhookRecord {
        id: WebhookId(row.try_get("id")?),
        source: row.try_get("source")?,
        platform: word(row, "platform")?,
        topic: row.try_get("topic")?,
        dedupe_id: row.try_get("dedupe_id")?,
        headers: headers(row)?,
        body: row.try_get("body")?,
        status: word(row, "status")?,
        error: row.try_get("error")?,
        received_at: row.try_get("received_at")?,
    })
}

/// Webhooks matching the filter, newest first. An order's id is read from the body only
/// where it is JSON (`storehook_order_ids`, of migration 0002; a purged body is empty).
pub(super) async fn list_webhooks(
    pool: &PgPool,
    filter: &WebhookFilter,
) -> Result<Vec<WebhookRecord>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE ($1::text IS NULL OR status = $1) \
             AND ($2::text IS NULL OR source = $2) AND ($3::text IS NULL OR topic = $3) \
             AND ($4::bigint IS NULL OR received_at >= $4) \
             AND ($6::bigint IS NULL OR received_at < $6) AND ($7::bigint IS NULL OR id < $7) \
             AND ($8::text IS NULL OR $8 = ANY(storehook_order_ids(body))) \
             ORDER BY id DESC LIMIT $5"
        )
    });
    let rows = sqlx::query(SQL.as_str())
        .bind(filter.status.map(WebhookStatus::as_str))
        .bind(filter.source.as_deref())
        .bind(filter.topic.as_deref())
        .bind(filter.since_ms)
        .bind(filter.limit)
        .bind(filter.until_ms)
        .bind(filter.before_id.map(|id| id.0))
        .bind(filter.order_id.as_deref())
        .fetch_all(pool)
        .await?;
    rows.iter().map(webhook_record).collect()
}

pub(super) async fn get_webhook(
    pool: &PgPool,
    id: WebhookId,
) -> Result<Option<WebhookRecord>, sqlx::Error> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1"));
    sqlx::query(SQL.as_str())
        .bind(id.0)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(webhook_record)
        .transpose()
}

/// The delivery of `mapping` with the stored `key`: (mapping, key) is unique.
pub(super) async fn delivery_by_key(
    pool: &PgPool,
    mapping: &str,
    key: &str,
) -> Result<Option<DeliverySummary>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {SUMMARY_COLUMNS} FROM deliveries WHERE mapping = $1 AND key = $2")
    });
    sqlx::query(SQL.as_str())
        .bind(mapping)
        .bind(key)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(summary)
        .transpose()
}

/// The webhooks a re-translation reads (see `Store::webhooks_for`), oldest first.
pub(super) async fn webhooks_for(
    pool: &PgPool,
    filter: &DeliveryFilter,
) -> Result<Vec<StoredWebhook>, sqlx::Error> {
    // The untranslated ones too: a mapping that failed made no delivery to match.
    static BY_DELIVERY: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT id, source, platform, topic, headers, body FROM webhooks WHERE \
             (id IN (SELECT webhook_id FROM deliveries WHERE {FILTER_SQL}) \
              OR (status = '{untranslated}' AND $7::bigint IS NULL \
                  AND ($3::bigint IS NULL OR received_at >= $3) \
                  AND ($6::bigint IS NULL OR received_at < $6) \
                  AND ($4::bigint IS NULL OR id = $4))) \
             AND status <> $10 ORDER BY id LIMIT $5",
            untranslated = WebhookStatus::Untranslated,
        )
    });
    // Each of the filter's values has its type named, used or not.
    const BY_WEBHOOK: &str = "SELECT id, source, platform, topic, headers, body FROM webhooks \
         WHERE ($1::text IS NULL OR TRUE) AND ($2::text IS NULL OR TRUE) \
         AND ($7::bigint IS NULL OR TRUE) AND ($8::text IS NULL OR TRUE) \
         AND ($9::bigint IS NULL OR TRUE) \
         AND ($3::bigint IS NULL OR received_at >= $3) \
         AND ($6::bigint IS NULL OR received_at < $6) \
         AND ($4::bigint IS NULL OR id = $4) AND status <> $10 ORDER BY id LIMIT $5";
    let by_delivery = filter.status.is_some()
        || filter.destination.is_some()
        || filter.id.is_some()
        || filter.mapping.is_some();
    let sql = if by_delivery {
        BY_DELIVERY.as_str()
    } else {
        BY_WEBHOOK
    };
    let rows = bind_filter!(sqlx::query(sql), filter)
        .bind(WebhookStatus::Purged.as_str())
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredWebhook {
                id: WebhookId(row.try_get("id")?),
                source: row.try_get("source")?,
                platform: row.try_get("platform")?,
                topic: row.try_get("topic")?,
                // As the SQLite store: unreadable headers are none, the body is
                // re-translated anyway.
                headers: headers(row).unwrap_or_default(),
                body: row.try_get("body")?,
            })
        })
        .collect()
}
