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

/// The value of `name` summed over its series with every label of `labels` (a histogram's
/// count), or `None` when it has no such series: for a metric that may not have been
/// counted yet.
fn series(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("{name} is a summary"),
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// [`series`] for a metric that must be there: its absence fails the test, naming it.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    series(scrape, name, labels).unwrap_or_else(|| {
        let names: std::collections::BTreeSet<&str> =
            scrape.samples.iter().map(|s| s.metric.as_str()).collect();
        panic!("no series {name} {labels:?} in the scrape (it has: {names:?})")
    })
}

/// Scrapes until `done` holds for a scrape (60 s at most), and returns that scrape.
async fn scrape_until(port: u16, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = scrape(port).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts `body` to `/webhooks/haravan` with `fixture`'s recorded headers, signed with
/// `secret`.
async fn post_haravan(
    port: u16,
    fixture: &storehook::fixture::Fixture,
    body: &[u8],
    secret: &str,
) -> reqwest::StatusCode {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/haravan"))
        .body(body.to_vec());
    for (name, value) in signed_headers(fixture, body, secret) {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status()
}

/// A paid Haravan order with the id `id`.
fn paid_order(id: u64) -> serde_json::Value {
    let mut order: serde_json::Value =
        serde_json::from_slice(&fixture("haravan", "paid-two-items-discount").body).unwrap();
    order["id"] = id.into();
    order
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
    let (server, _log, _, port) = serve(command);

    let before = scrape(port).await;
    assert_eq!(
        series(&before, "storehook_webhooks_received_total", &[]),
        None,
        "nothing counted before the first webhook"
    );
    // The queues and circuits are there from the start, read when scraped.
    assert_eq!(
        value(
            &before,
            "storehook_queue_depth",
            &[("destination", "legion")]
        ),
        0.0
    );

    let paid = fixture("haravan", "paid-two-items-discount");
    let guest = fixture("haravan", "guest-email-only");
    let secret = secret_of("haravan");
    assert_eq!(post_haravan(port, &paid, &paid.body, secret).await, 200);
    assert_eq!(post_haravan(port, &guest, &guest.body, secret).await, 200);
    assert_eq!(post_haravan(port, &paid, &paid.body, secret).await, 200);
    assert_eq!(
        post_haravan(port, &paid, &paid.body, "a forger's guess").await,
        401
    );

    // Legion takes the paid order; Salekit refuses both orders' audiences for good.
    let after = scrape_until(port, "deliveries not done", |now| {
        let legion_done = series(
            now,
            "storehook_deliveries_total",
            &[("destination", "legion"), ("status", "delivered")],
        );
        let salekit_done = series(
            now,
            "storehook_deliveries_total",
            &[("destination", "salekit"), ("status", "dead")],
        );
        // The counters move when an answer arrives, the queue once it is recorded.
        let legion_queued = value(now, "storehook_queue_depth", &[("destination", "legion")]);
        legion_done >= Some(1.0) && salekit_done >= Some(2.0) && legion_queued == 0.0
    })
    .await;

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
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauges_show_a_queue_that_waits_and_a_circuit_that_opened() {
    // Legion is down; one failed request opens its circuit for an hour.
    let (legion, legion_url) = Double::start_with(|_| (503, vec![], "down".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storehook.toml");
    let shipped = storehook::config::EMBEDDED;
    assert!(shipped.contains("batch_size = 50\n"));
    std::fs::write(
        &config,
        shipped.replacen(
            "batch_size = 50\n",
            "batch_size = 50\ncircuit_breaker = { failures = 1, cool_down = \"1h\" }\n",
            1,
        ),
    )
    .unwrap();
    let mut command = storehook(dir.path());
    command
        .arg("--config")
        .arg(&config)
        .envs(test_env(dir.path()))
        .env("LEGION_BASE_URL", &legion_url)
        .env("LEGION_API_KEY", "legion-key");
    let (server, _log, _, port) = serve(command);
    let legion_gauge =
        |scrape: &Scrape, name: &str| value(scrape, name, &[("destination", "legion")]);

    let before = scrape(port).await;
    assert_eq!(legion_gauge(&before, "storehook_circuit_open"), 0.0);
    assert_eq!(legion_gauge(&before, "storehook_queue_depth"), 0.0);
    assert_eq!(
        legion_gauge(&before, "storehook_oldest_pending_seconds"),
        0.0
    );

    let fixture = fixture("haravan", "paid-two-items-discount");
    for id in [4101, 4102] {
        let body = serde_json::to_vec(&paid_order(id)).unwrap();
        let status = post_haravan(port, &fixture, &body, secret_of("haravan")).await;
        assert_eq!(status, 200);
    }
    // Refused once, the circuit is open and both deliveries wait in the queue, pending.
    let after = scrape_until(port, "Legion's circuit open, its queue waiting", |now| {
        legion_gauge(now, "storehook_circuit_open") == 1.0
            && legion_gauge(now, "storehook_oldest_pending_seconds") > 0.0
            // Each destination has its own: Salekit (no credentials) has run its dry.
            && value(now, "storehook_queue_depth", &[("destination", "salekit")]) == 0.0
    })
    .await;
    assert_eq!(legion_gauge(&after, "storehook_queue_depth"), 2.0);
    let oldest = legion_gauge(&after, "storehook_oldest_pending_seconds");
    assert!(oldest < 60.0, "{oldest}");
    assert!(
        value(
            &after,
            "storehook_attempts_total",
            &[("destination", "legion"), ("outcome", "retry")]
        ) >= 1.0
    );
    let sent = legion.received().len();
    assert!((1..=2).contains(&sent), "{sent} requests to Legion");
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trying_mappings_counts_no_translation_and_receiving_a_webhook_does() {
    const TOKEN: &str = "metrics-admin-token";
    let dir = tempfile::tempdir().unwrap();
    let mut command = storehook(dir.path());
    command
        .arg("--config")
        .arg(shipped_config())
        .envs(test_env(dir.path()))
        .env("STOREHOOK_ADMIN_TOKEN", TOKEN);
    let (server, _log, _, port) = serve(command);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let fixture = fixture("haravan", "paid-two-items-discount");
    // An order Legion's schema refuses: its mapping errs on it.
    let mut broken = paid_order(4202);
    broken.as_object_mut().unwrap().remove("total_price");
    broken.as_object_mut().unwrap().remove("created_at");
    let try_it = |body: serde_json::Value| {
        let request = client
            .post(format!("{base}/api/translate"))
            .bearer_auth(TOKEN)
            .json(
                &serde_json::json!({"platform": "haravan", "topic": "orders/paid", "body": body}),
            );
        async move {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200);
            let translation: serde_json::Value = answer.json().await.unwrap();
            translation["mappings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mapping"] == "haravan/legion-purchase")
                .map(|m| m["outcome"].as_str().unwrap().to_string())
                .unwrap()
        }
    };
    let translations = |scrape: &Scrape, outcome: &str| {
        series(
            scrape,
            "storehook_translations_total",
            &[("mapping", "haravan/legion-purchase"), ("outcome", outcome)],
        )
    };

    assert_eq!(try_it(paid_order(4201)).await, "plan");
    assert_eq!(try_it(broken.clone()).await, "error");
    let tried = scrape(port).await;
    assert_eq!(
        series(&tried, "storehook_translations_total", &[]),
        None,
        "a try is no translation"
    );

    for order in [paid_order(4201), broken] {
        let body = serde_json::to_vec(&order).unwrap();
        assert_eq!(
            post_haravan(port, &fixture, &body, secret_of("haravan")).await,
            200
        );
    }
    let received = scrape(port).await;
    assert_eq!(translations(&received, "plan"), Some(1.0));
    assert_eq!(translations(&received, "error"), Some(1.0));
    assert_eq!(
        value(
            &received,
            "storehook_webhooks_received_total",
            &[("source", "haravan"), ("outcome", "untranslated")]
        ),
        1.0,
        "the order its mapping erred on is stored untranslated"
    );

    // Neither another try nor a webhook's page (which runs the mappings over it) counts.
    assert_eq!(try_it(paid_order(4203)).await, "plan");
    let webhooks: serde_json::Value = client
        .get(format!("{base}/api/webhooks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for webhook in webhooks["items"].as_array().unwrap() {
        let page = client
            .get(format!("{base}/api/webhooks/{}", webhook["id"]))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let page: serde_json::Value = page.json().await.unwrap();
        assert!(
            !page["mappings"]["mappings"].as_array().unwrap().is_empty(),
            "{page}"
        );
    }
    let viewed = scrape(port).await;
    assert_eq!(translations(&viewed, "plan"), Some(1.0));
    assert_eq!(translations(&viewed, "error"), Some(1.0));
    stop(server);
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
    let (server, _log, _, port) = serve(command);
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    stop(server);
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
    let (server, _log, _, port) = serve(command);
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
    stop(server);
}
