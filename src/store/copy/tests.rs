//! The copy over raw rows (every column, `updated_at` included) and the id marks, which the
//! Store trait does not show; the integration tests (`tests/it/copy_store.rs`) run the
//! command between real stores of both backends.

use std::collections::BTreeMap;

use super::*;
use crate::store::{
    Accepted, Attempt, DeliveryFilter, Heartbeat, NewDelivery, NewWebhook, Recorded, SqliteStore,
    Store,
};

const T0: i64 = 1_700_000_000_000;

fn webhook(dedupe_id: &str, deliveries: Vec<NewDelivery>) -> NewWebhook {
    NewWebhook {
        source: "shop".to_string(),
        platform: "haravan".to_string(),
        topic: "orders/paid".to_string(),
        dedupe_id: dedupe_id.to_string(),
        headers: BTreeMap::from([("x-haravan-topic".to_string(), "orders/paid".to_string())]),
        body: format!(r#"{{"id":"{dedupe_id}"}}"#).into_bytes(),
        received_at_ms: T0,
        deliveries,
        translation_error: None,
    }
}

fn legion(key: &str) -> NewDelivery {
    NewDelivery {
        mapping: "haravan/legion-purchase".to_string(),
        key: key.to_string(),
        destination: "legion".to_string(),
        operation: "legion.purchase_event".to_string(),
        payload: format!(r#"{{"id":"event-{key}"}}"#),
        needs: None,
        skipped: None,
    }
}

fn attempt(at: i64, recorded: Recorded) -> Attempt {
    Attempt {
        started_at_ms: at,
        duration_ms: 7,
        http_status: Some(200),
        recorded,
    }
}

fn url(dir: &tempfile::TempDir, name: &str) -> String {
    format!("sqlite://{}", dir.path().join(name).display())
}

fn options(now_ms: i64) -> CopyOptions {
    CopyOptions {
        allow_running_source: false,
        now_ms,
        page_rows: 2,
    }
}

/// Every row of the store at `url` and its id marks, read as the copy reads them.
async fn rows(url: &str) -> (Vec<WebhookRow>, Vec<DeliveryRow>, Vec<AttemptRow>, IdMarks) {
    let mut source = open_source(url).await.unwrap();
    let webhooks = source.webhooks_after(0, 1000).await.unwrap();
    let deliveries = source.deliveries_after(0, 1000).await.unwrap();
    let attempts = source.attempts_after(0, 1000).await.unwrap();
    (
        webhooks,
        deliveries,
        attempts,
        source.id_marks().await.unwrap(),
    )
}

/// A store with five webhooks: deliveries delivered (then purged with their attempts, so
/// the attempts' mark is above the highest attempt held), retried, dead, in flight and
/// pending.
async fn source_store(url: &str) -> SqliteStore {
    let store = SqliteStore::open(url).await.unwrap();
    for n in 1..=5 {
        let accepted = store
            .accept(webhook(&n.to_string(), vec![legion(&n.to_string())]))
            .await
            .unwrap();
        assert!(matches!(accepted, Accepted::Stored { .. }));
    }
    let claimed = store
        .claim_due_deliveries("legion", 4, T0 + 10, 60_000)
        .await
        .unwrap();
    let [one, two, three, _four] = [0, 1, 2, 3].map(|n| claimed[n].id);
    let retry = Recorded::Retry {
        next_attempt_at_ms: T0 + 5_000,
        reason: "HTTP 503".to_string(),
    };
    let dead = Recorded::Dead {
        reason: "HTTP 400".to_string(),
    };
    let delivered = Recorded::Delivered {
        response: "{}".to_string(),
        conversion_id: None,
    };
    store
        .record_attempts(&[
            (vec![two], attempt(T0 + 10, retry)),
            (vec![three], attempt(T0 + 10, dead)),
            (vec![one], attempt(T0 + 10, delivered)),
        ])
        .await
        .unwrap();
    assert_eq!(store.purge_before(T0 + 1).await.unwrap(), 1);
    store
}

#[tokio::test]
async fn every_row_and_id_mark_is_copied_in_pages_and_new_ids_follow_them() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (url(&dir, "from.db"), url(&dir, "to.db"));
    drop(source_store(&from).await);

    let copied = copy_store(&from, &to, options(T0)).await.unwrap();
    let expected = Counts {
        webhooks: 5,
        deliveries: 5,
        attempts: 2,
    };
    assert_eq!(copied.counts, expected);
    assert_eq!(copied.in_flight, 1);
    assert_eq!(copied.last_lease_until, Some(T0 + 10 + 60_000));

    let source = rows(&from).await;
    assert_eq!(rows(&to).await, source);
    let (_, deliveries, attempts, marks) = source;
    let held = attempts.iter().map(|a| a.id).max().unwrap();
    assert_eq!(
        (marks.attempts, held),
        (3, 2),
        "the purged delivery's attempt was the last one given"
    );
    assert_eq!(deliveries.iter().filter(|d| d.attempts > 0).count(), 4);

    // New rows on the target follow the copied ones.
    let target = SqliteStore::open(&to).await.unwrap();
    let Accepted::Stored { webhook_id, .. } = target
        .accept(webhook("6", vec![legion("6")]))
        .await
        .unwrap()
    else {
        panic!("a new webhook is stored");
    };
    assert_eq!(webhook_id.0, 6);
    let newest = target
        .list_deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(newest[0].id.0, 6);
    let claimed = target
        .claim_due_deliveries("legion", 10, T0 + 6_000, 60_000)
        .await
        .unwrap();
    let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
    assert_eq!(ids, [2, 5, 6], "the retried, the pending and the new one");
    let delivered = Recorded::Delivered {
        response: "{}".to_string(),
        conversion_id: None,
    };
    target
        .record_attempts(&[(vec![6], attempt(T0 + 6_000, delivered))])
        .await
        .unwrap();
    drop(target);
    let (_, _, attempts, _) = rows(&to).await;
    assert_eq!(attempts.last().map(|a| (a.id, a.delivery_id)), Some((4, 6)));
}

#[tokio::test]
async fn a_copy_between_empty_stores_copies_nothing_and_leaves_the_ids_at_one() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (url(&dir, "from.db"), url(&dir, "to.db"));
    drop(SqliteStore::open(&from).await.unwrap());
    let copied = copy_store(&from, &to, options(T0)).await.unwrap();
    assert_eq!(copied.counts, Counts::default());
    assert_eq!(rows(&to).await.3, IdMarks::default());
}

