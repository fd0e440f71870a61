//! The log of a real run, text and JSON, at `debug`: every recorded webhook sent, signed, with
//! every secret and credential and the admin token configured, to destinations that refuse
//! each request quoting it back (its credential headers too) beside a buyer's phone and
//! e-mail address; the admin API called with the token and with a wrong one, a replay and a
//! cancel made through it. No secret, token, signature, phone number or e-mail address
//! appears in clear, and every line about a webhook or a delivery names it.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::{serve, stop, storehook};
use crate::doubles::{Answer, Double, Received};
use crate::harness::*;

/// The credentials the destinations are configured with.
const CREDENTIALS: [(&str, &str); 4] = [
    ("LEGION_API_KEY", "legion-key-3f9a1c"),
    ("SCALEF_USER", "scalef-user-7d2e"),
    ("SCALEF_ACCESS_TOKEN", "scalef-token-a81b"),
    ("SALEKIT_TOKEN", "salekit-token-55c0"),
];

/// The admin token the run is configured with, and one that is not it.
const ADMIN_TOKEN: &str = "admin-token-5be7d1c4e2";
const WRONG_TOKEN: &str = "admin-token-wrong-0a9f3";

/// What every destination's refusal quotes besides the request: a buyer's phone and e-mail
/// address, and the forms the log shows them in.
const ANSWER_PHONE: &str = "0987 001 234";
const ANSWER_PHONE_MASKED: &str = "09******34";
const ANSWER_EMAIL: &str = "minh.tran@example.vn";
const ANSWER_EMAIL_MASKED: &str = "m***@example.vn";

/// A destination's refusal: a 422 whose body quotes a buyer's phone and e-mail address, every
/// header of the request (its credential among them) and its body, in that order (the
/// excerpt kept of an answer is its first 2 KiB).
fn refusal(request: &Received) -> Answer {
    let headers: serde_json::Map<String, Value> = request
        .headers
        .iter()
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or_default().to_string();
            (name.to_string(), Value::String(value))
        })
        .collect();
    let body = format!(
        r#"{{"message":"call the buyer on {ANSWER_PHONE} or write to {ANSWER_EMAIL}","headers":{},"request":{}}}"#,
        Value::Object(headers),
        request.body
    );
    (422, vec![], body)
}

/// The admin API of a run, with a token.
struct Api {
    client: reqwest::Client,
    base: String,
    token: &'static str,
}

impl Api {
    async fn get(&self, path: &str) -> (u16, String) {
        let answer = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token)
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let answer = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The deliveries with `status` (a page of up to 500).
    async fn deliveries(&self, status: &str) -> Vec<Value> {
        let (code, text) = self
            .get(&format!("/api/deliveries?status={status}&limit=500"))
            .await;
        assert_eq!(code, 200, "{text}");
        let page: Value = serde_json::from_str(&text).unwrap();
        page["items"].as_array().unwrap().clone()
    }

