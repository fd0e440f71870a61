//! `storehook copy-store --from URL --to URL`, run as an operator runs it: a source store made
//! by the real service (deliveries in every state, attempts, a purged webhook) is copied
//! SQLite → SQLite, and SQLite → PostgreSQL → SQLite where `DATABASE_URL` names one; every
//! row reads back the same on the target; `serve` on the target sends what was left to send
//! exactly as `serve` on the source does (the same Legion events, the same
//! `Idempotency-Key`s); new rows on the target take ids after the copied ones. A target with
//! rows is refused, a failed copy leaves none, and a source a running `serve` uses is
//! refused unless `--allow-running-source` says otherwise.

mod source;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use storehook::destination::idempotency_key;

use crate::doubles::Double;
use crate::harness::*;
use source::{Snapshot, make_source, new_webhook, serve_until_sent, small_source, statuses};

/// `storehook copy-store ARGS`, run in an empty directory with no configuration of its own.
fn copy_store(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_storehook"))
        .arg("copy-store")
        .args(args)
        .current_dir(dir.path())
        .env_remove("STOREHOOK_STORE_URL")
        .env_remove("STOREHOOK_CONFIG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// [`copy_store`] `--from FROM --to TO`, which must succeed; its stdout.
fn copied(from: &str, to: &str) -> String {
    let output = copy_store(&["--from", from, "--to", to]);
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn sqlite_url(dir: &tempfile::TempDir, name: &str) -> String {
    format!("sqlite://{}", dir.path().join(name).display())
}

/// Copies a source made by the service into `target`, checks every row, then lets `serve`
/// on each of them send what was left, and checks that they sent the same, and that the
/// target's new rows follow the copied ones. With `back`, the target is copied on into it
/// too, and must read back as the source.
async fn copy_and_deliver(target: &str, back: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_url(&dir, "source.db");
    let legion = make_source(&source).await;
    let before = Snapshot::of(&source).await;
    let (webhook_statuses, delivery_statuses) = statuses(&before);
    for status in ["translated", "untranslated", "purged"] {
        assert!(webhook_statuses.contains(status), "{webhook_statuses:?}");
    }
    for status in [
        "pending",
        "waiting",
        "in_flight",
        "delivered",
        "dead",
        "skipped",
        "cancelled",
        "dry_run",
    ] {
        assert!(delivery_statuses.contains(status), "{delivery_statuses:?}");
    }

    let stdout = copied(&source, target);
    let counts = format!(
        "copied {} webhooks, {} deliveries and {} attempts from {source} to ",
        before.webhooks.len(),
        before.deliveries.len(),
        before.attempts()
    );
    assert!(stdout.starts_with(&counts), "{stdout}");
    assert!(stdout.contains("2 deliveries were in flight"), "{stdout}");
    assert_eq!(
        Snapshot::of(target).await,
        before,
        "the target reads as the source"
    );
    assert_eq!(
        Snapshot::of(&source).await,
        before,
        "the source is untouched"
    );
    if let Some(back) = back {
        copied(target, back);
        assert_eq!(Snapshot::of(back).await, before, "copied back, the same");
    }

    // What the source's serve would have sent, and what the target's does.
    let (mut on_source, from_source) = serve_until_sent(&source, &legion).await;
    on_source.stop().await;
    let (on_target, from_target) = serve_until_sent(target, &legion).await;
    assert_eq!(from_target, from_source);
    let mut expected: Vec<(String, Value)> = legion
        .to_send()
        .iter()
        .map(|id| {
            let (record, _) = before.delivery(*id);
            let key = idempotency_key(&record.summary.mapping, &record.summary.key);
            let event: Value = serde_json::from_str(&record.payload).unwrap();
            (key, Value::Array(vec![event]))
        })
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(from_target, expected, "each event as stored, under its key");

    // The retried delivery keeps its attempt and adds the new one after it; the one whose
    // lease still runs is left to it.
    let attempts = on_target.store.list_attempts(legion.retried).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0], before.delivery(legion.retried).1[0]);
    assert_eq!(attempts[1].outcome.as_str(), "delivered");
    let leased = on_target
        .store
        .get_delivery(legion.leased)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased, before.delivery(legion.leased).0);

    // New rows follow the copied ones, and their attempts are recorded.
    on_target.post_paid_haravan_orders(5000, 1).await;
    let rows = on_target
        .wait_for_deliveries(|rows| {
            rows.iter().any(|r| {
                r.id > before.max_delivery_id()
                    && r.mapping.contains("legion")
                    && r.status == "delivered"
            })
        })
        .await;
    let inbox = on_target.inbox().await;
    let newest = inbox.last().unwrap();
    assert!(newest.id > before.max_webhook_id(), "{}", newest.id);
    let new_deliveries: Vec<_> = rows.iter().filter(|r| r.webhook_id == newest.id).collect();
    assert_eq!(
        new_deliveries.len(),
        2,
        "Legion and Salekit: {new_deliveries:?}"
    );
    assert!(
        new_deliveries
            .iter()
            .all(|r| r.id > before.max_delivery_id())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_sqlite_to_sqlite_keeps_every_row_and_the_target_sends_as_the_source_would() {
    let dir = tempfile::tempdir().unwrap();
    copy_and_deliver(&sqlite_url(&dir, "target.db"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_sqlite_to_postgresql_and_back_keeps_every_row_and_the_target_sends_as_the_source_would()
 {
    let Some(schema) = crate::postgres::fresh_schema("copy-store to PostgreSQL").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    copy_and_deliver(&schema.store_url(), Some(&sqlite_url(&dir, "back.db"))).await;
}

/// A target holding a webhook is refused, naming what it holds, and is left as it was.
async fn a_target_with_rows_is_refused(target: &str) {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_url(&dir, "source.db");
    small_source(&source).await;
    let store = storehook::store::open(target).await.unwrap();
    store.accept(new_webhook("target-1")).await.unwrap();
    drop(store);
    let before = Snapshot::of(target).await;

    let output = copy_store(&["--from", &source, "--to", target]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not empty (1 webhooks, 1 deliveries, 0 attempts)"),
        "{stderr}"
    );
    assert!(stderr.contains("no row was written"), "{stderr}");
    assert!(text(&output.stdout).is_empty());
    assert_eq!(Snapshot::of(target).await, before);
}

#[tokio::test]
async fn copy_refuses_a_sqlite_target_with_rows_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    a_target_with_rows_is_refused(&sqlite_url(&dir, "target.db")).await;
}

#[tokio::test]
async fn copy_refuses_a_postgresql_target_with_rows_and_writes_nothing() {
    let Some(schema) =
        crate::postgres::fresh_schema("copy-store into a PostgreSQL with rows").await
    else {
        return;
    };
    a_target_with_rows_is_refused(&schema.store_url()).await;
}

/// A copy that fails while it writes (here the target refuses its attempts) leaves the
/// target without a row, and says so.
#[tokio::test]
async fn copy_that_fails_while_writing_leaves_the_target_without_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (sqlite_url(&dir, "source.db"), sqlite_url(&dir, "target.db"));
    small_source(&source).await;
    drop(storehook::store::open(&target).await.unwrap());
    SqliteFaults::open(&dir.path().join("target.db")).refuse_inserts("attempts");

    let output = copy_store(&["--from", &source, "--to", &target]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("inserts into attempts refused by the test"),
        "{stderr}"
    );
    assert!(stderr.contains("no row was written"), "{stderr}");
    let after = Snapshot::of(&target).await;
    assert!(
        after.webhooks.is_empty() && after.deliveries.is_empty(),
        "{after:?}"
    );
}

/// The real binary serving the source: the copy is refused, naming the instance, until
/// `--allow-running-source`; once the instance has stopped cleanly, it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_refuses_a_source_a_running_serve_uses_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_url(&dir, "source.db");
    let (_legion, legion_url) = Double::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = crate::crash::start(dir.path(), port, &source, &legion_url);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    crate::crash::wait_healthy(&client, &base).await;
    let (headers, body) = crate::crash::order(1);
    let mut request = client.post(format!("{base}/webhooks/haravan")).body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);

    let refused_target = dir.path().join("refused.db");
    let refused = format!("sqlite://{}", refused_target.display());
    let output = copy_store(&["--from", &source, "--to", &refused]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is in use by a running storehook serve"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("pid {}", child.id())), "{stderr}");
    assert!(stderr.contains("--allow-running-source"), "{stderr}");
    assert!(!refused_target.exists(), "the target is not touched");

    let allowed = sqlite_url(&dir, "allowed.db");
    let output = copy_store(&[
        "--from",
        &source,
        "--to",
        &allowed,
        "--allow-running-source",
    ]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("copied 1 webhooks, "), "{stdout}");
    assert!(
        stderr.contains("copied while the source was in use by instance"),
        "{stderr}"
    );
    assert_eq!(Snapshot::of(&allowed).await.webhooks.len(), 1);

    // A clean stop removes the instance's heartbeat.
    crate::cli::stop(child);
    let stdout = copied(&source, &sqlite_url(&dir, "after-stop.db"));
    assert!(stdout.starts_with("copied 1 webhooks, "), "{stdout}");
}
