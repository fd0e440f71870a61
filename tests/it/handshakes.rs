//! Platform greetings: WooCommerce's unsigned ping and Haravan's subscription challenge.

use reqwest::StatusCode;

use crate::harness::*;

#[tokio::test]
async fn the_woocommerce_ping_gets_exactly_200_and_stores_nothing() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.webhook_url("woocommerce"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("User-Agent", "WooCommerce/9.8.5 Hookshot (WordPress/6.8.1)")
        .body("webhook_id=17")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(app.inbox().await.is_empty());
}

#[tokio::test]
async fn the_ping_is_answered_even_before_the_secret_is_set() {
    let app = spawn_app_with(|env| {
        env.remove("WOOCOMMERCE_WEBHOOK_SECRET");
    })
    .await;
    let r = app
        .client
        .post(app.webhook_url("woocommerce"))
        .body("webhook_id=3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn what_only_looks_like_a_ping_is_checked_like_any_webhook() {
    let app = spawn_app().await;
    // WooCommerce headers present: not a ping, so the missing signature counts.
    let r = app
        .client
        .post(app.webhook_url("woocommerce"))
        .header("X-WC-Webhook-Topic", "order.created")
        .body("webhook_id=17")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Not the ping's shape.
    for body in ["webhook_id=", "webhook_id=17&x=1", "webhook_id=abc"] {
        let r = app
            .client
            .post(app.webhook_url("woocommerce"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{body}");
    }
    // Other platforms have no ping.
    let r = app
        .client
        .post(app.webhook_url("shopify"))
        .body("webhook_id=17")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(app.inbox().await.is_empty());
}

async fn challenge(app: &TestApp, source: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.webhook_url(source))
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", token),
            ("hub.challenge", "c-8471xyz"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_haravan_handshake_echoes_the_challenge_only_with_the_right_token() {
    let app = spawn_app().await;
    let r = challenge(&app, "haravan", VERIFY_TOKEN).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "c-8471xyz");

    let r = challenge(&app, "haravan", "guessed-token").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body = json_of(r).await;
    assert_eq!(body["error"], "invalid_verify_token");
    assert!(!body.to_string().contains("c-8471xyz"));

    let r = challenge(&app, "haravan", "").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(app.inbox().await.is_empty());
}

#[tokio::test]
async fn the_haravan_handshake_without_a_configured_token_says_what_to_set() {
    let app = spawn_app_with(|env| {
        env.remove("HARAVAN_VERIFY_TOKEN");
    })
    .await;
    let r = challenge(&app, "haravan", "anything").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json_of(r).await;
    assert_eq!(body["error"], "handshake_not_configured");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("HARAVAN_VERIFY_TOKEN")
    );
}
