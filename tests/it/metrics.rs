//! `GET /metrics` of the real binary, read with a Prometheus text-format parser: the counters
//! move as webhooks, skips, deliveries and failures happen. A process of its own, so that no
//! other test's webhooks count.

use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};

use crate::cli::{serve, shipped_config, stop, storehook};
use crate::doubles::Double;
use crate::harness::*;

async fn scrape(port: u16) -> Scrape {
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let content_type = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = answer.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of `name` with every label of `labels`, 0 when there is no such series; a
/// histogram's count.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("{name} is a summary"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_webhooks_translations_attempts_and_deliveries() {
    let (legion, legion_url) = Double::start().await;
    let (_salekit, salekit_url) =
        Double::start_with(|_| (422, vec![], r#"{"error":"no"}"#.into())).await;
    let dir = tempfile::tempdir().unwrap();
    let mut command = storehook(dir.path());
    command
        .arg("--config")
        .arg(shipped_config())
        .envs(test_env(dir.path()))
        .env("LEGION_BASE_URL", &legion_url)
        .env("LEGION_API_KEY", "legion-key")
        .env("SALEKIT_BASE_URL", &salekit_url)
        .env("SALEKIT_TOKEN", "salekit-token");
    let (child, rx, _log, port) = serve(command);

    let before = scrape(port).await;
    assert_eq!(
        value(&before, "storehook_webhooks_received_total", &[]),
        0.0
    );

    let client = reqwest::Client::new();
    let post = |fixture: &storehook::fixture::Fixture, secret: &str| {
        let mut request = client
            .post(format!("http://127.0.0.1:{port}/webhooks/haravan"))
            .header(
                signature_header("haravan"),
                platform_signature(secret, &fixture.body),
            )
            .body(fixture.body.clone());
        for (name, value) in recorded_headers_without_signature(fixture) {
            request = request.header(name, value);
        }
        request.send()
    };
    let paid = fixture("haravan", "paid-two-items-discount");
    let guest = fixture("haravan", "guest-email-only");
    assert_eq!(
        post(&paid, secret_of("haravan")).await.unwrap().status(),
        200
    );
    assert_eq!(
        post(&guest, secret_of("haravan")).await.unwrap().status(),
        200
    );
    assert_eq!(
        post(&paid, secret_of("haravan")).await.unwrap().status(),
        200
    );
    assert_eq!(post(&paid, "a forger's guess").await.unwrap().status(), 401);

    // Legion takes the paid order; Salekit refuses both orders' audiences for good.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let now = scrape(port).await;
        let legion_done = value(
            &now,
            "storehook_deliveries_total",
            &[("destination", "legion"), ("status", "delivered")],
        );
        let salekit_done = value(
            &now,
            "storehook_deliveries_total",
            &[("destination", "salekit"), ("status", "dead")],
        );
        // The counters move when an answer arrives, the queue once it is recorded.
        let legion_queued = value(&now, "storehook_queue_depth", &[("destination", "legion")]);
        if legion_done >= 1.0 && salekit_done >= 2.0 && legion_queued == 0.0 {
            break now;
        }
        assert!(Instant::now() < deadline, "deliveries not done: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let received = |outcome| {
        value(
            &after,
            "storehook_webhooks_received_total",
            &[("source", "haravan"), ("outcome", outcome)],
        )
    };
    assert_eq!(received("stored"), 2.0);
    assert_eq!(received("duplicate"), 1.0);
    assert_eq!(received("invalid_signature"), 1.0);
    assert_eq!(
        value(
            &after,
            "storehook_webhooks_received_total",
            &[("topic", "orders/paid"), ("outcome", "stored")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "storehook_webhook_ack_seconds",
            &[("source", "haravan")]
        ),
        4.0,
        "every answer's latency"
    );
    let translated = |mapping, outcome| {
        value(
            &after,
            "storehook_translations_total",
            &[("mapping", mapping), ("outcome", outcome)],
        )
    };
    // The duplicate is translated too (it is refused by the store, after translation).
    assert_eq!(translated("haravan/legion-purchase", "plan"), 2.0);
    assert_eq!(translated("haravan/legion-purchase", "skip"), 1.0);
    assert_eq!(translated("haravan/salekit-audience", "plan"), 3.0);
    assert_eq!(
        value(
            &after,
            "storehook_attempts_total",
            &[("destination", "legion"), ("outcome", "delivered")]
        ),
        1.0
    );
    assert!(
        value(
            &after,
            "storehook_attempts_total",
            &[("destination", "salekit"), ("outcome", "dead")]
        ) >= 1.0
    );
    assert_eq!(
        value(
            &after,
            "storehook_delivery_seconds",
            &[("destination", "legion")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "storehook_circuit_open",
            &[("destination", "legion")]
        ),
        0.0
    );
    // The queues, read from the store when scraped: nothing left for Legion; Scalef (no
    // credentials) runs dry.
    assert_eq!(
        value(
            &after,
            "storehook_queue_depth",
            &[("destination", "legion")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &after,
            "storehook_oldest_pending_seconds",
            &[("destination", "legion")]
        ),
        0.0
    );
    assert_eq!(legion.received().len(), 1);
    stop(child);
    drop(rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storehook.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[metrics]\nenabled = false\n",
            storehook::config::EMBEDDED
        ),
    )
    .unwrap();
    let mut command = storehook(dir.path());
    command
        .arg("--config")
        .arg(&config)
        .envs(test_env(dir.path()));
    let (child, _rx, _log, port) = serve(command);
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_ask_for_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storehook.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[metrics]\nrequire_token = true\n",
            storehook::config::EMBEDDED
        ),
    )
    .unwrap();
    let mut command = storehook(dir.path());
    command
        .arg("--config")
        .arg(&config)
        .envs(test_env(dir.path()))
        .env("STOREHOOK_ADMIN_TOKEN", "metrics-admin-token");
    let (child, _rx, _log, port) = serve(command);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let answer = client
        .get(&url)
        .bearer_auth("metrics-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format");
    stop(child);
}
