//! The store's reads: operators' listings and the records tests and the CLI check state
//! through. Each runs on a read connection of its own, off the async runtime (a blocking
//! task), and never waits for the writer: in WAL mode a reader sees the last commit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, ToSql};

use super::{BUSY_TIMEOUT, rules};
use crate::store::{
    AttemptOutcome, AttemptRecord, DeliveryFilter, DeliveryId, DeliveryRecord, DeliveryStats,
    DeliveryStatus, DeliverySummary, MinuteCount, StatusCount, StoreError, StoredWebhook,
    WebhookFilter, WebhookId, WebhookRecord, WebhookStatus,
};

/// Read connections kept for reuse, at most this many.
const IDLE_READERS: usize = 4;

/// The read connections of one database file.
pub(super) struct Readers {
    path: PathBuf,
    /// Connections not in use; a read takes one (or opens one) and gives it back.
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Arc<Self> {
        Arc::new(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `read` on a read connection in a blocking task.
    pub(super) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = read(&conn);
            readers.give_back(conn);
            result
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("a read did not finish: {error}")))?
    }

    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().expect("not poisoned").pop() {
            return Ok(conn);
        }
        // Opened read-write but `query_only`: a read-only connection cannot create the
        // WAL's shared-memory file, should it be missing.
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().expect("not poisoned");
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
    }
}

/// The condition of a [`DeliveryFilter`] over `deliveries`, its values bound by name
/// ([`filter_params`]); an unset field matches everything. `LIMIT coalesce(:limit, -1)`
/// binds its limit.
macro_rules! filter_sql {
    () => {
        "(:status IS NULL OR status = :status) \
         AND (:destination IS NULL OR destination = :destination) \
         AND (:since IS NULL OR created_at >= :since) AND (:until IS NULL OR created_at < :until) \
         AND (:webhook IS NULL OR webhook_id = :webhook) AND (:id IS NULL OR id = :id) \
         AND (:mapping IS NULL OR mapping = :mapping) AND (:before IS NULL OR id < :before)"
    };
}
pub(super) use filter_sql;

/// Values bound by name.
pub(super) type Named<'a> = Vec<(&'static str, &'a dyn ToSql)>;

/// A [`DeliveryFilter`]'s values, by the names [`filter_sql!`] and its `LIMIT` bind.
pub(super) fn filter_params(filter: &DeliveryFilter) -> Named<'_> {
    vec![
        (":status", &filter.status),
        (":destination", &filter.destination),
        (":since", &filter.since_ms),
        (":until", &filter.until_ms),
        (":webhook", &filter.webhook_id),
        (":id", &filter.id),
        (":mapping", &filter.mapping),
        (":before", &filter.before_id),
        (":limit", &filter.limit),
    ]
}

/// Of `named`, the values `statement` has a parameter for: a statement that does not use
/// every field of a filter binds only those it uses.
pub(super) fn bound<'a>(
    statement: &rusqlite::Statement<'_>,
    named: Named<'a>,
) -> Result<Named<'a>, StoreError> {
    let mut kept = Vec::with_capacity(named.len());
    for (name, value) in named {
        if statement.parameter_index(name)?.is_some() {
            kept.push((name, value));
        }
    }
    Ok(kept)
}

const SUMMARY_COLUMNS: &str = "id, webhook_id, mapping, key, destination, operation, status, \
     attempts, next_attempt_at, created_at, last_error, skip_kind";

/// A [`DeliverySummary`] from the first columns of a row, in [`SUMMARY_COLUMNS`]' order.
fn summary(row: &Row<'_>) -> rusqlite::Result<DeliverySummary> {
    Ok(DeliverySummary {
        id: row.get(0)?,
        webhook_id: row.get(1)?,
        mapping: row.get(2)?,
        key: row.get(3)?,
        destination: row.get(4)?,
        operation: row.get(5)?,
        status: row.get(6)?,
        attempts: row.get(7)?,
        next_attempt_at: row.get(8)?,
        created_at: row.get(9)?,
        last_error: row.get(10)?,
        skip: row.get(11)?,
    })
}

