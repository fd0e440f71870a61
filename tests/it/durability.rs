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
    let faults = app.sqlite_faults();
    faults.refuse_inserts("webhooks");
    let during = send_orders(&app, 20..40).await;
    for (n, status, id) in &during {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "order {n}");
        assert!(id.is_none());
    }

    // The store recovers; the shop's retries of the refused webhooks now land.
    faults.allow_inserts("webhooks");
    drop(faults);
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