    /// Until every delivery has had its answer: nothing pending or in flight any more.
    async fn wait_until_answered(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut open = 0;
            for status in ["pending", "in_flight"] {
                open += self.deliveries(status).await.len();
            }
            if open == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "deliveries still open: {open}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

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
    let (double, url) = Double::start_with(refusal).await;
    let dir = tempfile::tempdir().unwrap();
    let mut command: Command = storehook(dir.path());
    command
        .arg("--config")
        .arg(crate::cli::shipped_config())
        .envs(test_env(dir.path()))
        .envs(CREDENTIALS)
        .env("STOREHOOK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("LEGION_BASE_URL", &url)
        .env("SCALEF_BASE_URL", &url)
        .env("SALEKIT_BASE_URL", &url)
        .env("RUST_LOG", "debug")
        .env("STOREHOOK_LOG_FORMAT", format);
    let (child, rx, mut log, port) = serve(command);
    let running = child;

    let client = reqwest::Client::new();
    let mut sent = 0;
    // Every signature sent: none may be logged.
    let mut signatures = Vec::new();
    for platform in PLATFORMS {
        for fixture in fixtures(platform) {
            let source = fixture
                .source
                .clone()
                .unwrap_or_else(|| platform.to_string());
            let signature = platform_signature(secret_of(&source), &fixture.body);
            let mut request = client
                .post(format!("http://127.0.0.1:{port}/webhooks/{source}"))
                .header(signature_header(platform), &signature)
                .body(fixture.body.clone());
            for (name, value) in recorded_headers_without_signature(&fixture) {
                request = request.header(name, value);
            }
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200, "{}", fixture.path.display());
            signatures.push(signature);
            sent += 1;
        }
    }
    // One signed with a wrong secret: refused, nothing stored.
    let forged = fixture("haravan", "paid-two-items-discount");
    let wrong_signature = platform_signature("not-the-haravan-secret", &forged.body);
    let mut request = client
        .post(format!("http://127.0.0.1:{port}/webhooks/haravan"))
        .header(signature_header("haravan"), &wrong_signature)
        .body(forged.body.clone());
    for (name, value) in recorded_headers_without_signature(&forged) {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 401);
    signatures.push(wrong_signature);

    let base = format!("http://127.0.0.1:{port}");
    let wrong = Api {
        client: client.clone(),
        base: base.clone(),
        token: WRONG_TOKEN,
    };
    assert_eq!(wrong.get("/api/deliveries").await.0, 401);
    let api = Api {
        client: client.clone(),
        base,
        token: ADMIN_TOKEN,
    };
    api.wait_until_answered().await;
    assert!(
        !double.received().is_empty(),
        "the destinations were called"
    );

    // A replay of one dead delivery, answered (refused) again; then a cancel of every dead
    // one. Their lines name what they touched.
    let dead = api.deliveries("dead").await;
    assert!(!dead.is_empty(), "every refusal is dead");
    let replayed = &dead[0];
    let replayed_id = replayed["id"].as_i64().unwrap();
    let done = api
        .post("/api/deliveries/replay", json!({ "ids": [replayed_id] }))
        .await;
    assert_eq!(done["requeued"], 1, "{done}");
    api.wait_until_answered().await;
    let done = api
        .post(
            "/api/deliveries/cancel",
            json!({ "filter": { "status": "dead" } }),
        )
        .await;
    assert!(done["cancelled"].as_u64().unwrap() >= 1, "{done}");

    // The excerpts stored, as the admin API and the CLI show them: the credentials the
    // destinations quoted are redacted there too.
    let (code, detail) = api.get(&format!("/api/deliveries/{replayed_id}")).await;
    assert_eq!(code, 200, "{detail}");
    let listed = storehook(dir.path())
        .arg("--config")
        .arg(crate::cli::shipped_config())
        .envs(test_env(dir.path()))
        .args(["deliveries", "--json", "--status", "cancelled"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8(listed.stdout).unwrap();
    for (shown, by) in [(&detail, "admin API"), (&listed, "storehook deliveries")] {
        assert!(
            shown.contains("[redacted]"),
            "the quoted credential redacted, shown by {by}: {shown}"
        );
        for (_, credential) in CREDENTIALS {
            assert!(
                !shown.contains(credential),
                "{credential} in clear, shown by {by}: {shown}"
            );
        }
    }

    stop(running);
    log.extend(rx.try_iter());
    let text = log.join("\n");

    assert!(sent >= 20, "every fixture sent: {sent}");
    // The destinations' refusals are logged with what they quoted: the phone and the
    // e-mail address masked, the credentials redacted.
    assert!(
        log.iter().any(|line| line.contains("HTTP 422")
            && line.contains(ANSWER_PHONE_MASKED)
            && line.contains(ANSWER_EMAIL_MASKED)
            && line.contains("[redacted]")),
        "no refusal logged with its excerpt masked: {text}"
    );
    let answer_phone_digits: String = ANSWER_PHONE.split(' ').collect();
    for clear in [ANSWER_PHONE, &answer_phone_digits, ANSWER_EMAIL] {
        assert!(
            !text.contains(clear),
            "{clear:?} of a destination's answer in clear in the {format} log"
        );
    }
    let mut secrets: Vec<String> = CREDENTIALS.iter().map(|(_, v)| v.to_string()).collect();
    secrets.extend(
        test_env(dir.path())
            .into_iter()
            .filter_map(|(name, value)| {
                (name.ends_with("_SECRET") || name.ends_with("_TOKEN")).then_some(value)
            }),
    );
    secrets.extend([ADMIN_TOKEN, WRONG_TOKEN].map(String::from));
    secrets.extend(signatures);
    for secret in secrets {
        assert!(
            !text.contains(&secret),
            "a secret in the {format} log: {secret}"
        );
    }
    // The replay's line names the delivery it requeued, its mapping and its destination.
    let replay_line = log
        .iter()
        .find(|line| line.contains("admin API: deliveries replayed"))
        .expect("the replay is logged");
    for name in ["mapping", "destination"] {
        let value = replayed[name].as_str().unwrap();
        assert!(
            replay_line.contains(value),
            "the replay's line without its {name} {value}: {replay_line}"
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

/// The rules every JSON line follows, each field of its own or of one of its spans (the
/// worker's names the destination):
///
/// - A line about a webhook names it: its `webhook_id`, `source` and `topic`. A line is
///   about a webhook when it has any of `webhook_id`, or both `source` and `topic` (the topic
///   is read once the signature is verified, and every line that has it is written once the
///   webhook is stored, with its id), or a `source` and a message that speaks of a webhook.
///   Except a refusal: answered with an error `status` (4xx, 5xx), nothing was stored, so
///   there is no id nor a vouched-for topic; it names the `source` (and the platform's own
///   `delivery_id` of the request, `-` when it sent none).
/// - A line about deliveries names their ids, their `mappings` and their `destination` (or,
///   for an operator's action over several, their `destinations`). A line is about
///   deliveries when its `deliveries` is a list of ids (written `[1, 2]`; on the line of a
///   webhook accepted it is a count, and a webhook's `delivery_id` is the platform's id of
///   the request, not a delivery of ours), or when it is an operator's replay or cancel
///   (`action`), whose `deliveries` are those it touched.
///
/// Each kind is there: a line per webhook sent at least, a refusal, the deliveries'
/// refusals, and the operator's replay and cancel, each naming a mapping and a destination.
fn every_line_names_its_webhook_or_delivery(log: &[String], sent: usize) {
    let (mut about_webhooks, mut refusals, mut about_deliveries) = (0, 0, 0);
    let mut actions = BTreeSet::new();
    for line in log {
        let Ok(line_json) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = &line_json["fields"];
        let field = |name: &str| -> Option<&Value> {
            Some(&fields[name])
                .filter(|value| !value.is_null())
                .or_else(|| {
                    line_json["spans"]
                        .as_array()?
                        .iter()
                        .map(|span| &span[name])
                        .find(|value| !value.is_null())
                })
        };
        let has = |name: &str| field(name).is_some();
        let message = fields["message"].as_str().unwrap_or_default();
        let refused = field("status")
            .and_then(Value::as_u64)
            .is_some_and(|status| status >= 400);
        let about_a_webhook = has("webhook_id")
            || (has("source") && has("topic"))
            || (has("source") && message.to_lowercase().contains("webhook"));
        if about_a_webhook && refused && !has("webhook_id") {
            refusals += 1;
            assert!(
                has("source") && !has("topic"),
                "a refusal names its source, and no topic: {line}"
            );
        } else if about_a_webhook {
            about_webhooks += 1;
            for name in ["webhook_id", "source", "topic"] {
                assert!(
                    has(name),
                    "a line about a webhook without its {name}: {line}"
                );
            }
        }

        let action = fields["action"].as_str().unwrap_or_default();
        let operator = matches!(action, "replay" | "cancel");
        let listed = fields["deliveries"]
            .as_str()
            .is_some_and(|ids| ids.starts_with('['));
        if listed || operator {
            about_deliveries += 1;
            assert!(
                listed,
                "an operator's {action} without its deliveries: {line}"
            );
            assert!(
                has("mappings"),
                "a line about deliveries without its mappings: {line}"
            );
            assert!(
                has("destination") || has("destinations"),
                "a line about deliveries without its destination: {line}"
            );
        }
        if operator {
            for name in ["mappings", "destinations"] {
                let named = field(name).and_then(Value::as_str).unwrap_or_default();
                assert!(
                    named.contains('"'),
                    "an operator's {action} that names no {name}: {line}"
                );
            }
            actions.insert(action.to_string());
        }
    }
    assert!(
        about_webhooks >= sent,
        "{about_webhooks} lines name a webhook, {sent} were sent"
    );
    assert!(refusals > 0, "no refusal logged");
    assert!(about_deliveries > 0, "no line names a delivery");
    assert_eq!(
        actions,
        BTreeSet::from(["cancel".to_string(), "replay".to_string()]),
        "the operator's replay and cancel are logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_log_shows_no_secret_phone_or_email() {
    a_run_logs_no_secret_nor_personal_data("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_log_shows_no_secret_phone_or_email() {
    a_run_logs_no_secret_nor_personal_data("json").await;
}