/// Deliveries matching the filter, newest first.
pub(super) fn list_deliveries(
    conn: &Connection,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliverySummary>, StoreError> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM deliveries WHERE {} ORDER BY id DESC \
         LIMIT coalesce(:limit, -1)",
        filter_sql!()
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let named = bound(&statement, filter_params(filter))?;
    let rows = statement.query_map(named.as_slice(), summary)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The next-due query (see `Store::next_due_at`). Two searches of the (destination,
/// status, next_attempt_at) index: the first reads one entry (or a few), not every pending
/// delivery as one MIN over both did. A delivery held back is not due (its worker would
/// claim nothing, again and again): the first one not held back, in the index's order.
static NEXT_DUE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT MIN(at) FROM ( \
         SELECT * FROM (SELECT next_attempt_at AS at FROM deliveries d \
         WHERE destination = ?1 AND status = '{pending}' AND {not_held_back} \
         ORDER BY next_attempt_at LIMIT 1) \
         UNION ALL \
         SELECT MIN(lease_until) FROM deliveries \
         WHERE destination = ?1 AND status = '{in_flight}')",
        pending = DeliveryStatus::Pending,
        in_flight = DeliveryStatus::InFlight,
        not_held_back = *rules::NOT_HELD_BACK,
    )
});

/// When the next delivery of `destination` falls due, if any is pending or leased.
pub(super) fn next_due_at(conn: &Connection, destination: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(&NEXT_DUE)?
        .query_row([destination], |row| row.get(0))?)
}

/// Counts for an overview (see `Store::delivery_stats`): per (destination, status), through
/// the (destination, status, next_attempt_at) index; the oldest pending per destination;
/// attempts per minute since `since_ms`, through the index on `started_at`.
pub(super) fn delivery_stats(
    conn: &Connection,
    since_ms: i64,
) -> Result<DeliveryStats, StoreError> {
    let counts = conn
        .prepare_cached(
            "SELECT destination, status, count(*) FROM deliveries \
             GROUP BY destination, status ORDER BY destination, status",
        )?
        .query_map([], |row| {
            Ok(StatusCount {
                destination: row.get(0)?,
                status: row.get(1)?,
                count: row.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    let oldest_pending = conn
        .prepare_cached(
            "SELECT destination, min(created_at) FROM deliveries WHERE status = ? \
             GROUP BY destination ORDER BY destination",
        )?
        .query_map([DeliveryStatus::Pending], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let per_minute = conn
        .prepare_cached(
            "SELECT started_at / 60000 * 60000 AS minute, \
               sum(outcome = ?2), sum(outcome IN (?3, ?4)) \
             FROM attempts WHERE started_at >= ?1 GROUP BY minute ORDER BY minute",
        )?
        .query_map(
            rusqlite::params![
                since_ms,
                AttemptOutcome::Delivered,
                AttemptOutcome::Retry,
                AttemptOutcome::Dead
            ],
            |row| {
                Ok(MinuteCount {
                    minute: row.get(0)?,
                    delivered: row.get::<_, i64>(1)? as u64,
                    failed: row.get::<_, i64>(2)? as u64,
                })
            },
        )?
        .collect::<Result<_, _>>()?;
    Ok(DeliveryStats {
        counts,
        oldest_pending,
        per_minute,
    })
}

/// One delivery in full.
pub(super) fn get_delivery(
    conn: &Connection,
    id: DeliveryId,
) -> Result<Option<DeliveryRecord>, StoreError> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS}, payload, needs_mapping, needs_key, conversion_id, request, \
         lease_until FROM deliveries WHERE id = ?"
    );
    let record = conn
        .prepare_cached(&sql)?
        .query_row([id], |row| {
            let needs: (Option<String>, Option<String>) = (row.get(13)?, row.get(14)?);
            Ok(DeliveryRecord {
                summary: summary(row)?,
                payload: row.get(12)?,
                needs: needs.0.zip(needs.1),
                conversion_id: row.get(15)?,
                request: row.get(16)?,
                lease_until: row.get(17)?,
            })
        })
        .optional()?;
    Ok(record)
}

/// The attempts of a delivery, oldest first.
pub(super) fn list_attempts(
    conn: &Connection,
    id: DeliveryId,
) -> Result<Vec<AttemptRecord>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT outcome, http_status, response, started_at, duration_ms FROM attempts \
         WHERE delivery_id = ? ORDER BY id",
    )?;
    let rows = statement.query_map([id], |row| {
        Ok(AttemptRecord {
            outcome: row.get(0)?,
            http_status: row.get(1)?,
            response: row.get(2)?,
            started_at: row.get(3)?,
            duration_ms: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The headers of a webhook as stored: a JSON object of strings.
fn headers(
    row: &Row<'_>,
    column: usize,
) -> rusqlite::Result<std::collections::BTreeMap<String, String>> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            Box::new(error),
        )
    })
}

const WEBHOOK_COLUMNS: &str =
    "id, source, platform, topic, dedupe_id, headers, body, status, error, received_at";

/// A [`WebhookRecord`] from a row of [`WEBHOOK_COLUMNS`].
fn webhook_record(row: &Row<'_>) -> rusqlite::Result<WebhookRecord> {
    Ok(WebhookRecord {
        id: row.get(0)?,
        source: row.get(1)?,
        platform: row.get(2)?,
        topic: row.get(3)?,
        dedupe_id: row.get(4)?,
        headers: headers(row, 5)?,
        body: row.get(6)?,
        status: row.get(7)?,
        error: row.get(8)?,
        received_at: row.get(9)?,
    })
}

/// Webhooks matching the filter, newest first.
pub(super) fn list_webhooks(
    conn: &Connection,
    filter: &WebhookFilter,
) -> Result<Vec<WebhookRecord>, StoreError> {
    // An order's id is read from the body only where it is JSON (a purged body is empty).
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE (:status IS NULL OR status = :status) \
         AND (:source IS NULL OR source = :source) AND (:topic IS NULL OR topic = :topic) \
         AND (:since IS NULL OR received_at >= :since) \
         AND (:until IS NULL OR received_at < :until) AND (:before IS NULL OR id < :before) \
         AND (:order IS NULL OR (json_valid(CAST(body AS TEXT)) AND :order IN ( \
             CAST(json_extract(CAST(body AS TEXT), '$.id') AS TEXT), \
             CAST(json_extract(CAST(body AS TEXT), '$.order_number') AS TEXT), \
             CAST(json_extract(CAST(body AS TEXT), '$.number') AS TEXT)))) \
         ORDER BY id DESC LIMIT coalesce(:limit, -1)"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let named: Named<'_> = vec![
        (":status", &filter.status),
        (":source", &filter.source),
        (":topic", &filter.topic),
        (":since", &filter.since_ms),
        (":until", &filter.until_ms),
        (":before", &filter.before_id),
        (":order", &filter.order_id),
        (":limit", &filter.limit),
    ];
    let rows = statement.query_map(named.as_slice(), webhook_record)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One webhook.
pub(super) fn get_webhook(
    conn: &Connection,
    id: WebhookId,
) -> Result<Option<WebhookRecord>, StoreError> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], webhook_record)
        .optional()?)
}

