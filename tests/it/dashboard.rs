//! The dashboard at `/admin` over real HTTP: the login form and its cookie, the redirect of
//! every page without the session, the CSRF token every form needs, replay from the dead
//! letters, the playground, and Vietnamese and Persian text as it was sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::doubles::Double;
use crate::harness::*;

pub const TOKEN: &str = "dashboard-token-for-tests";

/// An app with the admin token set, Legion live on a double that refuses every request
/// with 400 while the returned flag is set (else answers `200 {}`), retries quick, and the
/// mappings read from `mappings_dir` (the shipped ones when `None`).
pub async fn dashboard_app(
    mappings_dir: Option<&std::path::Path>,
) -> (TestApp, Double, Arc<AtomicBool>) {
    dashboard_app_configured(mappings_dir, |_| {}).await
}

/// [`dashboard_app`], with `adjust` changing the configuration.
pub async fn dashboard_app_configured(
    mappings_dir: Option<&std::path::Path>,
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
            if let Some(dir) = mappings_dir {
                env.insert("STOREHOOK_MAPPINGS_DIR".into(), dir.display().to_string());
            }
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

/// A form's body, as a browser posts it.
pub trait FormFields {
    fn form_fields(self, fields: &[(&str, &str)]) -> Self;
}

impl FormFields for reqwest::RequestBuilder {
    fn form_fields(self, fields: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

/// A client that does not follow redirects: the tests look at them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in with the token; the `name=value` of the session cookie.
async fn login(app: &TestApp) -> String {
    let response = client()
        .post(format!("{}/admin/login", app.address))
        .form_fields(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response.headers()[SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

/// GETs a page with the session cookie: (status, body).
async fn page(app: &TestApp, cookie: &str, path: &str) -> (StatusCode, String) {
    let response = client()
        .get(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// POSTs a form with the session cookie: the response.
async fn submit(
    app: &TestApp,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    client()
        .post(format!("{}{path}", app.address))
        .header("cookie", cookie)
        .form_fields(fields)
        .send()
        .await
        .unwrap()
}

/// The CSRF token of the forms of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with the CSRF token");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn wait_for_status_of(app: &TestApp, status: &str) -> DeliveryRow {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = app.delivery_rows().await;
        if let Some(row) = rows
            .iter()
            .find(|r| r.mapping == "haravan/legion-purchase" && r.status == status)
        {
            return row.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no haravan/legion-purchase delivery became {status}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn login_sets_an_http_only_strict_cookie_and_wrong_tokens_are_throttled() {
    let (app, _legion, _) = dashboard_app(None).await;
    let (status, form) = page(&app, "", "/admin/login").await;
    assert_eq!(status, 200);
    assert!(form.contains(r#"name="token""#), "{form}");

    let response = client()
        .post(format!("{}/admin/login", app.address))
        .form_fields(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/admin");
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.starts_with("storehook_session="), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(!cookie.contains(TOKEN), "the cookie is not the token");
    let session = cookie.split(';').next().unwrap();
    let (status, overview) = page(&app, session, "/admin").await;
    assert_eq!(status, 200);
    assert!(overview.contains("Overview") && overview.contains("legion"));
    assert!(!overview.contains(TOKEN), "the token is never shown");

    // Wrong tokens: 401 with the form again, then 429 for the address, the right one too.
    for _ in 0..5 {
        let response = client()
            .post(format!("{}/admin/login", app.address))
            .form_fields(&[("token", "a-guess")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().get(SET_COOKIE).is_none());
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("not the admin token")
        );
    }
    for token in ["a-guess", TOKEN] {
        let response = client()
            .post(format!("{}/admin/login", app.address))
            .form_fields(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().contains_key("retry-after"));
        assert!(response.headers().get(SET_COOKIE).is_none());
    }
    // The API shares the lockout: the address is locked out there too.
    let api = app
        .client
        .get(format!("{}/api/stats", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::TOO_MANY_REQUESTS);

    // Logging out (with the form's CSRF token) clears the cookie.
    let csrf = csrf_of(&overview);
    let response = submit(&app, session, "/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/admin/login");
    let cleared = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("storehook_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn every_page_redirects_to_the_login_without_the_session() {
    let (app, _legion, _) = dashboard_app(None).await;
    app.post_paid_haravan_orders(7001, 1).await;
    let pages = [
        "/admin",
        "/admin/webhooks",
        "/admin/webhooks/1",
        "/admin/dead",
        "/admin/mappings",
        "/admin/playground",
        "/admin/playground?fixture=haravan/paid-two-items-discount",
    ];
    for cookie in ["", "storehook_session=forged", "other=1"] {
        for path in pages {
            let response = client()
                .get(format!("{}{path}", app.address))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path} {cookie}");
            assert_eq!(response.headers()[LOCATION], "/admin/login", "{path}");
        }
        let response = submit(&app, cookie, "/admin/mappings/reload", &[]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    // The API's bearer token is not a session.
    let response = client()
        .get(format!("{}/admin", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // With the session, every page answers.
    let cookie = login(&app).await;
    for path in pages {
        let (status, html) = page(&app, &cookie, path).await;
        assert_eq!(status, 200, "{path}: {html}");
        assert!(html.contains("<!doctype html>") && html.contains("viewport"));
    }
    let (status, html) = page(&app, &cookie, "/admin/webhooks/999999").await;
    assert_eq!(status, 404);
    assert!(html.contains("no webhook 999999"), "{html}");
    let (status, html) = page(&app, &cookie, "/admin/webhooks?status=lost").await;
    assert_eq!(status, 400);
    assert!(html.contains("status:"), "{html}");
}

#[tokio::test]
async fn every_form_is_refused_403_without_the_csrf_token() {
    let (app, _legion, refuse) = dashboard_app(None).await;
    refuse.store(true, Ordering::SeqCst);
    app.post_paid_haravan_orders(7101, 1).await;
    let dead = wait_for_status_of(&app, "dead").await;
    let cookie = login(&app).await;
    let (_, overview) = page(&app, &cookie, "/admin").await;
    let csrf = csrf_of(&overview);
    let id = dead.id.to_string();
    let webhook = dead.webhook_id.to_string();
    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/admin/logout".into(), vec![]),
        ("/admin/deliveries/replay".into(), vec![("ids", &id)]),
        ("/admin/deliveries/cancel".into(), vec![("ids", &id)]),
        ("/admin/mappings/reload".into(), vec![]),
        (format!("/admin/webhooks/{webhook}/retranslate"), vec![]),
        (
            "/admin/playground".into(),
            vec![
                ("platform", "haravan"),
                ("topic", "orders/paid"),
                ("body", "{}"),
            ],
        ),
    ];
    for (path, fields) in &forms {
        for wrong in [None, Some(""), Some("forged"), Some(TOKEN)] {
            let mut fields = fields.clone();
            if let Some(wrong) = wrong {
                fields.push(("csrf", wrong));
            }
            let response = submit(&app, &cookie, path, &fields).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path} {wrong:?}");
            assert!(response.headers().get(SET_COOKIE).is_none());
            assert!(response.text().await.unwrap().contains("CSRF"));
        }
    }
    // Nothing was done: the delivery is still dead, not replayed nor cancelled.
    let rows = app.delivery_rows().await;
    let still = rows.iter().find(|r| r.id == dead.id).unwrap();
    assert_eq!(still.status, "dead");
    // The same forms with the token are taken.
    for (path, fields) in forms.iter().skip(1) {
        let mut fields = fields.clone();
        fields.push(("csrf", &csrf));
        let response = submit(&app, &cookie, path, &fields).await;
        assert!(
            [StatusCode::SEE_OTHER, StatusCode::OK].contains(&response.status()),
            "{path}: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn replay_from_the_dead_letters_form_requeues_and_shows_the_result() {
    let (app, legion, refuse) = dashboard_app(None).await;
    refuse.store(true, Ordering::SeqCst);
    app.post_paid_haravan_orders(7201, 2).await;
    let cookie = login(&app).await;
    // Both orders' Legion deliveries die (Legion answers 400).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dead: Vec<DeliveryRow> = loop {
        let rows: Vec<DeliveryRow> = app
            .delivery_rows()
            .await
            .into_iter()
            .filter(|r| r.mapping == "haravan/legion-purchase" && r.status == "dead")
            .collect();
        if rows.len() == 2 {
            break rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, html) = page(&app, &cookie, "/admin/dead?destination=legion").await;
    assert_eq!(status, 200);
    for row in &dead {
        assert!(html.contains(&format!(r#"name="ids" value="{}""#, row.id)));
    }
    assert!(
        html.contains("refused by the test"),
        "the last error is shown"
    );
    assert!(html.contains(r#"id="select-all""#));
    let (_, other) = page(&app, &cookie, "/admin/dead?destination=scalef").await;
    assert!(!other.contains(r#"name="ids""#), "filtered by destination");

    refuse.store(false, Ordering::SeqCst);
    let before = legion.received().len();
    let csrf = csrf_of(&html);
    let first = dead[0].id.to_string();
    let response = submit(
        &app,
        &cookie,
        "/admin/deliveries/replay",
        &[("csrf", &csrf), ("back", "/admin/dead"), ("ids", &first)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/admin/dead?replayed=1&requeued=1"),
        "{location}"
    );
    let (_, result) = page(&app, &cookie, &location).await;
    assert!(
        result.contains("Replayed 1 selected: 1 back in the queue"),
        "{result}"
    );
    // It is delivered; the other one stays dead.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = app.delivery_rows().await;
        let replayed = rows.iter().find(|r| r.id == dead[0].id).unwrap();
        if replayed.status == "delivered" {
            assert_eq!(
                rows.iter().find(|r| r.id == dead[1].id).unwrap().status,
                "dead"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{replayed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(legion.received().len() > before);
    // The webhook's page shows both attempts on the delivery's timeline.
    let (_, detail) = page(
        &app,
        &cookie,
        &format!("/admin/webhooks/{}", dead[0].webhook_id),
    )
    .await;
    let card = &detail[detail
        .find(&format!(r#"id="delivery-{}""#, dead[0].id))
        .unwrap()..];
    let card = &card[..card.find("</ol>").unwrap()];
    assert!(
        card.contains(r#"<li><span class="badge dead">dead</span>"#)
            && card.contains(r#"<li><span class="badge delivered">delivered</span>"#)
            && card.contains("HTTP 400")
            && card.contains("refused by the test"),
        "{card}"
    );
    // Nothing selected is a clear answer.
    let response = submit(
        &app,
        &cookie,
        "/admin/deliveries/replay",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Select at least one")
    );
}

#[tokio::test]
async fn the_playground_shows_every_mapping_for_a_fixture_and_schema_errors_for_a_bad_payload() {
    let (app, legion, _) = dashboard_app(None).await;
    let cookie = login(&app).await;
    let (status, html) = page(
        &app,
        &cookie,
        "/admin/playground?fixture=haravan/paid-two-items-discount",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"id="topic" name="topic" value="orders&#x2f;paid""#),
        "{html}"
    );
    assert!(
        !html.contains("X-Haravan-Hmacsha256"),
        "no signature offered"
    );
    let csrf = csrf_of(&html);
    let body = String::from_utf8(fixture("haravan", "paid-two-items-discount").body).unwrap();
    let response = submit(
        &app,
        &cookie,
        "/admin/playground",
        &[
            ("csrf", &csrf),
            ("platform", "haravan"),
            ("topic", "orders/paid"),
            ("body", &body),
            ("headers", "X-Haravan-Org-Id: 200000123456"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(
        html.contains(r#"data-mapping="haravan&#x2f;legion-purchase" data-outcome="plan""#),
        "{html}"
    );
    // The plan's payload, as /api/translate gives it.
    let api: Value = app
        .client
        .post(format!("{}/api/translate", app.address))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"platform": "haravan", "topic": "orders/paid", "body": serde_json::from_str::<Value>(&body).unwrap()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let legion_plan = api["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mapping"] == "haravan/legion-purchase")
        .unwrap();
    let order_paid = legion_plan["payload"]["payload"]["order_paid_price"].to_string();
    assert!(
        html.contains(&format!("&quot;order_paid_price&quot;: {order_paid}")),
        "{html}"
    );
    let routed = api["mappings"].as_array().unwrap().len();
    assert_eq!(html.matches(r#"class="card outcome""#).count(), routed);

    // A payload that breaks Legion's schema: the error and every violation.
    let mut order: Value = serde_json::from_str(&body).unwrap();
    order.as_object_mut().unwrap().remove("total_price");
    order.as_object_mut().unwrap().remove("created_at");
    let bad = serde_json::to_string(&order).unwrap();
    let response = submit(
        &app,
        &cookie,
        "/admin/playground",
        &[
            ("csrf", &csrf),
            ("platform", "haravan"),
            ("topic", "orders/paid"),
            ("body", &bad),
        ],
    )
    .await;
    let html = response.text().await.unwrap();
    assert!(
        html.contains(r#"data-mapping="haravan&#x2f;legion-purchase" data-outcome="error""#),
        "{html}"
    );
    assert!(html.contains("Schema errors"), "{html}");
    // Not JSON, no topic, an unknown platform: a clear answer each.
    for (fields, expected) in [
        (
            [
                ("platform", "haravan"),
                ("topic", "orders/paid"),
                ("body", "{not json"),
            ],
            "the payload is not JSON",
        ),
        (
            [("platform", "haravan"), ("topic", ""), ("body", "{}")],
            "topic: name the webhook",
        ),
        (
            [
                ("platform", "magento"),
                ("topic", "orders/paid"),
                ("body", "{}"),
            ],
            "platform:",
        ),
    ] {
        let mut fields = fields.to_vec();
        fields.push(("csrf", &csrf));
        let html = submit(&app, &cookie, "/admin/playground", &fields)
            .await
            .text()
            .await
            .unwrap();
        assert!(html.contains(expected), "{expected}: {html}");
    }
    let (status, html) = page(&app, &cookie, "/admin/playground?fixture=../Cargo").await;
    assert_eq!(status, 400);
    assert!(html.contains("no fixture"), "{html}");
    // Nothing was stored or sent.
    assert!(app.inbox().await.is_empty());
    assert!(app.delivery_rows().await.is_empty());
    assert!(legion.received().is_empty());
}

#[tokio::test]
async fn vietnamese_and_persian_text_is_shown_as_sent_and_markup_escaped() {
    let (app, _legion, _) = dashboard_app(None).await;
    let vietnamese = fixture("haravan", "foreign-phone");
    assert_eq!(
        app.post_fixture("haravan", &vietnamese, secret_of("haravan"))
            .await
            .status(),
        200
    );
    let persian = fixture("woocommerce", "iran-irt-persian-digits");
    let mut order: Value = serde_json::from_slice(&persian.body).unwrap();
    order["customer_note"] = "<script>alert(1)</script>".into();
    let body = serde_json::to_vec(&order).unwrap();
    assert_eq!(
        app.post_signed("shop-ir", &persian, &body, secret_of("shop-ir"))
            .await
            .status(),
        200
    );
    let cookie = login(&app).await;
    let inbox = app.inbox().await;
    let response = client()
        .get(format!("{}/admin/webhooks/{}", app.address, inbox[0].id))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("Nguyễn Văn An"), "{html}");
    assert!(html.contains(r#"<pre id="body" dir="auto">"#));

    let (_, html) = page(&app, &cookie, &format!("/admin/webhooks/{}", inbox[1].id)).await;
    for text in ["علی", "رضایی", "خیابان ولیعصر، پلاک ۱۲", "تومان"]
    {
        assert!(html.contains(text), "{text}: {html}");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
    assert!(!html.contains("<script>alert(1)"), "autoescaped");
    // The signature header is redacted.
    assert!(html.contains("x-wc-webhook-signature"));
    assert!(!html.contains(&platform_signature(secret_of("shop-ir"), &body)));
    let (_, list) = page(&app, &cookie, "/admin/webhooks?source=shop-ir").await;
    assert!(list.contains(&format!(r#"data-webhook="{}""#, inbox[1].id)));
    assert!(!list.contains(&format!(r#"data-webhook="{}""#, inbox[0].id)));
}

#[tokio::test]
async fn the_dashboard_is_served_where_the_admin_api_is_with_a_secure_cookie_behind_https() {
    let (app, _legion, _) = dashboard_app_configured(None, |config| {
        config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        config.admin.trusted_proxy_header = Some("X-Forwarded-For".into());
    })
    .await;
    let admin = app.admin_address.clone().expect("an admin address");
    let main = client()
        .get(format!("{}/admin", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        main.status(),
        StatusCode::NOT_FOUND,
        "not on the main address"
    );
    let redirected = client().get(format!("{admin}/admin")).send().await.unwrap();
    assert_eq!(redirected.status(), StatusCode::SEE_OTHER);
    assert_eq!(redirected.headers()[LOCATION], "/admin/login");
    // Behind the trusted proxy, over HTTPS: the cookie is Secure.
    let response = client()
        .post(format!("{admin}/admin/login"))
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-forwarded-proto", "https")
        .form_fields(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap();
    let overview = client()
        .get(format!("{admin}/admin"))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), 200);
}

/// The log of a real `storehook serve` at `debug` while an operator logs in (once wrongly),
/// reloads the mappings, tries the playground and logs out: each action is there, with the
/// client's address; the token, the session cookie and the CSRF token are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_names_each_dashboard_action_and_never_the_token_cookie_or_csrf() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = crate::cli::storehook(dir.path());
    command
        .arg("--config")
        .arg(crate::cli::shipped_config())
        .envs(test_env(dir.path()))
        .env("STOREHOOK_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "debug");
    let (child, rx, mut log, port) = crate::cli::serve(command);
    let base = format!("http://127.0.0.1:{port}");
    let login = |token: &'static str| {
        client()
            .post(format!("{base}/admin/login"))
            .form_fields(&[("token", token)])
            .send()
    };
    assert_eq!(login("wrong-guess").await.unwrap().status(), 401);
    let response = login(TOKEN).await.unwrap();
    let session = response.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let overview = client()
        .get(format!("{base}/admin"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&overview);
    for (path, fields) in [
        ("/admin/mappings/reload", vec![]),
        (
            "/admin/playground",
            vec![
                ("platform", "haravan"),
                ("topic", "orders/paid"),
                ("body", "{}"),
            ],
        ),
        ("/admin/logout", vec![]),
    ] {
        let mut fields = fields;
        fields.push(("csrf", &csrf));
        let response = client()
            .post(format!("{base}{path}"))
            .header("cookie", &session)
            .form_fields(&fields)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success() || response.status().is_redirection());
    }
    crate::cli::stop(child);
    log.extend(rx.try_iter());
    let text = log.join("\n");
    for said in [
        "dashboard: login with a wrong token",
        "dashboard: logged in",
        "dashboard: mappings reloaded",
        "dashboard: playground tried the live mappings",
        "dashboard: logged out",
    ] {
        let line = log
            .iter()
            .find(|line| line.contains(said))
            .unwrap_or_else(|| panic!("no `{said}` in the log:\n{text}"));
        assert!(line.contains("127.0.0.1"), "the client's address: {line}");
    }
    let cookie_value = session.split_once('=').unwrap().1;
    for secret in [TOKEN, cookie_value, csrf.as_str()] {
        assert!(!text.contains(secret), "{secret} in the log:\n{text}");
    }
}
