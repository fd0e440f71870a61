//! The receive path writes the webhook and the deliveries translated from it in one
//! transaction, before the 200; repeats of an order add no delivery.

use reqwest::StatusCode;

use crate::harness::*;

#[tokio::test]
async fn a_webhook_is_stored_with_its_deliveries() {
    let app = spawn_app().await;
    let fixture = fixture("haravan", "local-phone-click-id");
    let response = app
        .post_fixture("haravan", &fixture, secret_of("haravan"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["deliveries"], 3);
    let webhook_id = answer["webhook_id"].as_i64().unwrap();
    assert_eq!(
        app.webhook_status(webhook_id).await,
        ("translated".into(), None)
    );

    let deliveries = app.deliveries().await;
    let mappings: Vec<&str> = deliveries.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(
        mappings,
        [
            "haravan/legion-purchase",
            "haravan/salekit-audience",
            "haravan/scalef-conversion"
        ]
    );
    for (id, _, key, _, _) in &deliveries {
        assert_eq!(*id, webhook_id);
        assert_eq!(key, "haravan/1071234612");
    }
    let legion = &deliveries[0].4;
    assert_eq!(legion["payload"]["username"], "912345678");
    assert_eq!(legion["payload"]["order_paid_price"], 1180000);
}

#[tokio::test]
async fn a_status_update_waits_for_its_conversion() {
    let app = spawn_app().await;
    let fixture = fixture("shopify", "cancelled-refunded");
    let answer = json_of(
        app.post_fixture("shopify", &fixture, secret_of("shopify"))
            .await,
    )
    .await;
    assert_eq!(answer["deliveries"], 1);
    let deliveries = app.deliveries().await;
    assert_eq!(deliveries[0].1, "shopify/scalef-status");
    assert_eq!(deliveries[0].3, "waiting");
    assert_eq!(deliveries[0].4["status"], "rejected");
}

#[tokio::test]
async fn a_woocommerce_order_updated_five_times_after_completion_makes_one_legion_delivery() {
    let app = spawn_app().await;
    let fixture = fixture("woocommerce", "paid-two-items-discount");
    for minute in 0..5 {
        let mut order: serde_json::Value = serde_json::from_slice(&fixture.body).unwrap();
        order["status"] = "completed".into();
        order["date_modified_gmt"] = format!("2026-03-20T10:0{minute}:00").into();
        let body = serde_json::to_vec(&order).unwrap();
        let answer = json_of(
            app.post_signed("woocommerce", &fixture, &body, secret_of("woocommerce"))
                .await,
        )
        .await;
        assert_eq!(answer["duplicate"], false, "each update is a new webhook");
        let expected = if minute == 0 { 2 } else { 0 };
        assert_eq!(answer["deliveries"], expected, "update {minute}");
    }
    assert_eq!(app.inbox().await.len(), 5);
    let legion: Vec<_> = app
        .deliveries()
        .await
        .into_iter()
        .filter(|d| d.1 == "woocommerce/legion-purchase")
        .collect();
    assert_eq!(legion.len(), 1);
}

#[tokio::test]
async fn a_repeated_shopify_event_adds_no_delivery() {
    let app = spawn_app().await;
    let fixture = fixture("shopify", "local-phone-click-id");
    let first = json_of(
        app.post_fixture("shopify", &fixture, secret_of("shopify"))
            .await,
    )
    .await;
    let again = json_of(
        app.post_fixture("shopify", &fixture, secret_of("shopify"))
            .await,
    )
    .await;
    assert_eq!(first["deliveries"], 3);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["deliveries"], 0);
    assert_eq!(app.deliveries().await.len(), 3);
}

#[tokio::test]
async fn a_webhook_no_mapping_applies_to_is_stored_untranslated_and_acknowledged() {
    let app = spawn_app().await;
    let fixture = fixture("shopify", "paid-two-items-discount");
    let mut headers = signed_headers(&fixture, &fixture.body, secret_of("shopify"));
    set_header(&mut headers, "X-Shopify-Topic", Some("customers/create"));
    let response = app
        .post_raw("shopify", &headers, fixture.body.clone())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["deliveries"], 0);
    let (status, error) = app
        .webhook_status(answer["webhook_id"].as_i64().unwrap())
        .await;
    assert_eq!(status, "untranslated");
    assert!(error.unwrap().contains("customers/create"));
}

