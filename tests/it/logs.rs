//! The log of a real run, text and JSON, at `debug`: every recorded webhook sent, signed, with
//! every secret and credential configured, to destinations that refuse each request quoting
//! it back. No secret, phone number or e-mail address of the fixtures appears in clear.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{serve, stop, storehook};
use crate::doubles::Double;
use crate::harness::*;

/// The credentials the destinations are configured with.
const CREDENTIALS: [(&str, &str); 4] = [
    ("LEGION_API_KEY", "legion-key-3f9a1c"),
    ("SCALEF_USER", "scalef-user-7d2e"),
    ("SCALEF_ACCESS_TOKEN", "scalef-token-a81b"),
    ("SALEKIT_TOKEN", "salekit-token-55c0"),
];

/// Every phone and e-mail the fixtures hold (fields named so, at any depth, and WooCommerce's
/// `meta_data` values of such keys), as written and in the forms the mappings send them in.
fn personal_data() -> BTreeSet<String> {
    fn walk(value: &Value, key: &str, found: &mut BTreeSet<String>) {
        match value {
            Value::Object(fields) => {
                let meta_key = fields
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                for (name, value) in fields {
                    let name = if name == "value" { meta_key } else { name };
                    walk(value, name, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, key, found)),
            Value::String(text) if !text.trim().is_empty() => {
                let key = key.to_lowercase();
                if key.contains("phone") || key.contains("mobile") {
                    found.insert(text.clone());
                    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
                    if digits.len() >= 9 {
                        // with and without the country code or trunk zero
                        found.insert(digits.clone());
                        found.insert(digits[digits.len() - 9..].to_string());
                    }
                } else if key.contains("email") && text.contains('@') {
                    found.insert(text.clone());
                }
            }
            _ => {}
        }
    }
    let mut found = BTreeSet::new();
    for platform in PLATFORMS {
        for fixture in fixtures(platform) {
            let body: Value = serde_json::from_slice(&fixture.body).unwrap();
            walk(&body, "", &mut found);
        }
    }
    found
}

async fn a_run_logs_no_secret_nor_personal_data(format: &str) {
    // Every destination refuses with a 422 quoting the request it got.
    let (double, url) = Double::start_with(|request| (422, vec![], request.body.to_string())).await;
    let dir = tempfile::tempdir().unwrap();
    let mut command: Command = storehook(dir.path());
    command
        .arg("--config")
        .arg(crate::cli::shipped_config())
        .envs(test_env(dir.path()))
        .envs(CREDENTIALS)
        .env("LEGION_BASE_URL", &url)
        .env("SCALEF_BASE_URL", &url)
        .env("SALEKIT_BASE_URL", &url)
        .env("RUST_LOG", "debug")
        .env("STOREHOOK_LOG_FORMAT", format);
    let (child, rx, mut log, port) = serve(command);

    let client = reqwest::Client::new();
    let mut sent = 0;
    for platform in PLATFORMS {
        for fixture in fixtures(platform) {
            let source = fixture
                .source
                .clone()
                .unwrap_or_else(|| platform.to_string());
            let mut request = client
                .post(format!("http://127.0.0.1:{port}/webhooks/{source}"))
                .header(
                    signature_header(platform),
                    platform_signature(secret_of(&source), &fixture.body),
                )
                .body(fixture.body.clone());
            for (name, value) in recorded_headers_without_signature(&fixture) {
                request = request.header(name, value);
            }
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200, "{}", fixture.path.display());
            sent += 1;
        }
    }
    // Until every delivery has had its answer: nothing pending or in flight any more.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open: usize = ["pending", "in_flight"]
            .into_iter()
            .map(|status| {
                let output = storehook(dir.path())
                    .arg("--config")
                    .arg(crate::cli::shipped_config())
                    .envs(test_env(dir.path()))
                    .args(["deliveries", "--json", "--status", status])
                    .output()
                    .unwrap();
                assert!(output.status.success(), "{output:?}");
                let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
                listed.as_array().map_or(0, Vec::len)
            })
            .sum();
        if open == 0 && !double.received().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries still open: {open}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(child);
    log.extend(rx.try_iter());
    let text = log.join("\n");

    assert!(sent >= 20, "every fixture sent: {sent}");
    assert!(
        text.contains("422"),
        "the refusals are logged, with what they quoted: {text}"
    );
    let mut secrets: Vec<String> = CREDENTIALS.iter().map(|(_, v)| v.to_string()).collect();
    secrets.extend(
        test_env(dir.path())
            .into_iter()
            .filter_map(|(name, value)| {
                (name.ends_with("_SECRET") || name.ends_with("_TOKEN")).then_some(value)
            }),
    );
    for secret in secrets {
        assert!(
            !text.contains(&secret),
            "a secret in the {format} log: {secret}"
        );
    }
    if format == "json" {
        every_line_names_its_webhook_or_delivery(&log, sent);
    }
    let personal = personal_data();
    assert!(personal.len() >= 10, "{personal:?}");
    for value in personal {
        for line in &log {
            assert!(
                !line.contains(&value),
                "{value:?} in clear in the {format} log:\n{line}"
            );
        }
    }
}

/// Every JSON line about a webhook (one with a `webhook_id`) names its source and topic too;
/// every line about deliveries names them, their mappings and their destination (a field of
/// its own or of the worker's span). Each kind is there: a line per webhook sent at least,
/// and the deliveries' refusals.
fn every_line_names_its_webhook_or_delivery(log: &[String], sent: usize) {
    let (mut about_webhooks, mut about_deliveries) = (0, 0);
    for line in log {
        let Ok(line_json) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = &line_json["fields"];
        let has = |name: &str| {
            !fields[name].is_null()
                || line_json["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|span| !span[name].is_null()))
        };
        if has("webhook_id") {
            about_webhooks += 1;
            for name in ["source", "topic"] {
                assert!(
                    has(name),
                    "a line about a webhook without its {name}: {line}"
                );
            }
        }
        // `deliveries` is a list of ids (written `[1, 2]`), or a count (on the line of a
        // webhook accepted).
        if fields["deliveries"]
            .as_str()
            .is_some_and(|ids| ids.starts_with('['))
        {
            about_deliveries += 1;
            for name in ["destination", "mappings"] {
                assert!(
                    has(name),
                    "a line about deliveries without its {name}: {line}"
                );
            }
        }
    }
    assert!(
        about_webhooks >= sent,
        "{about_webhooks} lines name a webhook, {sent} were sent"
    );
    assert!(about_deliveries > 0, "no line names a delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_log_shows_no_secret_phone_or_email() {
    a_run_logs_no_secret_nor_personal_data("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_log_shows_no_secret_phone_or_email() {
    a_run_logs_no_secret_nor_personal_data("json").await;
}
