//! The real binary: `send` and `sign` against a running server, `serve` on the embedded
//! defaults, and a bad configuration stopping it with the key named.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

pub fn storehook(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_storehook"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

pub fn shipped_config() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("storehook.toml")
}

/// Multi-threaded: the test waits for the child process while the app serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_signs_a_fixture_like_the_platform_and_prints_the_answer() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    for platform in PLATFORMS {
        let fixture = fixture(platform, "local-phone-click-id");
        let output = storehook(dir.path())
            .arg("--config")
            .arg(shipped_config())
            .args([
                "send",
                fixture.path.to_str().unwrap(),
                "--source",
                platform,
                "--url",
            ])
            .arg(app.webhook_url(platform))
            .env(
                format!("{}_WEBHOOK_SECRET", platform.to_uppercase()),
                secret_of(platform),
            )
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.starts_with("HTTP 200"), "{stdout}");
        assert!(stdout.contains("\"webhook_id\""), "{stdout}");
    }
    let inbox = app.inbox().await;
    assert_eq!(inbox.len(), 3);
    assert_eq!(
        inbox[0].body,
        fixture("haravan", "local-phone-click-id").body
    );

    // A wrong secret: the server's 401 is printed and the exit status says it failed.
    let fixture = fixture("shopify", "guest-no-customer");
    let output = storehook(dir.path())
        .arg("--config")
        .arg(shipped_config())
        .args([
            "send",
            fixture.path.to_str().unwrap(),
            "--source",
            "shopify",
            "--url",
        ])
        .arg(app.webhook_url("shopify"))
        .env("SHOPIFY_WEBHOOK_SECRET", "not-the-secret")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("HTTP 401"), "{stdout}");
    assert!(stdout.contains("invalid_signature"), "{stdout}");
}

#[test]
fn sign_prints_the_headers_with_a_fresh_signature() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixture("woocommerce", "paid-two-items-discount");
    let output = storehook(dir.path())
        .arg("--config")
        .arg(shipped_config())
        .args([
            "sign",
            fixture.path.to_str().unwrap(),
            "--source",
            "woocommerce",
            "--topic",
            "order.updated",
        ])
        .env("WOOCOMMERCE_WEBHOOK_SECRET", "sign-test-secret")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let expected = format!(
        "X-WC-Webhook-Signature: {}",
        platform_signature("sign-test-secret", &fixture.body)
    );
    assert!(stdout.lines().any(|l| l == expected), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "X-WC-Webhook-Topic: order.updated"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("X-WC-Webhook-Signature").count(),
        1,
        "{stdout}"
    );
    assert!(!stdout.contains("sign-test-secret"));
}

#[test]
fn sign_without_a_secret_says_which_variable_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixture("haravan", "paid-two-items-discount");
    let output = storehook(dir.path())
        .args([
            "sign",
            fixture.path.to_str().unwrap(),
            "--source",
            "haravan",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HARAVAN_WEBHOOK_SECRET"), "{stderr}");
}

#[test]
fn a_bad_configuration_stops_the_program_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"0.0.0.0:8080\"\n[store]\nurl = \"sqlite://x.db\"\n\
         [sources.shop]\nplatform = \"shopify\"\nsecrets = [\"${SHOP_SECRET}\"]\n",
    )
    .unwrap();
    let output = storehook(dir.path())
        .args(["--config", "bad.toml", "serve"])
        .env("SHOP_SECRET", "")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("sources.shop.secrets[0]"), "{stderr}");
    assert!(!dir.path().join("x.db").exists(), "nothing started");
}

