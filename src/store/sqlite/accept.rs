//! The writes that add deliveries: the receive path's (a webhook and its deliveries, unless
//! its (source, dedupe id) is already stored) and `replay --retranslate`'s (a stored
//! webhook's new deliveries). The writer thread ([`super::writer`]) runs them, batched with
//! every other write waiting, in one transaction in which a failing one leaves nothing.

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::SkipKind;
use crate::store::{
    Accepted, DeliveryStatus, NewDelivery, NewWebhook, StoreError, WebhookId, WebhookStatus,
    stored_key,
};

/// Without `RETURNING`: SQLite runs a statement with `RETURNING` as one with a trigger, under
/// a statement journal of its own, into which it copied every page the insert changed
/// (about 3 % of the writer's time in the closed loop, `perf`); the new row's id is the
/// connection's last inserted rowid instead.
const INSERT_WEBHOOK: &str = "INSERT INTO webhooks \
     (source, platform, topic, dedupe_id, headers, body, status, error, received_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (source, dedupe_id) DO NOTHING";
/// A delivery whose (mapping, key) is stored already is not written again, unless the
/// stored one is a mapping's skip and this one is not: a skip does not hold the key, and
/// the later webhook's delivery takes its place.
static INSERT_DELIVERY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO deliveries \
         (webhook_id, mapping, key, destination, operation, payload, needs_mapping, \
          needs_key, status, skip_kind, last_error, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
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
const STORED_ID: &str = "SELECT id FROM webhooks WHERE source = ? AND dedupe_id = ?";

/// Writes one webhook and its deliveries, unless its (source, dedupe id) is already stored
/// (before, or earlier in this batch).
pub(super) fn insert_webhook(
    conn: &Connection,
    webhook: &NewWebhook,
) -> Result<Accepted, StoreError> {
    let headers = serde_json::to_string(&webhook.headers).expect("a string map serialises");
    let inserted = conn.prepare_cached(INSERT_WEBHOOK)?.execute(params![
        webhook.source,
        webhook.platform,
        webhook.topic,
        webhook.dedupe_id,
        headers,
        webhook.body,
        webhook_status(&webhook.translation_error),
        webhook.translation_error,
        webhook.received_at_ms,
    ])?;
    if inserted == 0 {
        let webhook_id = conn
            .prepare_cached(STORED_ID)?
            .query_row(params![webhook.source, webhook.dedupe_id], |row| row.get(0))?;
        return Ok(Accepted::Duplicate { webhook_id });
    }
    let webhook_id = WebhookId(conn.last_insert_rowid());
    let (mut deliveries, mut skipped) = (0, 0);
    for delivery in &webhook.deliveries {
        let written = insert_delivery(
            conn,
            webhook_id,
            &webhook.source,
            delivery,
            webhook.received_at_ms,
        )?;
        match delivery.skipped {
            None => deliveries += written,
            Some(_) => skipped += written,
        }
    }
    Ok(Accepted::Stored {
        webhook_id,
        deliveries,
        skipped,
    })
}

/// Adds a delivery of a webhook from `source`, due at `now_ms`, unless its (mapping, key) is
/// already stored for that source ([`stored_key`]) as anything but a mapping's skip; returns
/// how many rows were written (0 or 1).
fn insert_delivery(
    conn: &Connection,
    webhook_id: WebhookId,
    source: &str,
    delivery: &NewDelivery,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let (needs_mapping, needs_key) = needs_of(source, delivery);
    let written = conn.prepare_cached(&INSERT_DELIVERY)?.execute(params![
        webhook_id,
        delivery.mapping,
        stored_key(source, &delivery.key),
        delivery.destination,
        delivery.operation,
        delivery.payload,
        needs_mapping,
        needs_key,
        initial_status(delivery),
        skip_kind(delivery),
        delivery.skipped,
        now_ms,
        now_ms,
        now_ms,
    ])?;
    Ok(written as u64)
}

/// A re-translated webhook's outcome, for [`replace_deliveries`].
pub(super) struct Replace {
    pub webhook_id: WebhookId,
    pub deliveries: Vec<NewDelivery>,
    pub translation_error: Option<String>,
    pub only_status: Option<DeliveryStatus>,
    pub now_ms: i64,
}

/// Writes a re-translated webhook's status and deliveries: new ones are added; existing
/// ones not delivered or in flight (and in `only_status`, when given) take the new payload
/// and are due now, or the mapping's skip. Returns (added, replaced).
pub(super) fn replace_deliveries(
    conn: &Connection,
    replace: &Replace,
) -> Result<(u64, u64), StoreError> {
    let status = webhook_status(&replace.translation_error);
    conn.prepare_cached("UPDATE webhooks SET status = ?, error = ? WHERE id = ?")?
        .execute(params![
            status,
            replace.translation_error,
            replace.webhook_id
        ])?;
    let source: String = conn
        .prepare_cached("SELECT source FROM webhooks WHERE id = ?")?
        .query_row(params![replace.webhook_id], |row| row.get(0))?;
    let (mut added, mut replaced) = (0, 0);
    for delivery in &replace.deliveries {
        let key = stored_key(&source, &delivery.key);
        let existing: Option<DeliveryStatus> = conn
            .prepare_cached("SELECT status FROM deliveries WHERE mapping = ? AND key = ?")?
            .query_row(params![delivery.mapping, key], |row| row.get(0))
            .optional()?;
        match existing {
            None => {
                added +=
                    insert_delivery(conn, replace.webhook_id, &source, delivery, replace.now_ms)?;
            }
            // Sent, or being sent: a new payload would count the order twice.
            Some(status) if !status.may_take_new_payload() => {}
            Some(status) if replace.only_status.is_some_and(|only| only != status) => {}
            // A dry run is sent again only when asked for by its status.
            Some(DeliveryStatus::DryRun) if replace.only_status.is_none() => {}
            Some(_) => {
                let (needs_mapping, needs_key) = needs_of(&source, delivery);
                conn.prepare_cached(
                    "UPDATE deliveries SET payload = ?, destination = ?, operation = ?, \
                     needs_mapping = ?, needs_key = ?, status = ?, skip_kind = ?, \
                     last_error = ?, attempts = 0, next_attempt_at = ?, request = NULL, \
                     updated_at = ? WHERE mapping = ? AND key = ?",
                )?
                .execute(params![
                    delivery.payload,
                    delivery.destination,
                    delivery.operation,
                    needs_mapping,
                    needs_key,
                    initial_status(delivery),
                    skip_kind(delivery),
                    delivery.skipped,
                    replace.now_ms,
                    replace.now_ms,
                    delivery.mapping,
                    key,
                ])?;
                replaced += 1;
            }
        }
    }
    Ok((added, replaced))
}

/// The (mapping, stored key) a delivery of a webhook from `source` waits for, if any.
fn needs_of(source: &str, delivery: &NewDelivery) -> (Option<String>, Option<String>) {
    match &delivery.needs {
        Some((mapping, key)) => (Some(mapping.clone()), Some(stored_key(source, key))),
        None => (None, None),
    }
}

/// A webhook is `untranslated` when its translation failed, else `translated`.
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

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use rusqlite::Connection;
    use rusqlite::types::FromSql;

    use crate::store::{Accepted, NewDelivery, NewWebhook, SqliteStore, Store};

    fn webhook_with_key(source: &str, dedupe_id: &str, key: &str) -> NewWebhook {
        let mut webhook = webhook(source, dedupe_id);
        webhook.deliveries[0].key = key.to_string();
        webhook
    }

    pub(in crate::store::sqlite) fn webhook(source: &str, dedupe_id: &str) -> NewWebhook {
        NewWebhook {
            source: source.to_string(),
            platform: "haravan".to_string(),
            topic: "orders/paid".to_string(),
            dedupe_id: dedupe_id.to_string(),
            headers: BTreeMap::new(),
            body: br#"{"id":1}"#.to_vec(),
            received_at_ms: 1,
            deliveries: vec![NewDelivery {
                mapping: "m".to_string(),
                key: dedupe_id.to_string(),
                destination: "legion".to_string(),
                operation: "legion.purchase_event".to_string(),
                payload: "{}".to_string(),
                needs: None,
                skipped: None,
            }],
            translation_error: None,
        }
    }

    pub(in crate::store::sqlite) async fn store(dir: &tempfile::TempDir) -> SqliteStore {
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        SqliteStore::open(&url).await.unwrap()
    }

    /// The store's file in `dir` on a plain connection of its own: the backend's own tests
    /// read (and break) its tables through it.
    pub(in crate::store::sqlite) fn file(dir: &tempfile::TempDir) -> Connection {
        let conn = Connection::open(dir.path().join("s.db")).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn
    }

    /// The first column of every row `sql` selects.
    pub(in crate::store::sqlite) fn column<T: FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// SQLite's write lock on the store's file in `dir`, held by another connection (as the
    /// CLI beside `serve` may hold it) until the returned one is dropped: the writer waits
    /// for it in its batch's `BEGIN IMMEDIATE`, and the writes sent meanwhile queue.
    pub(in crate::store::sqlite) fn hold_write_lock(dir: &tempfile::TempDir) -> Connection {
        let conn = file(dir);
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn
    }

    /// Accepts the webhooks concurrently, all queued while another connection holds the
    /// write lock: the writer then takes at most what was queued before it blocked on the
    /// lock, and the rest as one more batch.
    async fn accept_queued(
        store: &SqliteStore,
        dir: &tempfile::TempDir,
        webhooks: impl IntoIterator<Item = NewWebhook>,
    ) -> Vec<Result<Accepted, crate::store::StoreError>> {
        let lock = hold_write_lock(dir);
        let accepts = futures::future::join_all(webhooks.into_iter().map(|w| store.accept(w)));
        tokio::pin!(accepts);
        assert!(
            futures::poll!(&mut accepts).is_pending(),
            "every one is queued"
        );
        drop(lock);
        accepts.await
    }

    #[tokio::test]
    async fn concurrent_accepts_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let before = store.commits();
        let hooks: Vec<NewWebhook> = (0..50).map(|i| webhook("s", &i.to_string())).collect();
        let results = accept_queued(&store, &dir, hooks).await;
        let mut ids: Vec<crate::store::WebhookId> = results
            .into_iter()
            .map(|r| match r.unwrap() {
                Accepted::Stored {
                    webhook_id,
                    deliveries: 1,
                    skipped: 0,
                } => webhook_id,
                other => panic!("{other:?}"),
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 50);
        let commits = store.commits() - before;
        assert!(commits <= 2, "50 webhooks in {commits} commits");
    }

    #[tokio::test]
    async fn a_batch_has_the_outcome_of_writing_its_webhooks_one_after_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let Accepted::Stored { webhook_id: d, .. } = store
            .accept(webhook_with_key("s", "d", "kd"))
            .await
            .unwrap()
        else {
            panic!("d is new");
        };
        let batch = [
            webhook_with_key("s", "a", "k1"),
            webhook_with_key("s", "a", "k1"),
            // Another webhook of the same order: its delivery key is taken.
            webhook_with_key("s", "b", "k1"),
            webhook_with_key("t", "a", "k2"),
            webhook_with_key("s", "d", "kd"),
        ];
        let results: Vec<Accepted> = accept_queued(&store, &dir, batch)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let Accepted::Stored {
            webhook_id: a,
            deliveries: 1,
            skipped: 0,
        } = results[0]
        else {
            panic!("{results:?}");
        };
        assert_eq!(results[1], Accepted::Duplicate { webhook_id: a });
        assert!(
            matches!(results[2], Accepted::Stored { webhook_id, deliveries: 0, .. } if webhook_id != a)
        );
        assert!(matches!(results[3], Accepted::Stored { deliveries: 1, .. }));
        assert_eq!(results[4], Accepted::Duplicate { webhook_id: d });
        let conn = file(&dir);
        let webhooks: Vec<i64> = column(&conn, "SELECT webhook_id FROM deliveries ORDER BY id");
        let keys: Vec<String> = column(&conn, "SELECT key FROM deliveries ORDER BY id");
        assert_eq!(keys.len(), 3);
        assert_eq!((webhooks[1], keys[1].as_str()), (a.0, "s/k1"));
    }

    #[tokio::test]
    async fn a_failing_webhook_leaves_the_rest_of_its_batch_and_duplicates_in_a_batch_agree() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let refusals = [
            "CREATE TRIGGER refuse BEFORE INSERT ON webhooks WHEN NEW.source = 'bad' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            // Refused after its webhook row is written: that row must go too.
            "CREATE TRIGGER refuse_delivery BEFORE INSERT ON deliveries WHEN NEW.key = 's/d' \
             BEGIN SELECT RAISE(ABORT, 'delivery refused by the test'); END",
        ];
        let conn = file(&dir);
        for trigger in refusals {
            conn.execute_batch(trigger).unwrap();
        }
        let batch = [
            webhook("s", "a"),
            webhook("bad", "b"),
            webhook("s", "a"),
            webhook("s", "c"),
            webhook("s", "d"),
        ];
        let results = futures::future::join_all(batch.into_iter().map(|w| store.accept(w))).await;
        let Ok(Accepted::Stored { webhook_id: a, .. }) = results[0] else {
            panic!("{:?}", results[0]);
        };
        let error = results[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("refused by the test"), "{error}");
        assert!(
            matches!(results[2], Ok(Accepted::Duplicate { webhook_id }) if webhook_id == a),
            "{:?}",
            results[2]
        );
        assert!(matches!(
            results[3],
            Ok(Accepted::Stored { deliveries: 1, .. })
        ));
        let error = results[4].as_ref().unwrap_err().to_string();
        assert!(error.contains("delivery refused by the test"), "{error}");
        let stored: Vec<String> = column(&conn, "SELECT dedupe_id FROM webhooks ORDER BY id");
        assert_eq!(stored, ["a", "c"], "no row of b, nor of d");
        let deliveries: Vec<i64> = column(&conn, "SELECT count(*) FROM deliveries");
        assert_eq!(deliveries, [2]);
    }
}
