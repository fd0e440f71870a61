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
    admin_app_in(|_| {}, adjust).await
}

/// [`admin_app_refusing`], after `adjust_env` changed the test environment.
async fn admin_app_in(
    adjust_env: impl FnOnce(&mut std::collections::BTreeMap<String, String>),
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
            adjust_env(env);
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

/// The routes the admin API has: (method, path as the OpenAPI document names it). The
/// document must list each; the 401 test goes over every route the document lists.
const KNOWN_ROUTES: [(&str, &str); 12] = [
    ("get", "/api/openapi.json"),
    ("get", "/api/webhooks"),
    ("get", "/api/webhooks/{id}"),
    ("post", "/api/webhooks/retranslate"),
    ("get", "/api/deliveries"),
    ("get", "/api/deliveries/{id}"),
    ("post", "/api/deliveries/replay"),
    ("post", "/api/deliveries/cancel"),
    ("get", "/api/mappings"),
    ("post", "/api/mappings/reload"),
    ("post", "/api/translate"),
    ("get", "/api/stats"),
];

fn method(name: &str) -> Method {
    name.to_uppercase().parse().unwrap()
}

/// Every (method, path) of an OpenAPI document.
fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(move |verb| (verb.clone(), path.clone()))
        })
        .collect()
}

/// A documented path with each parameter given an id that exists: `webhook`'s, `delivery`'s.
fn concrete(path: &str, webhook: i64, delivery: i64) -> String {
    let concrete = match path {
        "/api/webhooks/{id}" => path.replace("{id}", &webhook.to_string()),
        "/api/deliveries/{id}" => path.replace("{id}", &delivery.to_string()),
        _ => path.to_string(),
    };
    assert!(
        !concrete.contains('{'),
        "{path}: give its parameters an example id that exists"
    );
    concrete
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

/// A time after everything stored so far and before anything stored from now on: the clock
/// has passed it when this returns.
async fn a_moment_between() -> i64 {
    let moment = now_ms() + 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while now_ms() <= moment {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock stands still"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    moment
}

/// Posts a paid Haravan order `id` without its total and creation time: Legion's mapping
/// makes a payload its schema refuses, so the webhook is stored `untranslated`.
async fn post_unschematic_order(app: &TestApp, id: u64) {
    let fixture = fixture("haravan", "paid-two-items-discount");
    let mut order: Value = serde_json::from_slice(&fixture.body).unwrap();
    order["id"] = id.into();
    order.as_object_mut().unwrap().remove("total_price");
    order.as_object_mut().unwrap().remove("created_at");
    let body = serde_json::to_vec(&order).unwrap();
    let response = app
        .post_signed("haravan", &fixture, &body, secret_of("haravan"))
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn every_route_answers_401_without_the_token_or_with_a_wrong_one() {
    // Each wrong token comes from a client address of its own (behind a trusted proxy), so
    // that none is throttled: each answer is the route's own.
    let (app, _legion) = admin_app(|config| {
        config.admin.trusted_proxy_header = Some("Fly-Client-IP".into());
    })
    .await;
    paid_orders_delivered(&app, 1, 1).await;
    let delivery = app.delivery_rows().await[0].id;
    let webhook = app.inbox().await[0].id;
    let document = get(&app, "/api/openapi.json").await;
    let routes = documented_routes(&document);
    for (verb, path) in KNOWN_ROUTES {
        assert!(
            routes.contains(&(verb.to_string(), path.to_string())),
            "{verb} {path} is not in the document"
        );
    }
    for (n, (verb, documented)) in routes.iter().enumerate() {
        let path = concrete(documented, webhook, delivery);
        let (status, body) = call(&app, &app.address, method(verb), &path, None, None).await;
        assert_eq!(status, 401, "{verb} {path} without a token: {body}");
        assert_eq!(body["error"], "unauthorized", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("Bearer"),
            "{body}"
        );
        let wrong = app
            .client
            .request(method(verb), format!("{}{path}", app.address))
            .bearer_auth("wrong")
            .header("Fly-Client-IP", format!("198.51.100.{}", n + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{verb} {path} with a wrong token");
        // With the token, the route is there as documented (not 404 nor 405): its answer
        // is its own, 400 for a POST without a body.
        let (status, body) = call(&app, &app.address, method(verb), &path, Some(TOKEN), None).await;
        assert!(
            ![401, 404, 405].contains(&status),
            "{verb} {path} with the token: {status} {body}"
        );
    }
    // The webhook endpoints stay open (their signatures guard them).
    app.post_paid_haravan_orders(2, 1).await;
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
    // Five paid Haravan orders, translated; then three webhooks that each differ from them
    // in one way: the source, the topic, the status.
    paid_orders_delivered(&app, 5001, 5).await;
    let mid = a_moment_between().await;
    let shopify = fixture("shopify", "paid-two-items-discount");
    let response = app
        .post_fixture("shopify", &shopify, secret_of("shopify"))
        .await;
    assert_eq!(response.status(), 200);
    let cancelled = fixture("haravan", "cancelled-refunded");
    let response = app
        .post_fixture("haravan", &cancelled, secret_of("haravan"))
        .await;
    assert_eq!(response.status(), 200);
    post_unschematic_order(&app, 5009).await;

    let ids = |page: &Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_i64().unwrap())
            .collect()
    };
    let all = get(&app, "/api/webhooks").await;
    assert_eq!(ids(&all).len(), 8);
    assert_eq!(all["next_cursor"], Value::Null);
    let first = &all["items"][0];
    assert!(first.get("headers").is_none(), "a listing has no headers");
    let inbox = app.inbox().await;
    let paid: BTreeSet<i64> = inbox[..5].iter().map(|w| w.id).collect();
    let [shopify, cancelled, unschematic] = [5, 6, 7].map(|i| inbox[i].id);
    // Each of the three matches the others' filters: only its own excludes it.
    let described = |id: i64| -> (String, String, String) {
        let w = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == id)
            .unwrap();
        let text = |field: &str| w[field].as_str().unwrap().to_string();
        (text("source"), text("topic"), text("status"))
    };
    assert_eq!(
        described(shopify),
        ("shopify".into(), "orders/paid".into(), "translated".into())
    );
    assert_eq!(
        described(cancelled),
        (
            "haravan".into(),
            "orders/cancelled".into(),
            "translated".into()
        )
    );
    assert_eq!(
        described(unschematic),
        (
            "haravan".into(),
            "orders/paid".into(),
            "untranslated".into()
        )
    );
    let listed = |query: &str| {
        let query = query.to_string();
        let app = &app;
        async move {
            let page = get(app, &format!("/api/webhooks?{query}")).await;
            ids(&page).into_iter().collect::<BTreeSet<i64>>()
        }
    };
    let haravan = get(
        &app,
        "/api/webhooks?source=haravan&topic=orders/paid&status=translated",
    )
    .await;
    assert_eq!(ids(&haravan).into_iter().collect::<BTreeSet<_>>(), paid);
    assert!(
        haravan["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["deliveries"].as_u64() >= Some(1))
    );
    assert_eq!(listed("source=shopify").await, BTreeSet::from([shopify]));
    assert_eq!(
        listed("topic=orders/cancelled").await,
        BTreeSet::from([cancelled])
    );
    assert_eq!(
        listed("status=untranslated").await,
        BTreeSet::from([unschematic])
    );
    let order_5003 = inbox
        .iter()
        .find(|w| serde_json::from_slice::<Value>(&w.body).unwrap()["id"] == 5003)
        .unwrap()
        .id;
    assert_eq!(listed("order_id=5003").await, BTreeSet::from([order_5003]));
    assert_eq!(
        listed(&format!("since={mid}")).await,
        BTreeSet::from([shopify, cancelled, unschematic])
    );
    assert_eq!(listed(&format!("until={mid}")).await, paid);
    let later = now_ms() + 60_000;
    assert!(listed(&format!("since={later}")).await.is_empty());
    assert_eq!(
        listed(&format!("since={before}&until=2100-01-01T00:00:00Z"))
            .await
            .len(),
        8
    );

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
    // Salekit takes deliveries too: two destinations deliver.
    let (_salekit, salekit_url) = Double::start_with(|_| {
        (
            200,
            vec![],
            r#"{"error": false, "msg": "Thành công"}"#.into(),
        )
    })
    .await;
    let (app, legion, _) = admin_app_in(
        |env| {
            env.insert("SALEKIT_BASE_URL".into(), salekit_url);
            env.insert("SALEKIT_TOKEN".into(), "salekit-token".into());
        },
        |_| {},
    )
    .await;
    legion.answer(503, vec![], "down");
    paid_orders_delivered(&app, 7001, 3).await;
    let salekit_delivered = |count: usize| {
        move |rows: &[DeliveryRow]| {
            rows.iter()
                .filter(|r| r.mapping == "haravan/salekit-audience" && r.status == "delivered")
                .count()
                == count
        }
    };
    app.wait_for_deliveries(salekit_delivered(3)).await;
    let mid = a_moment_between().await;
    // An order Legion skips (no mobile number); Salekit takes its buyer.
    let guest = fixture("haravan", "guest-email-only");
    let response = app
        .post_fixture("haravan", &guest, secret_of("haravan"))
        .await;
    assert_eq!(response.status(), 200);
    let rows = app.wait_for_deliveries(salekit_delivered(4)).await;
    let guest_webhook = app.inbox().await[3].id;

    let ids_where = |keep: &dyn Fn(&DeliveryRow) -> bool| -> BTreeSet<i64> {
        rows.iter().filter(|r| keep(r)).map(|r| r.id).collect()
    };
    let is_legion = |r: &DeliveryRow| r.mapping == "haravan/legion-purchase";
    let is_salekit = |r: &DeliveryRow| r.mapping == "haravan/salekit-audience";
    let legion_delivered = ids_where(&|r| is_legion(r) && r.status == "delivered");
    let legion_skipped = ids_where(&|r| is_legion(r) && r.status == "skipped");
    let salekit = ids_where(&is_salekit);
    assert_eq!(legion_delivered.len(), 3);
    assert_eq!(legion_skipped.len(), 1, "{rows:#?}");
    assert_eq!(salekit.len(), 4);
    let listed = |query: &str| {
        let query = query.to_string();
        let app = &app;
        async move {
            let page = get(app, &format!("/api/deliveries?{query}")).await;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_i64().unwrap())
                .collect::<BTreeSet<i64>>()
        }
    };
    // Each filter alone takes more than both together.
    assert_eq!(
        listed("destination=legion&status=delivered").await,
        legion_delivered
    );
    assert_eq!(
        listed("destination=legion").await,
        &legion_delivered | &legion_skipped
    );
    assert_eq!(
        listed("status=delivered").await,
        &legion_delivered | &salekit
    );
    assert_eq!(listed("status=skipped").await, legion_skipped);
    let by_mapping = get(&app, "/api/deliveries?mapping=haravan/salekit-audience").await;
    let by_mapping = by_mapping["items"].as_array().unwrap();
    assert_eq!(by_mapping.len(), 4);
    assert!(
        by_mapping
            .iter()
            .all(|d| d["mapping"] == "haravan/salekit-audience" && d["destination"] == "salekit")
    );
    let of_the_guest = ids_where(&|r| r.webhook_id == guest_webhook);
    assert_eq!(listed(&format!("since={mid}")).await, of_the_guest);
    assert_eq!(
        listed(&format!("until={mid}")).await,
        ids_where(&|r| r.webhook_id != guest_webhook)
    );
    let later = now_ms() + 60_000;
    assert!(listed(&format!("since={later}")).await.is_empty());
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

    // Cancel one by id; a replay by filter then leaves it cancelled and sends the two others.
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

    // A filter that names nothing is refused, though there are deliveries it would take
    // (cancels by a filter that names something: the test below).
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
async fn cancel_by_filter_cancels_the_matching_deliveries_and_leaves_the_others() {
    // Salekit is down for an hour: its deliveries stay pending. Legion refuses two orders
    // for good (dead) and takes a third.
    let (_salekit, salekit_url) = Double::start_with(|_| (503, vec![], "down".into())).await;
    let (app, _legion, refuse) = admin_app_in(
        |env| {
            env.insert("SALEKIT_BASE_URL".into(), salekit_url);
            env.insert("SALEKIT_TOKEN".into(), "salekit-token".into());
        },
        |config| {
            config
                .destinations
                .get_mut("salekit")
                .unwrap()
                .retry_schedule = vec![Duration::from_secs(3600)];
        },
    )
    .await;
    refuse.store(true, Ordering::SeqCst);
    app.post_paid_haravan_orders(8201, 2).await;
    app.wait_for_deliveries(|rows| {
        rows.iter()
            .filter(|r| r.mapping == "haravan/legion-purchase" && r.status == "dead")
            .count()
            == 2
    })
    .await;
    refuse.store(false, Ordering::SeqCst);
    app.post_paid_haravan_orders(8203, 1).await;
    let rows = app
        .wait_for_deliveries(|rows| {
            let salekit_waiting = rows
                .iter()
                .filter(|r| {
                    r.mapping == "haravan/salekit-audience"
                        && r.status == "pending"
                        && r.attempts == 1
                })
                .count();
            salekit_waiting == 3
                && rows
                    .iter()
                    .any(|r| r.mapping == "haravan/legion-purchase" && r.status == "delivered")
        })
        .await;
    let of = |mapping: &str, order: u64| {
        rows.iter()
            .find(|r| r.mapping == mapping && r.key == format!("haravan/{order}"))
            .unwrap_or_else(|| panic!("the {mapping} delivery of order {order}: {rows:#?}"))
            .clone()
    };
    let legion = |order| of("haravan/legion-purchase", order);
    let salekit = |order| of("haravan/salekit-audience", order);
    let status_of = |id: i64| {
        let app = &app;
        async move {
            get(app, &format!("/api/deliveries/{id}")).await["status"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let statuses = || async {
        let mut now = Vec::new();
        for order in [8201, 8202, 8203] {
            now.push(status_of(legion(order).id).await);
            now.push(status_of(salekit(order).id).await);
        }
        now
    };
    assert_eq!(
        statuses().await,
        ["dead", "pending", "dead", "pending", "delivered", "pending"]
    );

    // Legion's dead ones: not Salekit's pending ones, nor Legion's delivered one.
    let (status, done) = post(
        &app,
        "/api/deliveries/cancel",
        json!({"filter": {"destination": "legion", "status": "dead"}}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done, json!({"cancelled": 2, "skipped": 0}));
    assert_eq!(
        statuses().await,
        [
            "cancelled",
            "pending",
            "cancelled",
            "pending",
            "delivered",
            "pending"
        ]
    );
    let listed = get(&app, "/api/deliveries?status=cancelled").await;
    let cancelled: BTreeSet<i64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        cancelled,
        BTreeSet::from([legion(8201).id, legion(8202).id])
    );

    // One webhook's pending Salekit delivery, by mapping and webhook.
    let (status, done) = post(
        &app,
        "/api/deliveries/cancel",
        json!({"filter": {"mapping": "haravan/salekit-audience", "webhook": salekit(8202).webhook_id}}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done, json!({"cancelled": 1, "skipped": 0}));
    assert_eq!(
        statuses().await,
        [
            "cancelled",
            "pending",
            "cancelled",
            "cancelled",
            "delivered",
            "pending"
        ]
    );

    // A delivered delivery is never cancelled; nor is one twice.
    let (status, done) = post(
        &app,
        "/api/deliveries/cancel",
        json!({"filter": {"destination": "legion"}}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["cancelled"], 0, "{done}");
    assert_eq!(status_of(legion(8203).id).await, "delivered");
}

#[tokio::test]
async fn retranslate_runs_the_live_mappings_again_over_stored_webhooks() {
    // Mappings of its own, to fix them after webhooks were translated. Legion is live on a
    // double; Salekit runs dry.
    let mappings = tempfile::tempdir().unwrap();
    copy_of_the_mappings(mappings.path());
    let dir = mappings.path().display().to_string();
    let (app, legion, refuse) = admin_app_in(
        |env| {
            env.insert("STOREHOOK_MAPPINGS_DIR".into(), dir);
        },
        |_| {},
    )
    .await;
    // Order 9001 delivered to Legion, 9002 refused for good (dead).
    paid_orders_delivered(&app, 9001, 1).await;
    refuse.store(true, Ordering::SeqCst);
    app.post_paid_haravan_orders(9002, 1).await;
    app.wait_for_deliveries(|rows| {
        rows.iter()
            .any(|r| r.key == "haravan/9002" && r.status == "dead")
            && rows
                .iter()
                .filter(|r| r.mapping == "haravan/salekit-audience" && r.status == "dry_run")
                .count()
                == 2
    })
    .await;
    refuse.store(false, Ordering::SeqCst);
    let salekit_of = |order: u64| {
        let app = &app;
        async move {
            app.delivery_rows()
                .await
                .into_iter()
                .find(|r| {
                    r.mapping == "haravan/salekit-audience" && r.key == format!("haravan/{order}")
                })
                .unwrap()
        }
    };
    let (delivered, dead) = (
        legion_delivery(&app, 9001).await,
        legion_delivery(&app, 9002).await,
    );
    let (dry_9001, dry_9002) = (salekit_of(9001).await, salekit_of(9002).await);
    let [webhook_9001, webhook_9002] = [delivered.webhook_id, dead.webhook_id];
    let detail = |id: i64| {
        let app = &app;
        async move { get(app, &format!("/api/deliveries/{id}")).await }
    };
    let outcomes = |detail: &Value| -> Vec<String> {
        detail["attempt_log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["outcome"].as_str().unwrap().to_string())
            .collect()
    };
    let branch = |detail: &Value| detail["payload"]["payload"]["branch"].clone();
    let src = |detail: &Value| detail["payload"]["src"].clone();
    assert_eq!(branch(&detail(delivered.id).await), "");
    assert_eq!(src(&detail(dry_9001.id).await), "haravan");

    // The fix: Legion's events name a branch, Salekit's contacts another `src`; live once
    // reloaded.
    let edit = |file: &str, from: &str, to: &str| {
        let path = mappings.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has {from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit(
        "haravan/legion-purchase.toml",
        r#"branch                    = '""'"#,
        r#"branch                    = '"after the fix"'"#,
    );
    edit(
        "haravan/salekit-audience.toml",
        r#"src     = '"haravan"'"#,
        r#"src     = '"haravan, fixed"'"#,
    );
    let (status, reloaded) = post(&app, "/api/mappings/reload", json!(null)).await;
    assert_eq!(status, 200, "{reloaded}");
    let sent_before = legion.received().len();

    // Legion's mapping over both orders: the dead delivery takes the new payload and goes
    // out again; the delivered one keeps the payload Legion has.
    let (status, done) = post(
        &app,
        "/api/webhooks/retranslate",
        json!({"ids": [webhook_9001, webhook_9002], "mapping": "haravan/legion-purchase"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        done,
        json!({"webhooks": 2, "added": 0, "replaced": 1, "failed": []})
    );
    app.wait_for_deliveries(|rows| {
        rows.iter()
            .any(|r| r.id == dead.id && r.status == "delivered")
    })
    .await;
    let resent = detail(dead.id).await;
    assert_eq!(branch(&resent), "after the fix", "{resent}");
    assert_eq!(outcomes(&resent), ["dead", "delivered"]);
    let sent: Vec<String> = legion.received()[sent_before..]
        .iter()
        .map(|r| r.body.to_string())
        .collect();
    assert!(
        sent.len() == 1 && sent[0].contains("after the fix"),
        "Legion got the fixed event once: {sent:?}"
    );
    let kept = detail(delivered.id).await;
    assert_eq!(branch(&kept), "", "a delivered delivery is never replaced");
    assert_eq!(outcomes(&kept), ["delivered"]);
    // Only the mapping named was written: Salekit's dry runs are as they were.
    assert_eq!(src(&detail(dry_9001.id).await), "haravan");

    // A dry run takes a new payload only when its status is named.
    let (status, done) = post(
        &app,
        "/api/webhooks/retranslate",
        json!({"ids": [webhook_9001], "mapping": "haravan/salekit-audience"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["webhooks"].as_u64(), done["replaced"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(src(&detail(dry_9001.id).await), "haravan");
    let (status, done) = post(
        &app,
        "/api/webhooks/retranslate",
        json!({"filter": {"status": "dry_run", "destination": "salekit"}}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (done["webhooks"].as_u64(), done["replaced"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(done["failed"], json!([]));
    // Replaced, they run again (dry again), with the new payload: a second attempt each.
    for id in [dry_9001.id, dry_9002.id] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let rerun = loop {
            let now = detail(id).await;
            if outcomes(&now).len() == 2 {
                break now;
            }
            assert!(std::time::Instant::now() < deadline, "not run again: {now}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(src(&rerun), "haravan, fixed", "{rerun}");
        assert_eq!(outcomes(&rerun), ["dry_run", "dry_run"]);
        assert_eq!(rerun["status"], "dry_run");
    }
    // Legion's deliveries were not touched by Salekit's re-translation.
    assert_eq!(legion.received().len(), sent_before + 1);

    let (status, body) = post(
        &app,
        "/api/webhooks/retranslate",
        json!({"ids": [webhook_9001], "mapping": "haravan/nothing"}),
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
    let listed = documented_routes(&document);
    for (verb, path) in &listed {
        let operation = &document["paths"][path][verb];
        assert!(
            !operation["responses"].as_object().unwrap().is_empty(),
            "{verb} {path}"
        );
        assert_eq!(
            operation["security"][0]["bearer"],
            json!([]),
            "{verb} {path}"
        );
    }
    for (verb, path) in KNOWN_ROUTES {
        assert!(
            listed.contains(&(verb.to_string(), path.to_string())),
            "{verb} {path} is not in the document: {listed:?}"
        );
    }
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