/// `storehook serve` started by `command` on a free port; the child, its log lines as they
/// come, the lines up to the one with its address, and its port.
pub fn serve(
    mut command: Command,
) -> (Process, std::sync::mpsc::Receiver<String>, Vec<String>, u16) {
    let mut child = command
        .arg("serve")
        .env("PORT", "0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let port = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server logs its address");
        log.push(line.clone());
        // `address=127.0.0.1:PORT` in text, `"address":"127.0.0.1:PORT"` in JSON
        if let Some(rest) = line
            .split("address=")
            .nth(1)
            .or_else(|| line.split("\"address\":\"").nth(1))
        {
            let digits: String = rest
                .split(':')
                .nth(1)
                .unwrap()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            break digits.parse::<u16>().unwrap();
        }
    };
    (Process(child), rx, log, port)
}

/// Stops a `serve` child with SIGTERM; it must exit cleanly.
pub fn stop(mut child: Process) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
}

/// `storehook serve` in an empty directory: the embedded configuration, the default store
/// path created, every source reported not configured, and a clean stop on SIGTERM.
#[tokio::test]
async fn serve_runs_on_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (child, rx, log, port) = serve(storehook(dir.path()));
    let text = log.join("\n");
    assert!(text.contains("embedded storehook.toml"), "{text}");
    for variable in [
        "HARAVAN_WEBHOOK_SECRET",
        "WOOCOMMERCE_WEBHOOK_SECRET",
        "SHOPIFY_WEBHOOK_SECRET",
    ] {
        assert!(text.contains(variable), "the log says what to set: {text}");
    }
    assert!(dir.path().join("data/storehook.db").exists());

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let fixture = fixture("shopify", "paid-two-items-discount");
    let r = client
        .post(format!("{base}/webhooks/shopify"))
        .body(fixture.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "source_not_configured");
    // The refusal's log line reaches stderr while the server runs: the log thread writes its
    // buffer whenever no more lines are waiting, not when it is full or at the stop.
    let refused = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the refusal is logged while the server runs");
        if line.contains("webhook refused") {
            break line;
        }
    };
    assert!(
        refused.contains("code=\"source_not_configured\""),
        "{refused}"
    );
    assert!(refused.contains("source=\"shopify\""), "{refused}");
    stop(child);
}

/// Even at the debug level, a request's log lines name its path, not its query: Haravan's
/// subscription handshake carries the verify token in the query. And what a request says
/// is quoted in the log, so it never starts a line of its own.
#[tokio::test]
async fn the_debug_log_never_shows_the_handshake_token_nor_a_line_a_request_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = storehook(dir.path());
    command
        .env("RUST_LOG", "debug")
        .env("HARAVAN_VERIFY_TOKEN", "tok-b8f3e1")
        .env("HARAVAN_WEBHOOK_SECRET", "whs-0c4d2a");
    let (child, rx, mut log, port) = serve(command);
    let url = format!(
        "http://127.0.0.1:{port}/webhooks/haravan?hub.mode=subscribe&hub.verify_token=tok-b8f3e1&hub.challenge=c-17"
    );
    let answer = reqwest::get(url).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "c-17");
    let forged = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{port}/webhooks/shop%0A2026-01-01T00:00:00Z%20INFO%20forged"
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    // The requests' own debug lines, as tower-http writes them.
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the request is logged at debug");
        log.push(line.clone());
        if line.contains("finished processing request") && line.contains("status=404") {
            break;
        }
    }
    stop(child);
    log.extend(rx.try_iter());
    let text = log.join("\n");
    assert!(text.contains("/webhooks/haravan"), "{text}");
    assert!(!text.contains("tok-b8f3e1"), "{text}");
    assert!(!text.contains("whs-0c4d2a"), "{text}");
    assert!(text.contains("code=\"unknown_source\""), "{text}");
    assert!(
        log.iter().all(|line| !line.starts_with("2026-01-01")),
        "{text}"
    );
}

fn shipped_haravan_legion() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("mappings/haravan/legion-purchase.toml")).unwrap()
}