/// The delivery of `mapping` with the stored `key`: (mapping, key) is unique.
pub(super) fn delivery_by_key(
    conn: &Connection,
    mapping: &str,
    key: &str,
) -> Result<Option<DeliverySummary>, StoreError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM deliveries WHERE mapping = ? AND key = ?");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([mapping, key], summary)
        .optional()?)
}

/// The webhooks a re-translation reads (see `Store::webhooks_for`), oldest first.
pub(super) fn webhooks_for(
    conn: &Connection,
    filter: &DeliveryFilter,
) -> Result<Vec<StoredWebhook>, StoreError> {
    let by_delivery = filter.status.is_some()
        || filter.destination.is_some()
        || filter.id.is_some()
        || filter.mapping.is_some();
    let sql = if by_delivery {
        // The untranslated ones too: a mapping that failed made no delivery to match.
        format!(
            "SELECT id, source, platform, topic, headers, body FROM webhooks WHERE \
             (id IN (SELECT webhook_id FROM deliveries WHERE {}) \
              OR (status = '{untranslated}' AND :id IS NULL \
                  AND (:since IS NULL OR received_at >= :since) \
                  AND (:until IS NULL OR received_at < :until) \
                  AND (:webhook IS NULL OR id = :webhook))) \
             AND status != :purged ORDER BY id LIMIT coalesce(:limit, -1)",
            filter_sql!(),
            untranslated = WebhookStatus::Untranslated,
        )
    } else {
        "SELECT id, source, platform, topic, headers, body FROM webhooks \
         WHERE (:since IS NULL OR received_at >= :since) \
         AND (:until IS NULL OR received_at < :until) AND (:webhook IS NULL OR id = :webhook) \
         AND status != :purged ORDER BY id LIMIT coalesce(:limit, -1)"
            .to_string()
    };
    let mut statement = conn.prepare_cached(&sql)?;
    let mut named = filter_params(filter);
    named.push((":purged", &WebhookStatus::Purged));
    let named = bound(&statement, named)?;
    let rows = statement.query_map(named.as_slice(), |row| {
        Ok(StoredWebhook {
            id: row.get(0)?,
            source: row.get(1)?,
            platform: row.get(2)?,
            topic: row.get(3)?,
            // As before: unreadable headers are none, the body is re-translated anyway.
            headers: headers(row, 4).unwrap_or_default(),
            body: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::store::sqlite::accept::tests::{store, webhook};
    use crate::store::{
        Attempt, AttemptOutcome, DeliveryFilter, DeliveryId, DeliveryStatus, Operation,
        PlatformKind, Recorded, Store, WebhookFilter, WebhookId, WebhookStatus,
    };

    /// What operators read back is what was written, typed, and `deliveries --json` prints
    /// a summary as it always has: ids as numbers, status and operation as their words.
    #[tokio::test]
    async fn webhooks_deliveries_and_attempts_read_back_typed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut first = webhook("s", "a");
        first.headers.insert("x-topic".into(), "orders/paid".into());
        store.accept(first).await.unwrap();
        let mut second = webhook("t", "b");
        second.received_at_ms = 5;
        second.translation_error = Some("no mapping".into());
        store.accept(second).await.unwrap();

        let all = store
            .list_webhooks(&WebhookFilter::default())
            .await
            .unwrap();
        let ids: Vec<WebhookId> = all.iter().map(|w| w.id).collect();
        assert_eq!(ids, [WebhookId(2), WebhookId(1)], "newest first");
        assert_eq!(all[1].platform, PlatformKind::Haravan);
        assert_eq!(all[1].headers["x-topic"], "orders/paid");
        assert_eq!(all[1].body, br#"{"id":1}"#);
        assert_eq!(all[1].status, WebhookStatus::Translated);
        assert_eq!(all[0].status, WebhookStatus::Untranslated);
        assert_eq!(all[0].error.as_deref(), Some("no mapping"));
        for (filter, expected) in [
            (
                WebhookFilter {
                    source: Some("s".into()),
                    ..WebhookFilter::default()
                },
                vec![WebhookId(1)],
            ),
            (
                WebhookFilter {
                    status: Some(WebhookStatus::Untranslated),
                    ..WebhookFilter::default()
                },
                vec![WebhookId(2)],
            ),
            (
                WebhookFilter {
                    since_ms: Some(2),
                    ..WebhookFilter::default()
                },
                vec![WebhookId(2)],
            ),
            (
                WebhookFilter {
                    limit: Some(1),
                    ..WebhookFilter::default()
                },
                vec![WebhookId(2)],
            ),
        ] {
            let found: Vec<WebhookId> = store
                .list_webhooks(&filter)
                .await
                .unwrap()
                .iter()
                .map(|w| w.id)
                .collect();
            assert_eq!(found, expected, "{filter:?}");
        }

        let claimed = store
            .claim_due_deliveries("legion", 1, 10, 60_000)
            .await
            .unwrap();
        let id = DeliveryId(claimed[0].id);
        let retry = Attempt {
            started_at_ms: 10,
            duration_ms: 3,
            http_status: Some(503),
            recorded: Recorded::Retry {
                next_attempt_at_ms: 99,
                reason: "down".into(),
            },
        };
        store.record_attempts(&[(vec![id.0], retry)]).await.unwrap();
        let record = store.get_delivery(id).await.unwrap().unwrap();
        assert_eq!(record.summary.status, DeliveryStatus::Pending);
        assert_eq!(record.summary.operation, Operation::LegionPurchaseEvent);
        assert_eq!(record.summary.webhook_id, WebhookId(1));
        assert_eq!((record.payload.as_str(), record.lease_until), ("{}", None));
        assert_eq!(record.summary.last_error.as_deref(), Some("down"));
        assert!(store.get_delivery(DeliveryId(99)).await.unwrap().is_none());
        let attempts = store.list_attempts(id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, AttemptOutcome::Retry);
        assert_eq!(
            (
                attempts[0].http_status,
                attempts[0].started_at,
                attempts[0].duration_ms
            ),
            (Some(503), 10, 3)
        );
        assert_eq!(attempts[0].response.as_deref(), Some("down"));

        let listed = store
            .list_deliveries(&DeliveryFilter {
                status: Some(DeliveryStatus::Pending),
                webhook_id: Some(WebhookId(1)),
                ..DeliveryFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.as_slice(), std::slice::from_ref(&record.summary));
        assert_eq!(
            serde_json::to_value(&listed[0]).unwrap(),
            json!({
                "id": 1, "webhook_id": 1, "mapping": "m", "key": "s/a",
                "destination": "legion", "operation": "legion.purchase_event",
                "status": "pending", "attempts": 1, "next_attempt_at": 99, "created_at": 1,
                "last_error": "down",
            })
        );
    }
}
