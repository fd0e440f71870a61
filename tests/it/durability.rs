//! A webhook answered 200 is on disk; when the store refuses the write, the answer is 503
//! with Retry-After (so the shop retries) and nothing is half-written.

use std::collections::BTreeSet;

use reqwest::StatusCode;

use crate::harness::*;

/// The n-th distinct Shopify order event: its own event id and order id, correctly signed.
fn shopify_order(n: usize) -> (Vec<(String, String)>, Vec<u8>) {
    let fixture = fixture("shopify", "paid-two-items-discount");
    let mut order: serde_json::Value = serde_json::from_slice(&fixture.body).unwrap();
    order["id"] = (7_000_000_000_000u64 + n as u64).into();
    let body = serde_json::to_vec(&order).unwrap();
    let mut headers: Vec<(String, String)> = recorded_headers_without_signature(&fixture)
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("X-Shopify-Event-Id"))
        .collect();
    headers.push(("X-Shopify-Event-Id".into(), format!("event-{n}")));
    headers.push((
        "X-Shopify-Hmac-Sha256".into(),
        platform_signature(secret_of("shopify"), &body),
    ));
    (headers, body)
}

/// Sends orders `range` concurrently; returns (n, status, webhook id when 200).
async fn send_orders(
    app: &TestApp,
    range: std::ops::Range<usize>,
) -> Vec<(usize, StatusCode, Option<i64>)> {
    let sends = range.map(|n| async move {
        let (headers, body) = shopify_order(n);
        let response = app.post_raw("shopify", &headers, body).await;
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(response.headers()["retry-after"], "10");
        }
        let answer = json_of(response).await;
        (n, status, answer["webhook_id"].as_i64())
    });
    futures::future::join_all(sends).await
}

#[tokio::test]
async fn a_failing_store_answers_503_and_every_200_is_on_disk() {
    let app = spawn_app().await;
    let before = send_orders(&app, 0..20).await;
    assert!(before.iter().all(|(_, s, _)| *s == StatusCode::OK));

    // The database starts refusing inserts, as a full disk or a broken file would.
    let db = app.db().await;
    refuse_inserts(&db, "webhooks").await;
    let during = send_orders(&app, 20..40).await;
    for (n, status, id) in &during {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "order {n}");
        assert!(id.is_none());
    }

    // The store recovers; the shop's retries of the refused webhooks now land.
    allow_inserts(&db, "webhooks").await;
    db.close().await;
    let after = send_orders(&app, 20..60).await;
    assert!(after.iter().all(|(_, s, _)| *s == StatusCode::OK));

    let inbox = app.inbox().await;
    let stored: BTreeSet<(i64, Vec<u8>)> = inbox.iter().map(|w| (w.id, w.body.clone())).collect();
    for (n, _, id) in before.iter().chain(&after) {
        let (_, body) = shopify_order(*n);
        assert!(
            stored.contains(&(id.unwrap(), body)),
            "order {n} was answered 200 and is stored under its id"
        );
    }
    assert_eq!(inbox.len(), 60, "each order stored exactly once");
}

/// A store written before delivery keys had their source: opening it gives every key and
/// every `needs` key its webhook's source, so an order delivered before the upgrade is not
/// delivered a second time after it.
#[tokio::test]
async fn keys_stored_before_they_had_a_source_get_it_and_still_refuse_a_second_delivery() {
    use sqlx::Row;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("before.db");
    // The store as the first two migrations left it.
    let before = dir.path().join("migrations");
    std::fs::create_dir(&before).unwrap();
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations/sqlite");
    for name in ["0001_inbox.sql", "0002_deliveries.sql"] {
        std::fs::copy(shipped.join(name), before.join(name)).unwrap();
    }
    let options = SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePool::connect_with(options.clone()).await.unwrap();
    sqlx::migrate::Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO webhooks (id, source, platform, topic, dedupe_id, headers, body, status, received_at) \
         VALUES (1, 'haravan', 'haravan', 'orders/paid', 'earlier', '{}', x'7b7d', 'translated', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO deliveries (webhook_id, mapping, key, destination, operation, payload, \
           needs_mapping, needs_key, status, next_attempt_at, created_at, updated_at) VALUES \
         (1, 'haravan/legion-purchase', '1071234501', 'legion', 'legion.purchase_event', '{}', \
          NULL, NULL, 'delivered', 0, 0, 0), \
         (1, 'haravan/scalef-status', '1071234501/rejected', 'scalef', 'scalef.status_update', '{}', \
          'haravan/scalef-conversion', '1071234501', 'skipped', 0, 0, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let db_url = format!("sqlite://{}", db.display());
    let app = spawn_app_with(|env| {
        env.insert("STOREHOOK_STORE_URL".into(), db_url);
    })
    .await;
    let pool = SqlitePool::connect_with(options).await.unwrap();
    let keys: Vec<(String, String, Option<String>)> =
        sqlx::query("SELECT mapping, key, needs_key FROM deliveries ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.get("mapping"), row.get("key"), row.get("needs_key")))
            .collect();
    let stored = |mapping: &str, key: &str, needs: Option<&str>| {
        (
            mapping.to_string(),
            key.to_string(),
            needs.map(str::to_string),
        )
    };
    assert_eq!(
        keys,
        [
            stored("haravan/legion-purchase", "haravan/1071234501", None),
            stored(
                "haravan/scalef-status",
                "haravan/1071234501/rejected",
                Some("haravan/1071234501")
            ),
        ]
    );

    // The same order again, in a webhook of its own: only its Salekit delivery is new.
    let fixture = fixture("haravan", "paid-two-items-discount");
    let response = app
        .post_fixture("haravan", &fixture, secret_of("haravan"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["duplicate"], false);
    assert_eq!(answer["deliveries"], 1, "{answer}");
    let legion: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE mapping = 'haravan/legion-purchase'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(legion, 1);
    pool.close().await;
}