/// `storehook check` over a mappings directory in `dir` that holds only `mapping` as the
/// Haravan Legion mapping, with the repository's fixtures and configuration.
fn check_haravan_legion(dir: &Path, mapping: &str) -> std::process::Output {
    let mappings = dir.join("mappings");
    std::fs::create_dir_all(mappings.join("haravan")).unwrap();
    std::fs::write(mappings.join("haravan/legion-purchase.toml"), mapping).unwrap();
    storehook(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(["check", "--mappings"])
        .arg(&mappings)
        .output()
        .unwrap()
}

#[test]
fn check_passes_on_the_shipped_mappings_and_fails_on_a_broken_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = storehook(root).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("12 mappings, 25 fixtures"), "{stdout}");
    assert!(stdout.contains(" 0 errors"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let shipped = shipped_haravan_legion();
    // `check` over the shipped Haravan Legion mapping with its paid-price field replaced
    let check_with_paid_price = |code: &str| {
        check_haravan_legion(
            dir.path(),
            &shipped.replace(
                "'in_currency(.total_price; .currency; $vars.legion_currency)'",
                code,
            ),
        )
    };
    let output = check_with_paid_price("'.total_price | mony'");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("legion-purchase.toml:"), "{stderr}");
    assert!(
        stderr.contains("output.payload.order_paid_price"),
        "{stderr}"
    );
    assert!(stderr.contains(".total_price | mony"), "{stderr}");

    // any jq works in a mapping: a `try … catch` field passes check and translates to what
    // the shipped field gives
    let output = check_with_paid_price(
        "'try in_currency(.total_price; .currency; $vars.legion_currency) catch 0'",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(" 0 errors"), "{stdout}");
    let legion_payload = |mappings: &Path| {
        let output = storehook(root)
            .args([
                "translate",
                "fixtures/haravan/paid-two-items-discount.json",
                "--mappings",
            ])
            .arg(mappings)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let plans: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let legion = plans
            .as_array()
            .unwrap()
            .iter()
            .find(|plan| plan["mapping"] == "haravan/legion-purchase");
        legion.expect("a Legion plan")["payload"].clone()
    };
    let tried = legion_payload(&dir.path().join("mappings"));
    assert_eq!(tried, legion_payload(&root.join("mappings")));
    assert!(tried["payload"]["order_paid_price"].is_number(), "{tried}");
}

#[test]
fn translate_prints_the_plans_as_a_json_array() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = storehook(root)
        .args([
            "translate",
            "fixtures/woocommerce/local-phone-click-id.json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plans: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let operations: Vec<&str> = plans
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        [
            "legion.purchase_event",
            "salekit.upsert_audience",
            "scalef.create_conversion"
        ]
    );
    // Another topic given on the command line: the status update applies, nothing else.
    let output = storehook(root)
        .args([
            "translate",
            "fixtures/woocommerce/cancelled-refunded.json",
            "--topic",
            "order.created",
        ])
        .output()
        .unwrap();
    let plans: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plans, serde_json::json!([]));
}

