//! The admin API on a real server: the token, throttling, its own address, every route with
//! its filters and pages, replay / re-translate / cancel, `/api/translate` on every
//! fixture, and the OpenAPI document.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::doubles::Double;
use crate::harness::*;

const TOKEN: &str = "admin-token-for-tests";

/// An app with the admin token set, Legion live on a double (answering `200 {}` unless told
/// otherwise), retries quick.
async fn admin_app(adjust: impl FnOnce(&mut storehook::config::Config)) -> (TestApp, Double) {
    let (app, legion, _) = admin_app_refusing(adjust).await;
    (app, legion)
}

/// [`admin_app`] whose Legion refuses every request with 400 while the flag is set.
async fn admin_app_refusing(
    adjust: impl FnOnce(&mut storehook::config::Config),
) -> (TestApp, Double, Arc<AtomicBool>) {
    let refuse = Arc::new(AtomicBool::new(false));
    let refusing = refuse.clone();
    let (legion, legion_url) = Double::start_with(move |_| {
        if refusing.load(Ordering::SeqCst) {
            (400, vec![], r#"{"error":"refused by the test"}"#.into())
        } else {
            (200, vec![], "{}".into())
        }
    })
    .await;
    let app = spawn_app_configured(
        |env| {
            env.insert("STOREHOOK_ADMIN_TOKEN".into(), TOKEN.into());
            env.insert("LEGION_BASE_URL".into(), legion_url);
            env.insert("LEGION_API_KEY".into(), "legion-key".into());
        },
        |config| {
            for destination in config.destinations.values_mut() {
                destination.retry_schedule = vec![Duration::from_millis(100); 2];
            }
            adjust(config);
        },
    )
    .await;
    (app, legion, refuse)
}

/// Calls the admin API at `base` with `token` (none: no Authorization header).
async fn call(
    app: &TestApp,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, json) = call(app, &app.address, Method::GET, path, Some(TOKEN), None).await;
    assert_eq!(status, 200, "GET {path}: {json}");
    json
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    call(
        app,
        &app.address,
        Method::POST,
        path,
        Some(TOKEN),
        Some(body),
    )
    .await
}

/// Every route: (method, path as the OpenAPI document names it, a concrete path).
const ROUTES: [(&str, &str, &str); 12] = [
    ("get", "/api/openapi.json", "/api/openapi.json"),
    ("get", "/api/webhooks", "/api/webhooks"),
    ("get", "/api/webhooks/{id}", "/api/webhooks/1"),
    (
        "post",
        "/api/webhooks/retranslate",
        "/api/webhooks/retranslate",
    ),
    ("get", "/api/deliveries", "/api/deliveries"),
    ("get", "/api/deliveries/{id}", "/api/deliveries/1"),
    ("post", "/api/deliveries/replay", "/api/deliveries/replay"),
    ("post", "/api/deliveries/cancel", "/api/deliveries/cancel"),
    ("get", "/api/mappings", "/api/mappings"),
    ("post", "/api/mappings/reload", "/api/mappings/reload"),
    ("post", "/api/translate", "/api/translate"),
    ("get", "/api/stats", "/api/stats"),
];

fn method(name: &str) -> Method {
    name.to_uppercase().parse().unwrap()
}

/// Posts paid Haravan orders `ids` and waits until each has its Legion delivery delivered.
async fn paid_orders_delivered(app: &TestApp, first: u64, count: u64) {
    app.post_paid_haravan_orders(first, count).await;
    app.wait_for_deliveries(|rows| {
        rows.iter()
            .filter(|r| r.mapping == "haravan/legion-purchase" && r.status == "delivered")
            .count() as u64
            >= count
    })
    .await;
}

