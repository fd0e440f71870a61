//! Genuine webhooks: answered 200, stored byte-exact with the headers that matter, once.

use reqwest::StatusCode;

use crate::harness::*;

#[tokio::test]
async fn every_fixture_of_every_platform_is_stored_byte_exact() {
    let app = spawn_app().await;
    let mut expected = Vec::new();
    for platform in PLATFORMS {
        for fixture in fixtures(platform) {
            let response = app
                .post_fixture(platform, &fixture, secret_of(platform))
                .await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{}",
                fixture.path.display()
            );
            let body = json_of(response).await;
            assert_eq!(body["duplicate"], false, "{}", fixture.path.display());
            let id = body["webhook_id"].as_i64().expect("a webhook id");
            expected.push((id, platform, fixture));
        }
    }
    let inbox = app.inbox().await;
    assert_eq!(inbox.len(), expected.len());
    for (id, platform, fixture) in expected {
        let stored = inbox
            .iter()
            .find(|w| w.id == id)
            .expect("stored under its id");
        assert_eq!(
            stored.body,
            fixture.body,
            "{} byte-exact",
            fixture.path.display()
        );
        assert_eq!(stored.source, platform);
        assert_eq!(stored.platform, platform);
        let topic_header = match platform {
            "haravan" => "X-Haravan-Topic",
            "woocommerce" => "X-WC-Webhook-Topic",
            _ => "X-Shopify-Topic",
        };
        assert_eq!(Some(stored.topic.as_str()), fixture.header(topic_header));
        assert_eq!(
            stored.headers[topic_header.to_lowercase()].as_str(),
            fixture.header(topic_header)
        );
        assert_eq!(stored.headers["content-type"], "application/json");
    }
}

#[tokio::test]
async fn fixtures_arrive_with_the_signature_they_were_recorded_with() {
    // Every source configured with the fixture secret: the recorded headers, untouched,
    // verify against the recorded bodies, so neither was reformatted.
    let app = spawn_app_with(|env| {
        for platform in PLATFORMS {
            env.insert(
                format!("{}_WEBHOOK_SECRET", platform.to_uppercase()),
                FIXTURE_SECRET.into(),
            );
        }
    })
    .await;
    let mut posted = 0;
    for platform in PLATFORMS {
        for fixture in fixtures(platform) {
            let response = app
                .post_raw(platform, &fixture.headers, fixture.body.clone())
                .await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{}",
                fixture.path.display()
            );
            posted += 1;
        }
    }
    assert!(posted >= 25, "{posted}");
    assert_eq!(app.inbox().await.len(), posted);
}

#[tokio::test]
async fn woocommerce_bodies_keep_their_escapes() {
    let app = spawn_app().await;
    let fixture = fixture("woocommerce", "local-phone-click-id");
    assert!(fixture.body.is_ascii() && !fixture.body.ends_with(b"\n"));
    assert!(fixture.body.windows(2).any(|w| w == b"\\/"));
    assert!(fixture.body.windows(2).any(|w| w == b"\\u"));
    let response = app
        .post_fixture("woocommerce", &fixture, secret_of("woocommerce"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.inbox().await[0].body, fixture.body);
}

#[tokio::test]
async fn a_repeated_shopify_event_is_stored_once() {
    let app = spawn_app().await;
    let fixture = fixture("shopify", "paid-two-items-discount");
    let first = json_of(
        app.post_fixture("shopify", &fixture, secret_of("shopify"))
            .await,
    )
    .await;
    assert_eq!(first["duplicate"], false);

    // Shopify retries with the same event id, a new webhook id and a fresh signature.
    let mut headers = signed_headers(&fixture, &fixture.body, secret_of("shopify"));
    set_header(
        &mut headers,
        "X-Shopify-Webhook-Id",
        Some("0f0f0f0f-1111-2222-3333-444444444444"),
    );
    let again = app
        .post_raw("shopify", &headers, fixture.body.clone())
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let again = json_of(again).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["webhook_id"], first["webhook_id"]);

    let inbox = app.inbox().await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        inbox[0].dedupe_id,
        format!(
            "event:orders/paid:{}",
            fixture.header("X-Shopify-Event-Id").unwrap()
        )
    );
}

/// One change of an order can trigger webhooks of several topics: one event id on two
/// topics is two webhooks, each translated by its topic's mappings.
#[tokio::test]
async fn one_shopify_event_id_on_two_topics_is_two_webhooks() {
    let app = spawn_app().await;
    let fixture = fixture("shopify", "paid-two-items-discount");
    let mut headers = signed_headers(&fixture, &fixture.body, secret_of("shopify"));
    set_header(&mut headers, "X-Shopify-Topic", Some("orders/updated"));
    let updated = json_of(
        app.post_raw("shopify", &headers, fixture.body.clone())
            .await,
    )
    .await;
    assert_eq!(updated["duplicate"], false);
    let paid = json_of(
        app.post_fixture("shopify", &fixture, secret_of("shopify"))
            .await,
    )
    .await;
    assert_eq!(paid["duplicate"], false, "{paid}");
    assert_ne!(paid["webhook_id"], updated["webhook_id"]);
    let topics: Vec<String> = app.inbox().await.into_iter().map(|w| w.topic).collect();
    assert_eq!(topics, ["orders/updated", "orders/paid"]);
}