/// Output into a pipe whose reader is gone (`storehook … | head`): the command ends quietly,
/// with success, instead of panicking on the closed pipe.
#[test]
fn a_closed_pipe_ends_the_output_quietly_with_success() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for args in [
        &["translate", "fixtures/haravan/paid-two-items-discount.json"][..],
        &["check"][..],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = storehook(root)
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `check` checks the configuration with the mappings: a mapping whose destination is not
/// configured, or whose destination cannot perform its operation, is an error naming the
/// file; a configuration that does not load is one too. Each exits 1, as any error does.
#[test]
fn check_catches_a_destination_the_configuration_lacks_and_exits_1_on_any_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let shipped = shipped_haravan_legion();
    let check = |mapping: &str| check_haravan_legion(dir.path(), mapping);
    let output = check(&shipped.replace("destination = \"legion\"", "destination = \"loyalty\""));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("legion-purchase.toml: destination `loyalty` is not configured"),
        "{stderr}"
    );
    let output = check(&shipped.replace("destination = \"legion\"", "destination = \"salekit\""));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "destination `salekit` is a salekit destination, which does not perform legion.purchase_event"
        ),
        "{stderr}"
    );
    let output = check(&shipped);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // `check` run on a configuration file holding `text`.
    let bad = dir.path().join("bad.toml");
    let check_config = |text: &str| {
        std::fs::write(&bad, text).unwrap();
        storehook(root)
            .arg("--config")
            .arg(&bad)
            .arg("check")
            .output()
            .unwrap()
    };
    let output = check_config("[server]\nlisten = \"nowhere\"\n[store]\nurl = \"sqlite://x.db\"\n");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.listen"), "{stderr}");

    // A destination kind misspelt, or a key its kind does not take: the key is named.
    let shipped_config = std::fs::read_to_string(root.join("storehook.toml")).unwrap();
    for (from, to, key) in [
        (
            "kind = \"salekit\"",
            "kind = \"salekits\"",
            "destinations.salekit.kind",
        ),
        (
            "rate_limit_per_second = 5",
            "rate_limit_per_second = 5\nsettings = { list_id = \"7\" }",
            "destinations.salekit.settings.list_id",
        ),
    ] {
        let output = check_config(&shipped_config.replace(from, to));
        assert_eq!(output.status.code(), Some(1), "{key}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{stderr}");
    }
}

/// `SIGHUP` loads the mappings directory again: a new mapping is live for the next webhook;
/// a broken file leaves the catalog in force, and the log says which and how many are live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_mappings_and_a_broken_file_keeps_the_ones_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    std::fs::create_dir_all(mappings.join("haravan")).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/haravan");
    std::fs::copy(
        shipped.join("legion-purchase.toml"),
        mappings.join("haravan/legion-purchase.toml"),
    )
    .unwrap();
    let mut command = storehook(dir.path());
    command
        .env("HARAVAN_WEBHOOK_SECRET", secret_of("haravan"))
        .env("STOREHOOK_MAPPINGS_DIR", &mappings);
    let (child, rx, log, port) = serve(command);
    assert!(
        log.iter()
            .any(|line| line.contains("mappings loaded; 1 live")),
        "{log:?}"
    );
    let fixture = fixture("haravan", "paid-two-items-discount");
    let post = |order_id: u64| {
        let mut order: serde_json::Value = serde_json::from_slice(&fixture.body).unwrap();
        order["id"] = order_id.into();
        let body = serde_json::to_vec(&order).unwrap();
        let mut request = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/webhooks/haravan"))
            .header(
                signature_header("haravan"),
                platform_signature(secret_of("haravan"), &body),
            )
            .body(body);
        for (name, value) in recorded_headers_without_signature(&fixture) {
            if !name.eq_ignore_ascii_case("x-haravan-webhook-id") {
                request = request.header(name, value);
            }
        }
        async move {
            let answer: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            answer["deliveries"].as_u64().expect("stored")
        }
    };
    let hang_up = || {
        let sent = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let wait_for_log = |says: &str| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the log says `{says}`"));
        if line.contains(says) {
            break line;
        }
    };
    assert_eq!(post(7_100_001).await, 1, "the Legion event only");

    std::fs::copy(
        shipped.join("salekit-audience.toml"),
        mappings.join("haravan/salekit-audience.toml"),
    )
    .unwrap();
    hang_up();
    wait_for_log("mappings reloaded; 2 live");
    assert_eq!(post(7_100_002).await, 2, "the new mapping is live");

    std::fs::write(
        mappings.join("haravan/broken.toml"),
        "description = \"half written\"\nplatform = ",
    )
    .unwrap();
    hang_up();
    let line = wait_for_log("mappings not reloaded");
    assert!(
        line.contains("broken.toml") && line.contains("count=2"),
        "{line}"
    );
    assert_eq!(post(7_100_003).await, 2, "the catalog in force stays");
    stop(child);
}
