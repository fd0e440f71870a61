//! `storehook webhooks`, `webhook ID` and `delivery ID` through the real binary, against a
//! running app's store: what an operator sees of what happened.

use std::process::Output;

use serde_json::Value;

use crate::doubles::Double;
use crate::harness::*;

/// The legion credential the app and the CLI are given; no output may show it.
const LEGION_KEY: &str = "legion-key-never-shown";

/// Runs the `storehook` binary on `app`'s store with the shipped mappings, the shipped
/// configuration and `env`.
fn run(app: &TestApp, env: &[(&str, &str)], args: &[&str]) -> Output {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::process::Command::new(env!("CARGO_BIN_EXE_storehook"))
        .current_dir(root)
        .env_clear()
        .env(
            "STOREHOOK_STORE_URL",
            format!("sqlite://{}", app.db_path.display()),
        )
        .env("STOREHOOK_MAPPINGS_DIR", root.join("mappings"))
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

/// The stdout of a run that must succeed.
fn stdout_of(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn json_out(output: &Output) -> Value {
    let stdout = stdout_of(output);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Posts a Shopify order under a topic no mapping takes: stored `untranslated`.
async fn post_untranslated(app: &TestApp) -> i64 {
    let fixture = fixture("shopify", "paid-two-items-discount");
    let mut headers = signed_headers(&fixture, &fixture.body, secret_of("shopify"));
    set_header(&mut headers, "X-Shopify-Topic", Some("customers/create"));
    let answer = json_of(
        app.post_raw("shopify", &headers, fixture.body.clone())
            .await,
    )
    .await;
    answer["webhook_id"].as_i64().unwrap()
}

async fn post(app: &TestApp, platform: &str, name: &str) -> i64 {
    let answer = json_of(
        app.post_fixture(platform, &fixture(platform, name), secret_of(platform))
            .await,
    )
    .await;
    answer["webhook_id"].as_i64().unwrap()
}

fn ids(listed: &Value) -> Vec<i64> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_lists_newest_first_with_counts_and_filters() {
    let app = spawn_app().await;
    let paid = post(&app, "haravan", "local-phone-click-id").await;
    let untranslated = post_untranslated(&app).await;
    let cancelled = post(&app, "shopify", "cancelled-refunded").await;

    let all = json_out(&run(&app, &[], &["webhooks", "--json"]));
    assert_eq!(ids(&all), [cancelled, untranslated, paid], "newest first");
    let first = &all[2];
    assert_eq!(
        (&first["source"], &first["topic"], &first["status"]),
        (
            &Value::from("haravan"),
            &Value::from("orders/paid"),
            &Value::from("translated")
        )
    );
    assert_eq!(
        (&first["deliveries"], &first["skipped"]),
        (&3.into(), &0.into())
    );
    assert!(first["error"].is_null());
    assert!(first.get("body").is_none(), "a listing leaves the body out");
    let failed = &all[1];
    assert_eq!(failed["status"], "untranslated");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("customers/create"),
        "{failed}"
    );

    for (filter, expected) in [
        (&["--status", "untranslated"][..], vec![untranslated]),
        (&["--source", "haravan"][..], vec![paid]),
        (&["--topic", "orders/cancelled"][..], vec![cancelled]),
        (
            &["--source", "shopify", "--limit", "1"][..],
            vec![cancelled],
        ),
        (
            &["--since", "1h", "--status", "any"][..],
            vec![cancelled, untranslated, paid],
        ),
    ] {
        let mut args = vec!["webhooks", "--json"];
        args.extend_from_slice(filter);
        assert_eq!(
            ids(&json_out(&run(&app, &[], &args))),
            expected,
            "{filter:?}"
        );
    }

    // The table: a row a webhook, its columns under their header, the error cut to fit.
    let table = stdout_of(&run(&app, &[], &["webhooks"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    let header = lines[0];
    for column in [
        "received (UTC)",
        "source",
        "topic",
        "status",
        "translation error",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let error_at = header.find("translation error").unwrap();
    let untranslated_row = lines[2];
    assert!(
        untranslated_row.starts_with(&format!("{untranslated:>7} ")),
        "{untranslated_row}"
    );
    let error: String = untranslated_row.chars().skip(error_at).collect();
    assert!(error.starts_with("no mapping applies"), "{table}");
    let status_at = header.find("status").unwrap();
    for (line, status) in [
        (lines[1], "translated"),
        (lines[2], "untranslated"),
        (lines[3], "translated"),
    ] {
        assert_eq!(
            &line[status_at..status_at + status.len()],
            status,
            "{table}"
        );
    }
    assert_eq!(lines[4], "3 webhooks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_shows_headers_with_the_signature_redacted_its_body_and_its_deliveries() {
    let app = spawn_app().await;
    let id = post(&app, "haravan", "local-phone-click-id").await;
    // Without credentials every destination runs dry: one attempt each, the request kept.
    app.wait_for_deliveries(|rows| rows.len() == 3 && rows.iter().all(|r| r.status == "dry_run"))
        .await;
    let fixture = fixture("haravan", "local-phone-click-id");
    let signature = platform_signature(secret_of("haravan"), &fixture.body);

    let output = run(&app, &[], &["webhook", &id.to_string(), "--json"]);
    let shown = json_out(&output);
    assert!(!stdout_of(&output).contains(&signature));
    assert_eq!(shown["id"], id);
    assert_eq!(shown["status"], "translated");
    assert_eq!(shown["headers"]["x-haravan-hmacsha256"], "***");
    assert_eq!(shown["headers"]["x-haravan-topic"], "orders/paid");
    assert_eq!(shown["body"]["format"], "json");
    assert_eq!(shown["body"]["content"]["id"], 1071234612);
    let log = shown["delivery_log"].as_array().unwrap();
    let mappings: Vec<&str> = log.iter().map(|d| d["mapping"].as_str().unwrap()).collect();
    assert_eq!(
        mappings,
        [
            "haravan/legion-purchase",
            "haravan/salekit-audience",
            "haravan/scalef-conversion"
        ]
    );
    for delivery in log {
        assert_eq!(delivery["key"], "haravan/1071234612");
        assert_eq!(delivery["status"], "dry_run");
        let attempts = delivery["attempt_log"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{delivery}");
        assert_eq!(attempts[0]["outcome"], "dry_run");
    }

    let output = run(&app, &[], &["webhook", &id.to_string()]);
    let text = stdout_of(&output);
    assert!(!text.contains(&signature));
    assert!(text.contains("x-haravan-hmacsha256: ***"), "{text}");
    assert!(text.contains("status:    translated"), "{text}");
    assert!(
        text.contains("\"id\": 1071234612"),
        "the body, pretty: {text}"
    );
    assert!(text.contains("deliveries (3 made, 0 skipped):"), "{text}");
    assert!(
        text.contains("haravan/salekit-audience haravan/1071234612 -> salekit: dry_run"),
        "{text}"
    );
    assert_eq!(text.matches(" UTC  dry_run ").count(), 3, "{text}");

    // A dry run's delivery shows the request it kept.
    let salekit = log[1]["id"].as_i64().unwrap();
    let shown = json_out(&run(
        &app,
        &[],
        &["delivery", &salekit.to_string(), "--json"],
    ));
    assert_eq!(shown["request"]["from"], "stored");
    assert!(
        shown["request"]["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/audience/create"),
        "{shown}"
    );

    // Once the retention purge removed it, the body says so.
    app.store
        .purge_before(storehook::store::now_ms() + 1)
        .await
        .unwrap();
    let shown = json_out(&run(&app, &[], &["webhook", &id.to_string(), "--json"]));
    assert_eq!(shown["status"], "purged");
    assert_eq!(shown["body"], serde_json::json!({"format": "purged"}));
    let text = stdout_of(&run(&app, &[], &["webhook", &id.to_string()]));
    assert!(text.contains("body: purged"), "{text}");

    // Unknown ids: a clear error and exit 1.
    for what in ["webhook", "delivery"] {
        let output = run(&app, &[], &[what, "4242"]);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stderr).trim(),
            format!("error: no {what} 4242")
        );
        assert!(output.stdout.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_shows_the_request_with_its_secret_masked_and_every_attempt_across_a_replay() {
    let (legion, legion_url) = Double::start().await;
    legion.answer(400, vec![], r#"{"error":"bad event"}"#);
    let env = [
        ("LEGION_BASE_URL", legion_url.as_str()),
        ("LEGION_API_KEY", LEGION_KEY),
    ];
    let app = spawn_app_with(|vars| {
        for (name, value) in env {
            vars.insert(name.into(), value.into());
        }
    })
    .await;
    post(&app, "haravan", "local-phone-click-id").await;
    let rows = app.wait_for_status("haravan/legion-purchase", "dead").await;
    let id = rows
        .iter()
        .find(|r| r.mapping == "haravan/legion-purchase")
        .unwrap()
        .id;

    let replayed = stdout_of(&run(&app, &env, &["replay", "--yes"]));
    assert!(replayed.contains("requeued 1 deliveries"), "{replayed}");
    app.wait_for_status("haravan/legion-purchase", "delivered")
        .await;
    assert_eq!(legion.received().len(), 2);

    let output = run(&app, &env, &["delivery", &id.to_string(), "--json"]);
    assert!(!stdout_of(&output).contains(LEGION_KEY));
    let shown = json_out(&output);
    assert_eq!(shown["status"], "delivered");
    assert_eq!(shown["attempts"], 1, "counted anew since the replay");
    let attempts: Vec<(&str, i64)> = shown["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["outcome"].as_str().unwrap(),
                a["http_status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [("dead", 400), ("delivered", 200)],
        "the attempt before the replay is kept"
    );
    assert!(
        shown["attempt_log"][0]["response"]
            .as_str()
            .unwrap()
            .contains("bad event")
    );
    assert_eq!(shown["payload"]["payload"]["order_paid_price"], 1180000);
    assert_eq!(shown["request"]["from"], "rebuilt");
    let request = &shown["request"]["request"];
    assert_eq!(
        request["url"].as_str().unwrap(),
        format!("{legion_url}/integration/flow-state/event/add/")
    );
    assert!(
        request["headers"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["X-Api-Key", "***"])),
        "{request}"
    );
    let body: Value = serde_json::from_str(request["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body[0], shown["payload"],
        "the payload, as Legion is sent it"
    );

    let text = stdout_of(&run(&app, &env, &["delivery", &id.to_string()]));
    assert!(!text.contains(LEGION_KEY), "{text}");
    assert!(text.contains("X-Api-Key: ***"), "{text}");
    assert!(text.contains("status:      delivered"), "{text}");
    assert!(text.contains("\"order_paid_price\": 1180000"), "{text}");
    let attempt_lines: Vec<&str> = text.lines().filter(|l| l.contains(" UTC  ")).collect();
    assert_eq!(attempt_lines.len(), 2, "{text}");
    assert!(attempt_lines[0].contains("dead      HTTP 400"), "{text}");
    assert!(attempt_lines[1].contains("delivered HTTP 200"), "{text}");

    // The webhook's view shows the same history.
    let webhook = rows[0].webhook_id.to_string();
    let shown = json_out(&run(&app, &env, &["webhook", &webhook, "--json"]));
    let legion_log = shown["delivery_log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap();
    assert_eq!(legion_log["attempt_log"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_delivery_shows_what_it_waits_for() {
    // Nothing sends to Scalef: the conversion stays pending, the update waiting.
    let (app, _workers) = spawn_app_stepping(|_| {}, |_| {}, &["scalef"]).await;
    post(&app, "shopify", "refunded-in-parts").await;
    let rows = app.delivery_rows().await;
    let update = rows
        .iter()
        .find(|r| r.mapping == "shopify/scalef-status")
        .unwrap_or_else(|| panic!("a status update in {rows:#?}"))
        .id
        .to_string();
    let shown = json_out(&run(&app, &[], &["delivery", &update, "--json"]));
    assert_eq!(shown["status"], "waiting");
    assert_eq!(
        shown["waits_for"],
        serde_json::json!({
            "mapping": "shopify/scalef-conversion",
            "key": "shopify/5678901234602",
            "delivery": null,
            "status": null,
        })
    );
    assert_eq!(shown["request"]["from"], "unavailable");

    post(&app, "shopify", "local-phone-click-id").await;
    let conversion = app
        .delivery_rows()
        .await
        .into_iter()
        .find(|r| r.mapping == "shopify/scalef-conversion")
        .unwrap();
    let shown = json_out(&run(&app, &[], &["delivery", &update, "--json"]));
    assert_eq!(shown["waits_for"]["delivery"], conversion.id);
    assert_eq!(shown["waits_for"]["status"], "pending");
    let text = stdout_of(&run(&app, &[], &["delivery", &update]));
    assert!(
        text.contains(&format!(
            "waits for:   shopify/scalef-conversion shopify/5678901234602: delivery {}, pending",
            conversion.id
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_status_is_an_error_naming_the_valid_ones() {
    let app = spawn_app().await;
    let output = run(&app, &[], &["deliveries", "--status", "bogus"]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "unknown delivery status `bogus`: expected one of pending, waiting, in_flight, delivered, dead, skipped, dry_run, cancelled, or `any` for all"
        ),
        "{stderr}"
    );

    let output = run(&app, &[], &["deliveries", "--status", "untranslated"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("use `storehook webhooks --status untranslated`"),
        "{stderr}"
    );

    let output = run(&app, &[], &["webhooks", "--status", "dead"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("use `storehook deliveries --status dead`"),
        "{stderr}"
    );
}
