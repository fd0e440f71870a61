//! Three `storehook serve` processes on one PostgreSQL schema, webhooks spread over all
//! three under load, one killed with SIGKILL mid-run: every acknowledged webhook's Legion
//! event arrives, a repeat only ever with the same event id; a Scalef create → approve →
//! reject sequence sent to three instances arrives in order, a repeated request with the
//! same `Idempotency-Key`. Runs where `DATABASE_URL` names a PostgreSQL (always under CI).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::crash::{order, start_with_env, wait_healthy};
use crate::doubles::{Double, Received};
use crate::harness::*;

const ORDERS: u64 = 240;

fn scalef_answer(request: &Received) -> crate::doubles::Answer {
    if request.path.ends_with("/conversion") {
        let body =
            json!({"status": "success", "data": {"conversion": {"conversion_id": "conv-1"}}});
        (200, vec![], body.to_string())
    } else {
        (200, vec![], r#"{"status": "success"}"#.into())
    }
}

/// The Haravan order with a click id as `topic`, changed by `change`, signed.
fn scalef_event(
    topic: &str,
    updated_at: &str,
    change: impl FnOnce(&mut Value),
) -> (Vec<(String, String)>, Vec<u8>) {
    let fixture = fixture("haravan", "local-phone-click-id");
    let mut order: Value = serde_json::from_slice(&fixture.body).unwrap();
    order["updated_at"] = updated_at.into();
    change(&mut order);
    let body = serde_json::to_vec(&order).unwrap();
    let mut headers: Vec<(String, String)> = recorded_headers_without_signature(&fixture)
        .into_iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("x-haravan-topic"))
        .collect();
    headers.push(("X-Haravan-Topic".into(), topic.into()));
    headers.push((
        "X-Haravan-Hmacsha256".into(),
        platform_signature(secret_of("haravan"), &body),
    ));
    (headers, body)
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    (headers, body): (Vec<(String, String)>, Vec<u8>),
) -> Option<Value> {
    let mut request = client.post(format!("{base}/webhooks/haravan")).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.ok()?;
    if response.status() != 200 {
        return None;
    }
    response.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_postgresql_one_killed_lose_nothing_and_keep_scalef_in_order() {
    let Some(schema) = crate::postgres::fresh_schema("three instances on PostgreSQL").await else {
        return;
    };
    let store_url = schema.store_url();
    let (legion, legion_url) = Double::start().await;
    let (scalef, scalef_url) = Double::start_with(scalef_answer).await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SCALEF_BASE_URL", scalef_url.as_str()),
        ("SCALEF_USER", "scalef-user"),
        ("SCALEF_ACCESS_TOKEN", "scalef-token"),
    ];
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let bases: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    // Started together: their migrators take turns.
    let mut children: Vec<_> = ports
        .iter()
        .map(|port| start_with_env(dir.path(), *port, &store_url, &legion_url, &env))
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for base in &bases {
        wait_healthy(&client, base).await;
    }

    // The Scalef sequence, one step per instance, each sent once the one before is
    // acknowledged (as a shop sends them).
    let create = scalef_event("orders/paid", "2024-05-01T10:00:00Z", |_| {});
    let approve = scalef_event("orders/fulfilled", "2024-05-02T10:00:00Z", |order| {
        order["fulfillment_status"] = "fulfilled".into();
    });
    let reject = scalef_event("orders/cancelled", "2024-05-03T10:00:00Z", |order| {
        order["cancelled_at"] = "2024-05-03T10:00:00Z".into();
        order["cancel_reason"] = "customer".into();
    });
    for (step, base) in [create, approve, reject].into_iter().zip(&bases) {
        let answer = post(&client, base, step).await.expect("answered 200");
        assert_eq!(answer["duplicate"], false, "{answer}");
    }

    // Orders spread over the three; the second instance is killed a third of the way in.
    let answered = std::sync::atomic::AtomicU64::new(0);
    let mut killed = false;
    let results: Vec<(u64, bool)> = futures::stream::iter(0..ORDERS)
        .map(|n| {
            let (client, base) = (client.clone(), bases[(n % 3) as usize].clone());
            let answered = &answered;
            async move {
                let ok = post(&client, &base, order(n)).await.is_some();
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (n, ok)
            }
        })
        .buffer_unordered(24)
        .inspect(|_| {
            if !killed && answered.load(std::sync::atomic::Ordering::SeqCst) >= ORDERS / 3 {
                children[1].kill().unwrap(); // SIGKILL: no shutdown, leases left behind
                killed = true;
            }
        })
        .collect()
        .await;
    assert!(killed);
    children[1].wait().unwrap();
    // The shop retries what was not answered, at an instance that is up.
    let mut acked = BTreeSet::new();
    for (n, ok) in results {
        if !ok {
            assert!(post(&client, &bases[2], order(n)).await.is_some());
        }
        acked.insert(n);
    }

    // Every order's Legion event arrives (the killed instance's leases expire and the others
    // claim its deliveries), and an order seen twice is seen with the same event id.
    let deadline = Instant::now() + Duration::from_secs(90);
    let events = loop {
        let mut by_order: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for request in legion.received() {
            for event in request.body.as_array().unwrap() {
                by_order
                    .entry(event["payload"]["order_id"].as_str().unwrap().to_string())
                    .or_default()
                    .insert(event["id"].as_str().unwrap().to_string());
            }
        }
        let updates = scalef
            .received()
            .iter()
            .filter(|r| r.body["status"] == "rejected")
            .count();
        // The Scalef order's own Legion event among them.
        if (by_order.len() as u64 > ORDERS && updates > 0) || Instant::now() > deadline {
            break by_order;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for n in &acked {
        let order_id = (500_000 + n).to_string();
        let ids = events.get(&order_id).unwrap_or_else(|| {
            panic!("order {order_id} was answered 200 but never reached Legion")
        });
        assert_eq!(
            ids.len(),
            1,
            "order {order_id}: different Legion event ids {ids:?}"
        );
    }

    // Scalef: the create, then the approval, then the rejection (a request repeated after
    // the kill may come twice in a row, with the same Idempotency-Key).
    let received = scalef.received();
    let mut steps: Vec<String> = received
        .iter()
        .map(|r| {
            if r.path.ends_with("/conversion") {
                "create".to_string()
            } else {
                r.body["status"].as_str().unwrap().to_string()
            }
        })
        .collect();
    steps.dedup();
    assert_eq!(steps, ["create", "approved", "rejected"], "{received:#?}");
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in &received {
        let step = format!("{} {}", request.path, request.body["status"]);
        let key = request.headers["idempotency-key"]
            .to_str()
            .unwrap()
            .to_string();
        keys.entry(step).or_default().insert(key);
    }
    assert!(keys.values().all(|keys| keys.len() == 1), "{keys:?}");

    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
}