#[tokio::test]
async fn a_failing_mapping_stores_the_webhook_untranslated_with_the_error() {
    // A copy of the shipped mappings where one expression fails on every order.
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings/haravan");
    std::fs::create_dir_all(&mappings).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/haravan");
    for name in ["legion-purchase", "salekit-audience"] {
        let text = std::fs::read_to_string(root.join(format!("{name}.toml"))).unwrap();
        let text = text.replace(
            "'in_currency(.total_price; .currency; $vars.legion_currency)'",
            "'.total_price | error(\"broken on purpose\")'",
        );
        std::fs::write(mappings.join(format!("{name}.toml")), text).unwrap();
    }
    let mappings_dir = dir.path().join("mappings").display().to_string();
    let app = spawn_app_with(|env| {
        env.insert("STOREHOOK_MAPPINGS_DIR".into(), mappings_dir);
    })
    .await;
    let fixture = fixture("haravan", "paid-two-items-discount");
    let response = app
        .post_fixture("haravan", &fixture, secret_of("haravan"))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the shop cannot fix a mapping"
    );
    let answer = json_of(response).await;
    assert_eq!(
        answer["deliveries"], 1,
        "the mapping that works still delivers"
    );
    let (status, error) = app
        .webhook_status(answer["webhook_id"].as_i64().unwrap())
        .await;
    assert_eq!(status, "untranslated");
    let error = error.unwrap();
    assert!(error.contains("legion-purchase.toml"), "{error}");
    assert!(error.contains("broken on purpose"), "{error}");
    assert_eq!(app.deliveries().await[0].1, "haravan/salekit-audience");
}

#[tokio::test]
async fn a_mapping_naming_an_unconfigured_destination_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("shopify");
    std::fs::create_dir_all(&mappings).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/shopify");
    let text = std::fs::read_to_string(root.join("legion-purchase.toml")).unwrap();
    std::fs::write(
        mappings.join("legion-purchase.toml"),
        text.replace("destination = \"legion\"", "destination = \"legoin\""),
    )
    .unwrap();
    let mut env = test_env(dir.path());
    env.insert(
        "STOREHOOK_MAPPINGS_DIR".into(),
        dir.path().display().to_string(),
    );
    let mut config =
        storehook::config::Config::parse(storehook::config::EMBEDDED, "storehook.toml", &|n| {
            env.get(n).cloned()
        })
        .unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let err = storehook::app::App::build(config)
        .await
        .err()
        .expect("the start is refused");
    let text = format!("{err:#}");
    assert!(text.contains("legion-purchase.toml"), "{text}");
    assert!(text.contains("`legoin` is not configured"), "{text}");
}