#[tokio::test]
async fn every_route_answers_401_without_the_token_or_with_a_wrong_one() {
    let (app, _legion) = admin_app(|_| {}).await;
    for (verb, _, path) in ROUTES {
        let (status, body) = call(&app, &app.address, method(verb), path, None, None).await;
        assert_eq!(status, 401, "{verb} {path}: {body}");
        assert_eq!(body["error"], "unauthorized", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("Bearer"),
            "{body}"
        );
    }
    // Wrong tokens (fewer than the lockout's count), then the right one.
    for (verb, _, path) in &ROUTES[..4] {
        let (status, body) =
            call(&app, &app.address, method(verb), path, Some("wrong"), None).await;
        assert_eq!(status, 401, "{verb} {path}: {body}");
    }
    let (status, _) = call(
        &app,
        &app.address,
        Method::GET,
        "/api/stats",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // The webhook endpoints stay open (their signatures guard them).
    app.post_paid_haravan_orders(1, 1).await;
}

#[tokio::test]
async fn repeated_wrong_tokens_are_answered_429_per_client_address() {
    let (app, _legion) = admin_app(|config| {
        config.admin.trusted_proxy_header = Some("Fly-Client-IP".into());
    })
    .await;
    let from = |client: &'static str, token: &'static str| {
        let request = app
            .client
            .get(format!("{}/api/stats", app.address))
            .bearer_auth(token)
            .header("Fly-Client-IP", client);
        async move { request.send().await.unwrap() }
    };
    for _ in 0..5 {
        assert_eq!(from("198.51.100.1", "guess").await.status(), 401);
    }
    let locked = from("198.51.100.1", "guess").await;
    assert_eq!(locked.status(), 429);
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = locked.json().await.unwrap();
    assert_eq!(body["error"], "too_many_attempts");
    assert_eq!(
        from("198.51.100.1", TOKEN).await.status(),
        429,
        "locked out, whatever it sends"
    );
    assert_eq!(
        from("198.51.100.2", TOKEN).await.status(),
        200,
        "another client behind the same proxy is not locked out"
    );
}

#[tokio::test]
async fn the_admin_surface_can_have_an_address_of_its_own() {
    let (app, _legion) = admin_app(|config| {
        config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let admin = app.admin_address.clone().expect("an admin address");
    assert_ne!(admin, app.address);
    let (status, _) = call(
        &app,
        &app.address,
        Method::GET,
        "/api/stats",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404, "not on the main address");
    let (status, body) = call(&app, &admin, Method::GET, "/api/stats", Some(TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(&app, &admin, Method::GET, "/api/stats", None, None).await;
    assert_eq!(status, 401);
    // Webhooks stay on the main address.
    app.post_paid_haravan_orders(7, 1).await;
    let (_, webhooks) = call(
        &app,
        &admin,
        Method::GET,
        "/api/webhooks",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(webhooks["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn without_a_configured_token_one_is_made_beside_the_store_and_works() {
    let app = spawn_app().await;
    let file = app.db_path.with_file_name("admin-token");
    let token = std::fs::read_to_string(&file).expect("the token file beside the store");
    let token = token.trim();
    assert!(token.len() >= 32, "a long random token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (status, _) = call(
        &app,
        &app.address,
        Method::GET,
        "/api/stats",
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn webhooks_are_listed_by_filter_a_page_at_a_time() {
    let (app, _legion) = admin_app(|_| {}).await;
    let before = now_ms();
    paid_orders_delivered(&app, 5001, 5).await;
    let shopify = fixture("shopify", "paid-two-items-discount");
    let response = app
        .post_fixture("shopify", &shopify, secret_of("shopify"))
        .await;
    assert_eq!(response.status(), 200);

    let ids = |page: &Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_i64().unwrap())
            .collect()
    };
    let all = get(&app, "/api/webhooks").await;
    assert_eq!(ids(&all).len(), 6);
    assert_eq!(all["next_cursor"], Value::Null);
    let first = &all["items"][0];
    assert_eq!(first["source"], "shopify");
    assert!(first.get("headers").is_none(), "a listing has no headers");
    let haravan = get(
        &app,
        "/api/webhooks?source=haravan&topic=orders/paid&status=translated",
    )
    .await;
    assert_eq!(ids(&haravan).len(), 5);
    assert!(
        haravan["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["deliveries"].as_u64() >= Some(1))
    );
    let order = get(&app, "/api/webhooks?order_id=5003").await;
    assert_eq!(order["items"].as_array().unwrap().len(), 1);
    assert_eq!(order["items"][0]["source"], "haravan");
    let later = now_ms() + 60_000;
    let none = get(&app, &format!("/api/webhooks?since={later}")).await;
    assert!(ids(&none).is_empty());
    let range = get(
        &app,
        &format!("/api/webhooks?since={before}&until=2100-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(ids(&range).len(), 6);

    // Pages of two, each from the cursor of the one before.
    let mut seen = Vec::new();
    let mut path = "/api/webhooks?limit=2".to_string();
    loop {
        let page = get(&app, &path).await;
        seen.extend(ids(&page));
        match page["next_cursor"].as_i64() {
            Some(cursor) => path = format!("/api/webhooks?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids(&all), "every webhook once, newest first");

    for (query, named) in [
        ("status=sent", "status"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = call(
            &app,
            &app.address,
            Method::GET,
            &format!("/api/webhooks?{query}"),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "bad_request");
        assert!(body["message"].as_str().unwrap().contains(named), "{body}");
    }
}

#[tokio::test]
async fn a_webhook_shows_its_redacted_headers_body_mapping_outcomes_and_deliveries() {
    let (app, _legion) = admin_app(|_| {}).await;
    paid_orders_delivered(&app, 6001, 1).await;
    let id = app.inbox().await[0].id;
    let webhook = get(&app, &format!("/api/webhooks/{id}")).await;
    assert_eq!(webhook["id"], id);
    assert_eq!(webhook["headers"]["x-haravan-hmacsha256"], "***");
    assert_eq!(webhook["headers"]["x-haravan-topic"], "orders/paid");
    let raw = serde_json::to_string(&webhook).unwrap();
    assert!(!raw.contains(&platform_signature(secret_of("haravan"), b"")[..8]));
    assert_eq!(webhook["body"]["format"], "json");
    assert_eq!(webhook["body"]["content"]["id"], 6001);
    let outcomes = webhook["mappings"]["mappings"].as_array().unwrap();
    let legion = outcomes
        .iter()
        .find(|m| m["mapping"] == "haravan/legion-purchase")
        .expect("the Legion mapping's outcome");
    assert_eq!(legion["outcome"], "plan", "{legion}");
    assert_eq!(legion["key"], "6001");
    let log = webhook["delivery_log"].as_array().unwrap();
    let delivered = log
        .iter()
        .find(|d| d["mapping"] == "haravan/legion-purchase")
        .unwrap();
    assert_eq!(delivered["status"], "delivered");
    assert_eq!(delivered["attempt_log"][0]["outcome"], "delivered");

    let (status, body) = call(
        &app,
        &app.address,
        Method::GET,
        "/api/webhooks/999",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, _) = call(
        &app,
        &app.address,
        Method::GET,
        "/api/webhooks/abc",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn deliveries_are_listed_by_filter_and_one_shows_every_attempt() {
    let (app, legion) = admin_app(|_| {}).await;
    legion.answer(503, vec![], "down");
    paid_orders_delivered(&app, 7001, 3).await;
    let listed = get(&app, "/api/deliveries?destination=legion&status=delivered").await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let by_mapping = get(&app, "/api/deliveries?mapping=haravan/salekit-audience").await;
    assert!(
        by_mapping["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["mapping"] == "haravan/salekit-audience" && d["destination"] == "salekit")
    );
    let later = now_ms() + 60_000;
    let none = get(&app, &format!("/api/deliveries?since={later}")).await;
    assert!(none["items"].as_array().unwrap().is_empty());
    let until = get(&app, &format!("/api/deliveries?until={later}&limit=2")).await;
    assert_eq!(until["items"].as_array().unwrap().len(), 2);
    let cursor = until["next_cursor"].as_i64().expect("a next page");
    let next = get(
        &app,
        &format!("/api/deliveries?until={later}&limit=2&cursor={cursor}"),
    )
    .await;
    assert!(next["items"][0]["id"].as_i64().unwrap() < cursor);

    // The one that was retried once shows both attempts.
    let retried = app
        .delivery_rows()
        .await
        .into_iter()
        .find(|r| r.mapping == "haravan/legion-purchase" && r.attempts == 2)
        .expect("the delivery Legion refused once");
    let detail = get(&app, &format!("/api/deliveries/{}", retried.id)).await;
    let attempts: Vec<&str> = detail["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(attempts, ["retry", "delivered"]);
    assert_eq!(detail["payload"]["event_id"], 2);
    assert_eq!(detail["request"]["from"], "rebuilt");
    let shown = serde_json::to_string(&detail["request"]).unwrap();
    assert!(
        !shown.contains("legion-key"),
        "the credential is masked: {shown}"
    );
    let (status, _) = call(
        &app,
        &app.address,
        Method::GET,
        "/api/deliveries/99999",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call(
        &app,
        &app.address,
        Method::GET,
        "/api/deliveries?status=purged",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

/// The Legion delivery of order `id`.
async fn legion_delivery(app: &TestApp, order: u64) -> DeliveryRow {
    let key = format!("haravan/{order}");
    app.delivery_rows()
        .await
        .into_iter()
        .find(|r| r.mapping == "haravan/legion-purchase" && r.key == key)
        .unwrap_or_else(|| panic!("the Legion delivery of order {order}"))
}

#[tokio::test]
async fn replay_and_cancel_by_id_and_by_filter() {
    let (app, legion, refuse) = admin_app_refusing(|_| {}).await;
    // Three orders Legion refuses for good: dead.
    refuse.store(true, Ordering::SeqCst);
    app.post_paid_haravan_orders(8001, 3).await;
    app.wait_for_deliveries(|rows| {
        rows.iter()
            .filter(|r| r.mapping == "haravan/legion-purchase" && r.status == "dead")
            .count()
            == 3
    })
    .await;
    refuse.store(false, Ordering::SeqCst);
    let [first, second, third] = [
        legion_delivery(&app, 8001).await.id,
        legion_delivery(&app, 8002).await.id,
        legion_delivery(&app, 8003).await.id,
    ];

    // Cancel one by id, then the cancel by filter takes only what is left dead.
    let (status, done) = post(&app, "/api/deliveries/cancel", json!({"ids": [first]})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done, json!({"cancelled": 1, "skipped": 0}));
    let (_, again) = post(&app, "/api/deliveries/cancel", json!({"ids": [first]})).await;
    assert_eq!(again["cancelled"], 0, "cancelled already");
    // A replay by filter does not bring it back; the dead ones go out.
    let (status, replayed) = post(
        &app,
        "/api/deliveries/replay",
        json!({"filter": {"destination": "legion"}}),
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["requeued"], 2);
    app.wait_for_deliveries(|rows| {
        rows.iter()
            .filter(|r| r.mapping == "haravan/legion-purchase")
            .all(|r| r.id == first || r.status == "delivered")
    })
    .await;
    assert_eq!(legion_delivery(&app, 8001).await.status, "cancelled");
    let sent_before = legion.received().len();
    // Only a replay naming it does.
    let (_, named) = post(&app, "/api/deliveries/replay", json!({"ids": [first]})).await;
    assert_eq!(named["requeued"], 1);
    app.wait_for_status("haravan/legion-purchase", "delivered")
        .await;
    app.wait_for_deliveries(|rows| {
        rows.iter()
            .filter(|r| r.mapping == "haravan/legion-purchase")
            .all(|r| r.status == "delivered")
    })
    .await;
    assert!(legion.received().len() > sent_before);
    for id in [second, third] {
        let attempts = app.attempts_of(id).await;
        assert!(
            attempts.iter().any(|a| a.0 == "dead"),
            "a replay adds attempts, never erases: {attempts:?}"
        );
        assert_eq!(attempts.last().map(|a| a.0.as_str()), Some("delivered"));
    }

    // A cancel by a filter that names something.
    app.post_paid_haravan_orders(8100, 1).await;
    let (status, body) = post(&app, "/api/deliveries/cancel", json!({"filter": {}})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("never takes every")
    );
    for bad in [
        json!({}),
        json!({"ids": []}),
        json!({"ids": [1], "filter": {}}),
        json!({"ids": "1"}),
    ] {
        let (status, body) = post(&app, "/api/deliveries/cancel", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
    let (status, body) = post(
        &app,
        "/api/deliveries/replay",
        json!({"filter": {"status": "dead", "limit": 3}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn retranslate_runs_the_live_mappings_again_over_stored_webhooks() {
    // Legion runs dry here: its deliveries are kept as dry runs.
    let app = spawn_app_with(|env| {
        env.insert("STOREHOOK_ADMIN_TOKEN".into(), TOKEN.into());
    })
    .await;
    app.post_paid_haravan_orders(9001, 2).await;
    let rows = app
        .wait_for_deliveries(|rows| {
            rows.iter()
                .filter(|r| r.mapping == "haravan/legion-purchase" && r.status == "dry_run")
                .count()
                == 2
        })
        .await;
    let webhook = rows[0].webhook_id;
    let (status, done) = post(
        &app,
        "/api/webhooks/retranslate",
        json!({"ids": [webhook], "mapping": "haravan/legion-purchase"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["webhooks"], 1);
    assert_eq!(
        done["replaced"], 0,
        "a dry run takes a new payload only when named"
    );
    let (status, done) = post(
        &app,
        "/api/webhooks/retranslate",
        json!({"filter": {"status": "dry_run", "destination": "legion"}}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["webhooks"].as_u64(), done["replaced"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(done["failed"], json!([]));
    // Replaced, they run again (dry again).
    app.wait_for_deliveries(|rows| {
        rows.iter()
            .filter(|r| r.mapping == "haravan/legion-purchase")
            .all(|r| r.status == "dry_run")
    })
    .await;
    let (status, body) = post(
        &app,
        "/api/webhooks/retranslate",
        json!({"ids": [webhook], "mapping": "haravan/nothing"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("haravan/legion-purchase")
    );
}

/// A copy of the shipped mappings in a directory of its own.
pub fn copy_of_the_mappings(into: &std::path::Path) {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    for entry in walk(&shipped) {
        let relative = entry.strip_prefix(&shipped).unwrap();
        let target = into.join(relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, target).unwrap();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn mappings_are_listed_with_load_errors_and_a_broken_reload_keeps_the_live_ones() {
    let mappings = tempfile::tempdir().unwrap();
    copy_of_the_mappings(mappings.path());
    let dir = mappings.path().display().to_string();
    let app = spawn_app_with(|env| {
        env.insert("STOREHOOK_ADMIN_TOKEN".into(), TOKEN.into());
        env.insert("STOREHOOK_MAPPINGS_DIR".into(), dir);
    })
    .await;
    let listed = get(&app, "/api/mappings").await;
    let live = listed["live"].as_array().unwrap().len();
    assert!(live >= 4, "{listed}");
    assert_eq!(listed["errors"], json!([]));
    let legion = listed["live"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "haravan/legion-purchase")
        .unwrap();
    assert_eq!(legion["operation"], "legion.purchase_event");
    let (status, reloaded) = post(&app, "/api/mappings/reload", json!(null)).await;
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(reloaded["count"], live);
    // SQLite: one instance serves the store, so there is no other to tell.
    assert_eq!(reloaded["announced"], false, "{reloaded}");

    let broken = mappings.path().join("haravan/legion-purchase.toml");
    std::fs::write(&broken, "description = \"broken\"\nplatform = ").unwrap();
    let listed = get(&app, "/api/mappings").await;
    let errors = listed["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("legion-purchase.toml")),
        "{listed}"
    );
    assert_eq!(listed["live"].as_array().unwrap().len(), live);
    let (status, body) = post(&app, "/api/mappings/reload", json!(null)).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("legion-purchase.toml"),
        "{body}"
    );
    // The mappings in force still translate.
    app.post_paid_haravan_orders(9501, 1).await;
    app.wait_for_status("haravan/legion-purchase", "dry_run")
        .await;
}

#[tokio::test]
async fn translate_gives_every_mapping_s_outcome_for_every_fixture_and_stores_nothing() {
    let app = spawn_app_with(|env| {
        env.insert("STOREHOOK_ADMIN_TOKEN".into(), TOKEN.into());
    })
    .await;
    let mappings = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let env = test_env(app._dir.path());
    let config =
        storehook::config::Config::parse(storehook::config::EMBEDDED, "storehook.toml", &|name| {
            env.get(name).cloned()
        })
        .unwrap();
    let catalog = storehook::mapping::Catalog::load(&mappings)
        .unwrap()
        .with_source_vars(config.source_vars());
    let mut printed_by_the_cli = BTreeSet::new();
    let mut outcomes = BTreeSet::new();
    for platform in PLATFORMS {
        for fixture in fixtures(platform) {
            let topic_header = match platform {
                "haravan" => "X-Haravan-Topic",
                "woocommerce" => "X-WC-Webhook-Topic",
                _ => "X-Shopify-Topic",
            };
            let topic = fixture.header(topic_header).expect("a recorded topic");
            let headers: serde_json::Map<String, Value> = fixture
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), Value::String(v.clone())))
                .collect();
            let mut request = json!({
                "platform": platform,
                "topic": topic,
                "body": String::from_utf8(fixture.body.clone()).unwrap(),
                "headers": headers,
            });
            if let Some(source) = &fixture.source {
                request["source"] = json!(source);
            }
            let (status, translation) = post(&app, "/api/translate", request).await;
            let name = fixture.path.display();
            assert_eq!(status, 200, "{name}: {translation}");
            // The same plans and skips as the receive path makes of it (the catalog with the
            // configuration's per-source values), and, for the first fixture of each
            // platform, as `storehook translate` prints.
            let source = fixture.source.clone().unwrap_or(platform.to_string());
            let lowercased: std::collections::BTreeMap<String, String> = fixture
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect();
            let (made, _) = catalog.plans_and_error(&storehook::mapping::Webhook {
                source: &source,
                platform: platform.parse().unwrap(),
                topic,
                headers: &lowercased,
                body: &fixture.body,
            });
            let mut expected: Vec<Value> = made
                .iter()
                .map(|o| serde_json::to_value(o).unwrap())
                .collect();
            if !printed_by_the_cli.contains(platform) {
                printed_by_the_cli.insert(platform);
                let output = app.cli(
                    &mappings,
                    &["translate", &fixture.path.display().to_string()],
                );
                assert!(
                    output.status.success(),
                    "{name}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let printed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
                assert_eq!(printed, expected, "{name}");
                expected = printed;
            }
            for expected in &expected {
                let mapping = expected["mapping"].as_str().unwrap();
                let tried = translation["mappings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["mapping"] == mapping)
                    .unwrap_or_else(|| panic!("{name}: no outcome of {mapping}: {translation}"));
                match expected.get("skipped") {
                    Some(reason) => {
                        assert_eq!(tried["outcome"], "skip", "{name} {mapping}");
                        assert_eq!(&tried["reason"], reason);
                    }
                    None => {
                        assert_eq!(tried["outcome"], "plan", "{name} {mapping}");
                        assert_eq!(tried["payload"], expected["payload"], "{name} {mapping}");
                    }
                }
            }
            for tried in translation["mappings"].as_array().unwrap() {
                outcomes.insert(tried["outcome"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(
        outcomes.contains("plan") && outcomes.contains("skip"),
        "{outcomes:?}"
    );
    assert!(app.inbox().await.is_empty(), "nothing stored");
    assert!(app.delivery_rows().await.is_empty());

    // A payload that breaks its operation's schema names every violation.
    let mut order: Value =
        serde_json::from_slice(&fixture("haravan", "paid-two-items-discount").body).unwrap();
    order.as_object_mut().unwrap().remove("total_price");
    order.as_object_mut().unwrap().remove("created_at");
    let (status, translation) = post(
        &app,
        "/api/translate",
        json!({"platform": "haravan", "topic": "orders/paid", "body": order}),
    )
    .await;
    assert_eq!(status, 200, "{translation}");
    let legion = translation["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mapping"] == "haravan/legion-purchase")
        .unwrap();
    assert_eq!(legion["outcome"], "error", "{legion}");
    assert!(
        legion["message"].as_str().unwrap().contains("schema"),
        "{legion}"
    );
    assert!(
        legion["schema_errors"].as_array().unwrap().len() >= 2,
        "{legion}"
    );
    assert!(
        translation["error"]
            .as_str()
            .unwrap()
            .contains("legion-purchase")
    );

    for (bad, named) in [
        (
            json!({"platform": "magento", "topic": "t", "body": {}}),
            "platform",
        ),
        (
            json!({"platform": "haravan", "topic": "orders/paid", "body": {}, "source": "shopify"}),
            "source",
        ),
        (
            json!({"platform": "haravan", "topic": "orders/paid", "body": {}, "source": "nowhere"}),
            "nowhere",
        ),
        (json!({"platform": "haravan", "body": {}}), "topic"),
    ] {
        let (status, body) = post(&app, "/api/translate", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(named),
            "{bad}: {body}"
        );
    }
    let (status, unrouted) = post(
        &app,
        "/api/translate",
        json!({"platform": "haravan", "topic": "orders/none", "body": {}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(unrouted["mappings"], json!([]));
    assert!(
        unrouted["error"]
            .as_str()
            .unwrap()
            .contains("no mapping applies")
    );
}

#[tokio::test]
async fn stats_count_deliveries_per_status_and_destination_with_circuits_and_minutes() {
    let (app, legion) = admin_app(|_| {}).await;
    legion.answer(503, vec![], "down");
    paid_orders_delivered(&app, 9901, 2).await;
    let stats = get(&app, "/api/stats").await;
    assert!(
        stats["totals"]["delivered"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    let destinations = stats["destinations"].as_array().unwrap();
    let legion_stats = destinations
        .iter()
        .find(|d| d["destination"] == "legion")
        .expect("legion");
    assert_eq!(legion_stats["counts"]["delivered"], 2);
    assert_eq!(legion_stats["circuit"]["state"], "closed");
    assert!(destinations.iter().any(|d| d["destination"] == "salekit"));
    let minutes = stats["per_minute"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let delivered: u64 = minutes
        .iter()
        .map(|m| m["delivered"].as_u64().unwrap())
        .sum();
    let failed: u64 = minutes.iter().map(|m| m["failed"].as_u64().unwrap()).sum();
    assert_eq!(delivered, 2, "{minutes:?}");
    // One refused request: an attempt for each delivery it carried (a batch of one or two).
    assert!((1..=2).contains(&failed), "{minutes:?}");
}

#[tokio::test]
async fn the_openapi_document_parses_and_lists_every_route() {
    let (app, _legion) = admin_app(|_| {}).await;
    let document = get(&app, "/api/openapi.json").await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(document["info"]["title"], "storehook admin API");
    // Every operation answers something, and every reference names a schema that is there.
    let schemas = &document["components"]["schemas"];
    let mut references = Vec::new();
    collect_refs(&document, &mut references);
    assert!(!references.is_empty());
    for reference in &references {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a schema reference: {reference}"));
        assert!(
            schemas.get(name).is_some(),
            "{reference} is not in the document"
        );
    }
    let mut listed = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (verb, operation) in item.as_object().unwrap() {
            assert!(
                !operation["responses"].as_object().unwrap().is_empty(),
                "{verb} {path}"
            );
            assert_eq!(
                operation["security"][0]["bearer"],
                json!([]),
                "{verb} {path}"
            );
            listed.insert((verb.clone(), path.clone()));
        }
    }
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(verb, path, _)| (verb.to_string(), path.to_string()))
        .collect();
    assert_eq!(listed, routes);
    for schema in [
        "WebhookSummary",
        "DeliverySummary",
        "DeliveryStatus",
        "Translation",
        "Stats",
    ] {
        assert!(schemas.get(schema).is_some(), "{schema} in {schemas}");
    }
    let statuses = &schemas["DeliveryStatus"]["enum"];
    assert!(
        statuses.as_array().unwrap().contains(&json!("cancelled")),
        "{statuses}"
    );
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}

/// Every `$ref` in a JSON document.
fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => into.push(reference.clone()),
                    _ => collect_refs(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, into)),
        _ => {}
    }
}

fn now_ms() -> i64 {
    storehook::store::now_ms()
}
