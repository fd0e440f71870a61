//! The real binary under concurrent load, killed with SIGKILL mid-stream and restarted,
//! several times: every webhook answered 200 reaches Legion, and no order ever gets a
//! second, different Legion event. On SQLite, and on PostgreSQL where `DATABASE_URL` names
//! one.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::doubles::Double;
use crate::harness::*;

const ORDERS_PER_ROUND: usize = 150;
const ROUNDS: usize = 3;

/// The lease of a claimed delivery in these runs. A delivery in flight when the process is
/// killed is claimed again once its lease has expired: with the shipped 60 s, the final run
/// waited up to a minute for them (the whole suite took 60 s instead of 20), at the edge of
/// the test's own deadline.
const LEASE: &str = "5s";

/// Starts the binary in `dir` on the store `store_url`, with the shipped configuration but a
/// lease of [`LEASE`] (a `storehook.toml` in the working directory is the one `serve`
/// reads), Legion live at `legion_url`.
pub fn start(dir: &std::path::Path, port: u16, store_url: &str, legion_url: &str) -> Process {
    start_with_env(dir, port, store_url, legion_url, &[])
}

/// [`start`], with these variables in its environment too.
pub fn start_with_env(
    dir: &std::path::Path,
    port: u16,
    store_url: &str,
    legion_url: &str,
    env: &[(&str, &str)],
) -> Process {
    let shipped = storehook::config::EMBEDDED;
    std::fs::write(
        dir.join("storehook.toml"),
        format!("{shipped}\n[delivery]\nlease = \"{LEASE}\"\n"),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_storehook"))
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PORT", port.to_string())
        .env("STOREHOOK_STORE_URL", store_url)
        .env(
            "STOREHOOK_MAPPINGS_DIR",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"),
        )
        .env("HARAVAN_WEBHOOK_SECRET", secret_of("haravan"))
        .env("LEGION_BASE_URL", legion_url)
        .env("LEGION_API_KEY", "legion-key")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Process(child)
}

pub async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("storehook did not start");
}

/// The n-th distinct paid Haravan order, signed.
pub fn order(n: u64) -> (Vec<(String, String)>, Vec<u8>) {
    let fixture = fixture("haravan", "paid-two-items-discount");
    let mut order: Value = serde_json::from_slice(&fixture.body).unwrap();
    order["id"] = (3_000_000_000 + n).into();
    order["order_number"] = format!("#{}", 500_000 + n).into();
    let body = serde_json::to_vec(&order).unwrap();
    (signed_headers(&fixture, &body, secret_of("haravan")), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_webhook_and_doubles_no_legion_event() {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("crash.db").display());
    sigkill_under_load(dir.path(), &store_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_on_postgresql_loses_no_acknowledged_webhook_and_doubles_no_legion_event()
 {
    let Some(schema) = crate::postgres::fresh_schema("crash on PostgreSQL").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    sigkill_under_load(dir.path(), &schema.store_url()).await;
}

/// Rounds of orders sent to the binary, each killed a third of the way through; the shop
/// retries what was not answered; then a clean run delivers everything.
async fn sigkill_under_load(dir: &std::path::Path, store_url: &str) {
    let (legion, legion_url) = Double::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let mut unacked: Vec<u64> = Vec::new();

    for round in 0..ROUNDS {
        let mut child = start(dir, port, store_url, &legion_url);
        wait_healthy(&client, &base).await;
        // This round's orders, plus what the last crash left unanswered (the shop retries).
        let first = (round * ORDERS_PER_ROUND) as u64;
        let todo: Vec<u64> = unacked
            .drain(..)
            .chain(first..first + ORDERS_PER_ROUND as u64)
            .collect();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let kill_after = ORDERS_PER_ROUND / 3;
        let results = futures::stream::iter(todo.clone())
            .map(|n| {
                let client = client.clone();
                let url = format!("{base}/webhooks/haravan");
                let answered = answered.clone();
                async move {
                    let (headers, body) = order(n);
                    let mut request = client.post(url).body(body);
                    for (name, value) in headers {
                        request = request.header(name, value);
                    }
                    let ok = matches!(request.send().await, Ok(r) if r.status() == 200);
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    (n, ok)
                }
            })
            .buffer_unordered(32);
        tokio::pin!(results);
        let mut killed = false;
        while let Some((n, ok)) = results.next().await {
            if ok {
                acked.lock().unwrap().insert(n);
            } else {
                unacked.push(n);
            }
            if !killed && answered.load(std::sync::atomic::Ordering::SeqCst) >= kill_after {
                child.kill().unwrap(); // SIGKILL: no shutdown, no flush
                killed = true;
            }
        }
        child.wait().unwrap();
        assert!(killed);
    }

    // A last, clean run: the shop's retries of the unanswered webhooks, then delivery.
    let mut child = start(dir, port, store_url, &legion_url);
    wait_healthy(&client, &base).await;
    for n in std::mem::take(&mut unacked) {
        let (headers, body) = order(n);
        let mut request = client.post(format!("{base}/webhooks/haravan")).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        assert_eq!(request.send().await.unwrap().status(), 200);
        acked.lock().unwrap().insert(n);
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), ROUNDS * ORDERS_PER_ROUND);

    let deadline = Instant::now() + Duration::from_secs(60);
    let events_by_order = loop {
        let mut by_order: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for request in legion.received() {
            for event in request.body.as_array().unwrap() {
                by_order
                    .entry(event["payload"]["order_id"].as_str().unwrap().to_string())
                    .or_default()
                    .insert(event["id"].as_str().unwrap().to_string());
            }
        }
        if by_order.len() >= acked.len() || Instant::now() > deadline {
            break by_order;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();

    for n in &acked {
        let order_id = (500_000 + n).to_string();
        let ids = events_by_order.get(&order_id).unwrap_or_else(|| {
            panic!("order {order_id} was answered 200 but never reached Legion")
        });
        assert_eq!(
            ids.len(),
            1,
            "order {order_id} got different Legion event ids: {ids:?}"
        );
    }
    assert_eq!(
        events_by_order.len(),
        acked.len(),
        "no event for an order never sent"
    );
}