#[tokio::test]
async fn a_fresh_heartbeat_refuses_the_source_unless_allowed_and_a_stale_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let from = url(&dir, "from.db");
    let store = source_store(&from).await;
    let running = Heartbeat {
        instance: "host/42/abcd".to_string(),
        host: "host".to_string(),
        pid: 42,
        started_at: T0,
        seen_at: T0 + 1_000,
    };
    store.record_heartbeat(&running, 0).await.unwrap();
    drop(store);

    let fresh_until = T0 + 1_000 + 20_000;
    let refused = copy_store(&from, &url(&dir, "a.db"), options(fresh_until))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, CopyError::SourceRunning { running: r, .. } if *r == [running.clone()]),
        "{refused:?}"
    );
    let message = refused.to_string();
    for part in ["host/42/abcd", "pid 42", "--allow-running-source"] {
        assert!(message.contains(part), "{message}");
    }
    assert!(
        !dir.path().join("a.db").exists(),
        "the target is not even created"
    );

    let allowed = CopyOptions {
        allow_running_source: true,
        ..options(fresh_until)
    };
    let copied = copy_store(&from, &url(&dir, "b.db"), allowed)
        .await
        .unwrap();
    assert_eq!(copied.running, [running]);
    assert_eq!(copied.counts.webhooks, 5);

    let stale = copy_store(&from, &url(&dir, "c.db"), options(fresh_until + 1))
        .await
        .unwrap();
    assert_eq!(stale.counts.webhooks, 5);
    assert!(stale.running.is_empty());
}

#[tokio::test]
async fn a_target_with_any_row_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (url(&dir, "from.db"), url(&dir, "to.db"));
    drop(source_store(&from).await);
    let target = SqliteStore::open(&to).await.unwrap();
    target.accept(webhook("other", vec![])).await.unwrap();
    drop(target);
    let before = rows(&to).await;

    let refused = copy_store(&from, &to, options(T0)).await.unwrap_err();
    assert!(
        matches!(
            refused,
            CopyError::TargetNotEmpty {
                counts: Counts {
                    webhooks: 1,
                    deliveries: 0,
                    attempts: 0
                },
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("is not empty (1 webhooks"));
    assert_eq!(rows(&to).await, before);
}

#[tokio::test]
async fn a_missing_source_the_same_store_and_an_unknown_scheme_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let missing = url(&dir, "missing.db");
    let error = copy_store(&missing, &url(&dir, "to.db"), options(T0))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("there is no SQLite store at"),
        "{error}"
    );
    assert!(!dir.path().join("missing.db").exists(), "nothing created");

    let error = copy_store(&missing, &missing, options(T0))
        .await
        .unwrap_err();
    assert!(matches!(error, CopyError::SameStore(_)), "{error}");

    let error = copy_store(&missing, "mysql://u:pw@h/d", options(T0))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("u:***@h"), "{error}");
    assert!(!error.to_string().contains("pw"), "{error}");
}