#[tokio::test]
async fn concurrent_copies_of_one_event_are_stored_once() {
    let app = spawn_app().await;
    let fixture = fixture("shopify", "local-phone-click-id");
    let sends = (0..8).map(|_| app.post_fixture("shopify", &fixture, secret_of("shopify")));
    let answers = futures::future::join_all(sends).await;
    let mut ids = Vec::new();
    for response in answers {
        assert_eq!(response.status(), StatusCode::OK);
        ids.push(json_of(response).await["webhook_id"].as_i64().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every copy names the one stored webhook");
    assert_eq!(app.inbox().await.len(), 1);
}

#[tokio::test]
async fn haravan_and_woocommerce_repeat_deliveries_are_recognised_by_order_update() {
    let app = spawn_app().await;
    for platform in ["haravan", "woocommerce"] {
        let fixture = fixture(platform, "paid-two-items-discount");
        let first = json_of(
            app.post_fixture(platform, &fixture, secret_of(platform))
                .await,
        )
        .await;
        let second = json_of(
            app.post_fixture(platform, &fixture, secret_of(platform))
                .await,
        )
        .await;
        assert_eq!(first["duplicate"], false);
        assert_eq!(second["duplicate"], true, "{platform}");
        assert_eq!(first["webhook_id"], second["webhook_id"]);

        // The next update of the same order is a new webhook.
        let field = if platform == "haravan" {
            "updated_at"
        } else {
            "date_modified_gmt"
        };
        let mut order: serde_json::Value = serde_json::from_slice(&fixture.body).unwrap();
        order[field] = "2026-03-20T10:00:00Z".into();
        let updated = serde_json::to_vec(&order).unwrap();
        let third = app
            .post_signed(platform, &fixture, &updated, secret_of(platform))
            .await;
        assert_eq!(json_of(third).await["duplicate"], false, "{platform}");
    }
    // WooCommerce's update time counts whole seconds: a second change within the same
    // second (processing, then completed) is a new webhook too; its repeat is not.
    let fixture = fixture("woocommerce", "paid-two-items-discount");
    let mut order: serde_json::Value = serde_json::from_slice(&fixture.body).unwrap();
    assert_ne!(order["status"], "completed");
    order["status"] = "completed".into();
    let completed = serde_json::to_vec(&order).unwrap();
    for duplicate in [false, true] {
        let response = app
            .post_signed(
                "woocommerce",
                &fixture,
                &completed,
                secret_of("woocommerce"),
            )
            .await;
        assert_eq!(json_of(response).await["duplicate"], duplicate);
    }
    let inbox = app.inbox().await;
    assert_eq!(inbox.len(), 5);
    let haravan = &inbox[0];
    assert!(
        haravan.dedupe_id.contains("200000123456") && haravan.dedupe_id.starts_with("orders/paid:"),
        "{}",
        haravan.dedupe_id
    );
}

#[tokio::test]
async fn unknown_topics_and_signatures_with_the_other_haravan_spelling_are_accepted() {
    let app = spawn_app().await;
    let fixture = fixture("haravan", "paid-two-items-discount");
    let mut headers = recorded_headers_without_signature(&fixture);
    set_header(
        &mut headers,
        "X-Haravan-Topic",
        Some("inventory/levels_changed"),
    );
    set_header(
        &mut headers,
        "X-Haravan-Hmac-Sha256",
        Some(&platform_signature(secret_of("haravan"), &fixture.body)),
    );
    let response = app
        .post_raw("haravan", &headers, fixture.body.clone())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.inbox().await[0].topic, "inventory/levels_changed");
}

#[tokio::test]
async fn rotation_accepts_the_old_and_the_new_secret() {
    let app = spawn_app_with(|env| {
        env.insert("SHOPIFY_WEBHOOK_SECRET".into(), "new-secret".into());
        env.insert(
            "SHOPIFY_WEBHOOK_SECRET_PREVIOUS".into(),
            "old-secret".into(),
        );
    })
    .await;
    let fixtures = fixtures("shopify");
    let new = app
        .post_fixture("shopify", &fixtures[0], "new-secret")
        .await;
    let old = app
        .post_fixture("shopify", &fixtures[1], "old-secret")
        .await;
    let neither = app
        .post_fixture("shopify", &fixtures[2], "older-secret")
        .await;
    assert_eq!(new.status(), StatusCode::OK);
    assert_eq!(old.status(), StatusCode::OK);
    assert_eq!(neither.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.inbox().await.len(), 2);
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_accepted() {
    let app = spawn_app().await;
    let fixture = fixture("shopify", "paid-two-items-discount");
    let body = json_body_of_len(storehook::config::DEFAULT_MAX_BODY_BYTES);
    let response = app
        .post_signed("shopify", &fixture, &body, secret_of("shopify"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.inbox().await[0].body.len(), body.len());
}

/// A valid JSON object of exactly `len` bytes.
pub fn json_body_of_len(len: usize) -> Vec<u8> {
    let overhead = br#"{"pad":""}"#.len();
    let mut body = br#"{"pad":""#.to_vec();
    body.extend(std::iter::repeat_n(b'x', len - overhead));
    body.extend(br#""}"#);
    assert_eq!(body.len(), len);
    body
}