#[tokio::test]
async fn retention_purges_bodies_and_payloads_but_keeps_ids_and_keys() {
    let app = spawn_app().await;
    let shopify = fixture("shopify", "local-phone-click-id");
    let woo = fixture("woocommerce", "paid-two-items-discount");
    app.post_fixture("shopify", &shopify, secret_of("shopify"))
        .await;
    app.post_fixture("woocommerce", &woo, secret_of("woocommerce"))
        .await;
    // Without credentials every destination runs dry: all deliveries end as dry_run.
    app.wait_for_deliveries(|rows| rows.len() == 5 && rows.iter().all(|r| r.status == "dry_run"))
        .await;

    let store = storehook::store::open(&format!("sqlite://{}", app.db_path.display()))
        .await
        .unwrap();
    let purged = store
        .purge_before(storehook::store::now_ms() + 1)
        .await
        .unwrap();
    assert_eq!(purged, 2);
    for webhook in app.inbox().await {
        assert!(webhook.body.is_empty());
    }
    assert!(
        app.delivery_rows()
            .await
            .iter()
            .all(|r| r.payload.is_null())
    );

    // Nothing is left to send or to translate again: replay leaves them as they are.
    let mappings = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let output = app.cli(&mappings, &["replay", "--yes", "--status", "dry_run"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("requeued 0 deliveries")
            && stdout.contains("5 not requeued: the retention purge removed their payload"),
        "{stdout}"
    );
    let output = app.cli(
        &mappings,
        &["replay", "--yes", "--retranslate", "--status", "dry_run"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("nothing to re-translate"), "{stdout}");
    assert!(
        app.delivery_rows()
            .await
            .iter()
            .all(|r| r.status == "dry_run" && r.payload.is_null())
    );
    assert!(app.inbox().await.iter().all(|w| w.body.is_empty()));

    // A late repeat is still recognised, and the order still gets no second delivery.
    let again = json_of(
        app.post_fixture("shopify", &shopify, secret_of("shopify"))
            .await,
    )
    .await;
    assert_eq!(again["duplicate"], true);
    let mut order: serde_json::Value = serde_json::from_slice(&woo.body).unwrap();
    order["status"] = "completed".into();
    order["date_modified_gmt"] = "2026-05-01T00:00:00".into();
    let body = serde_json::to_vec(&order).unwrap();
    let update = json_of(
        app.post_signed("woocommerce", &woo, &body, secret_of("woocommerce"))
            .await,
    )
    .await;
    assert_eq!(update["duplicate"], false);
    assert_eq!(update["deliveries"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_retranslate_reports_progress_without_a_terminal_and_sums_up() {
    let app = spawn_app().await;
    app.post_paid_haravan_orders(5_000_000, 120).await;
    let mappings = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let output = app.cli(
        &mappings,
        &[
            "replay",
            "--yes",
            "--retranslate",
            "--status",
            "any",
            "--since",
            "1h",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    // stderr is a pipe here: no bar, a line every 100 webhooks instead.
    assert!(
        stderr.contains("… 100/120 webhooks re-translated"),
        "{stderr}"
    );
    assert!(!stderr.contains("re-translating"), "no bar drawn: {stderr}");
    assert!(
        stdout.contains("re-translated 120 webhooks: 0 deliveries added"),
        "{stdout}"
    );
}

/// A mapping that failed on a paid order is fixed: `replay --retranslate --mapping` makes
/// the delivery it now produces for the untranslated webhook, and touches nothing of the
/// other mappings (their dry runs stay as they ran). Without a terminal it asks for --yes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retranslating_a_fixed_mapping_adds_its_delivery_and_leaves_other_destinations_alone() {
    let mappings = tempfile::tempdir().unwrap();
    copy_tree(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"),
        mappings.path(),
    );
    let salekit = mappings.path().join("haravan/salekit-audience.toml");
    let shipped = std::fs::read_to_string(&salekit).unwrap();
    let broken = shipped.replace("src     = '\"haravan\"'", "src     = '.email | tonumber'");
    assert_ne!(broken, shipped);
    std::fs::write(&salekit, &broken).unwrap();
    let dir = mappings.path().display().to_string();
    let app = spawn_app_with(|env| {
        env.insert("STOREHOOK_MAPPINGS_DIR".into(), dir);
    })
    .await;
    let order = fixture("haravan", "paid-two-items-discount");
    let answer = json_of(
        app.post_fixture("haravan", &order, secret_of("haravan"))
            .await,
    )
    .await;
    let webhook_id = answer["webhook_id"].as_i64().unwrap();
    assert_eq!(app.webhook_status(webhook_id).await.0, "untranslated");
    let before = app
        .wait_for_deliveries(|rows| !rows.is_empty() && rows.iter().all(|r| r.status == "dry_run"))
        .await;
    assert!(
        before
            .iter()
            .all(|r| r.mapping != "haravan/salekit-audience")
    );

    // No terminal, no --yes: refused, nothing changed.
    std::fs::write(&salekit, &shipped).unwrap();
    let args = [
        "replay",
        "--retranslate",
        "--mapping",
        "haravan/salekit-audience",
    ];
    let output = app.cli(mappings.path(), &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(app.delivery_rows().await.len(), before.len());

    let output = app.cli(mappings.path(), &[&args[..], &["--yes"]].concat());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("re-translated 1 webhooks: 1 deliveries added, 0 replaced"),
        "{stdout}"
    );
    assert_eq!(
        app.webhook_status(webhook_id).await,
        ("translated".into(), None)
    );
    let after = app
        .wait_for_deliveries(|rows| rows.len() == before.len() + 1)
        .await;
    let added = after
        .iter()
        .find(|r| r.mapping == "haravan/salekit-audience")
        .expect("the fixed mapping's delivery");
    assert_eq!(added.payload["src"], "haravan");
    for old in &before {
        let now = after.iter().find(|r| r.id == old.id).unwrap();
        assert_eq!(
            (&now.status, now.attempts, &now.request),
            (&old.status, old.attempts, &old.request),
            "{} untouched",
            old.mapping
        );
    }

    // An unknown mapping is named, not ignored.
    let output = app.cli(
        mappings.path(),
        &[
            "replay",
            "--yes",
            "--retranslate",
            "--mapping",
            "haravan/crm",
        ],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no such mapping"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[tokio::test]
async fn storehook_cancel_takes_a_waiting_delivery_out_and_only_a_replay_naming_it_brings_it_back()
{
    let app = spawn_app().await;
    let fixture = fixture("shopify", "cancelled-refunded");
    let response = app
        .post_fixture("shopify", &fixture, secret_of("shopify"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = app.delivery_rows().await[0].id.to_string();
    let mappings = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let run = |args: &[&str]| {
        let output = app.cli(&mappings, args);
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (ok, _, stderr) = run(&["cancel", "--yes"]);
    assert!(!ok && stderr.contains("cancel needs a filter"), "{stderr}");
    let (ok, _, stderr) = run(&["cancel", "--id", &id]);
    assert!(
        !ok && stderr.contains("--yes"),
        "no terminal to confirm on: {stderr}"
    );
    let (ok, stdout, stderr) = run(&["cancel", "--id", &id, "--yes"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("cancelled 1 deliveries"), "{stdout}");
    assert_eq!(app.delivery_rows().await[0].status, "cancelled");
    let (ok, stdout, _) = run(&["deliveries", "--status", "cancelled"]);
    assert!(ok && stdout.contains("1 deliveries"), "{stdout}");

    let (ok, stdout, stderr) = run(&["replay", "--status", "cancelled", "--yes"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("nothing to replay"), "{stdout}");
    assert_eq!(app.delivery_rows().await[0].status, "cancelled");
    let (ok, stdout, stderr) = run(&["replay", "--id", &id, "--yes"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("requeued 1 deliveries"), "{stdout}");
    assert_eq!(app.delivery_rows().await[0].status, "waiting");
}
