//! Forged, oversized, malformed or misdirected requests: a clear 4xx (or 503) with a short
//! JSON body, and nothing stored.

use reqwest::StatusCode;

use crate::harness::*;
use crate::receive::json_body_of_len;

async fn assert_refused(
    response: reqwest::Response,
    status: StatusCode,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status(), status, "expected {code}");
    let body = json_of(response).await;
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

#[tokio::test]
async fn forged_signatures_are_refused_for_every_platform() {
    let app = spawn_app().await;
    for platform in PLATFORMS {
        let fixture = fixture(platform, "paid-two-items-discount");
        let secret = secret_of(platform);
        let recorded = recorded_headers_without_signature(&fixture);
        let with_signature = |value: String| {
            let mut headers = recorded.clone();
            headers.push((signature_header(platform).to_string(), value));
            headers
        };

        // The body changed after signing (one digit of the total).
        let mut tampered = fixture.body.clone();
        let pos = tampered.iter().position(u8::is_ascii_digit).unwrap();
        tampered[pos] = if tampered[pos] == b'9' {
            b'1'
        } else {
            tampered[pos] + 1
        };
        let headers = with_signature(platform_signature(secret, &fixture.body));
        let r = app.post_raw(platform, &headers, tampered).await;
        let body = assert_refused(r, StatusCode::UNAUTHORIZED, "invalid_signature").await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(signature_header(platform)),
            "the message names the header checked: {body}"
        );

        // Signed with a wrong secret, and with another platform's secret.
        let r = app.post_fixture(platform, &fixture, "not-the-secret").await;
        assert_refused(r, StatusCode::UNAUTHORIZED, "invalid_signature").await;
        let other = PLATFORMS.into_iter().find(|p| *p != platform).unwrap();
        let r = app.post_fixture(platform, &fixture, secret_of(other)).await;
        assert_refused(r, StatusCode::UNAUTHORIZED, "invalid_signature").await;

        // No signature header at all.
        let r = app
            .post_raw(platform, &recorded, fixture.body.clone())
            .await;
        assert_refused(r, StatusCode::UNAUTHORIZED, "missing_signature").await;

        // Not base64, and base64 of the wrong length.
        let r = app
            .post_raw(
                platform,
                &with_signature("%%% not base64 %%%".into()),
                fixture.body.clone(),
            )
            .await;
        assert_refused(r, StatusCode::UNAUTHORIZED, "invalid_signature").await;
        let short = platform_signature(secret, &fixture.body)[..24].to_string();
        let r = app
            .post_raw(platform, &with_signature(short), fixture.body.clone())
            .await;
        let body = assert_refused(r, StatusCode::UNAUTHORIZED, "invalid_signature").await;
        assert!(
            body["message"].as_str().unwrap().contains("18 bytes"),
            "{body}"
        );

        // A signature that is right for the body, but in another platform's header.
        let mut headers = recorded.clone();
        headers.push((
            signature_header(other).to_string(),
            platform_signature(secret, &fixture.body),
        ));
        let r = app.post_raw(platform, &headers, fixture.body.clone()).await;
        assert_refused(r, StatusCode::UNAUTHORIZED, "missing_signature").await;
    }
    assert!(
        app.inbox().await.is_empty(),
        "nothing stored for any refusal"
    );
}

#[tokio::test]
async fn no_secret_appears_in_any_answer() {
    let app = spawn_app().await;
    let fixture = fixture("shopify", "paid-two-items-discount");
    let r = app.post_fixture("shopify", &fixture, "wrong").await;
    let text = r.text().await.unwrap();
    for platform in PLATFORMS {
        assert!(!text.contains(secret_of(platform)), "{text}");
    }
}

#[tokio::test]
async fn a_body_one_byte_over_the_limit_gets_413() {
    let app = spawn_app().await;
    let fixture = fixture("woocommerce", "paid-two-items-discount");
    let body = json_body_of_len(storehook::config::DEFAULT_MAX_BODY_BYTES + 1);
    let r = app
        .post_signed("woocommerce", &fixture, &body, secret_of("woocommerce"))
        .await;
    let answer = assert_refused(r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    assert_eq!(
        answer["limit_bytes"],
        storehook::config::DEFAULT_MAX_BODY_BYTES
    );

    // Also when the length is not declared up front (chunked transfer).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let mut request = app
        .client
        .post(app.webhook_url("woocommerce"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
    for (name, value) in recorded_headers_without_signature(&fixture) {
        request = request.header(name, value);
    }
    request = request.header(
        "X-WC-Webhook-Signature",
        platform_signature(secret_of("woocommerce"), &body),
    );
    let r = request.send().await.unwrap();
    assert_refused(r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    assert!(app.inbox().await.is_empty());
}

#[tokio::test]
async fn a_signed_body_that_is_not_json_gets_400() {
    let app = spawn_app().await;
    for platform in PLATFORMS {
        let fixture = fixture(platform, "paid-two-items-discount");
        let body = b"order=1&total=100".to_vec();
        let r = app
            .post_signed(platform, &fixture, &body, secret_of(platform))
            .await;
        assert_refused(r, StatusCode::BAD_REQUEST, "invalid_json").await;
        let truncated = fixture.body[..fixture.body.len() - 1].to_vec();
        let r = app
            .post_signed(platform, &fixture, &truncated, secret_of(platform))
            .await;
        assert_refused(r, StatusCode::BAD_REQUEST, "invalid_json").await;
    }
    assert!(app.inbox().await.is_empty());
}

#[tokio::test]
async fn a_signed_webhook_without_topic_gets_400() {
    let app = spawn_app().await;
    let fixture = fixture("shopify", "paid-two-items-discount");
    let mut headers = signed_headers(&fixture, &fixture.body, secret_of("shopify"));
    set_header(&mut headers, "X-Shopify-Topic", None);
    let r = app
        .post_raw("shopify", &headers, fixture.body.clone())
        .await;
    let body = assert_refused(r, StatusCode::BAD_REQUEST, "missing_topic").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("X-Shopify-Topic")
    );
    assert!(app.inbox().await.is_empty());
}

#[tokio::test]
async fn unknown_sources_paths_and_methods_are_refused() {
    let app = spawn_app().await;
    let fixture = fixture("shopify", "paid-two-items-discount");
    let r = app
        .post_fixture("magento", &fixture, secret_of("shopify"))
        .await;
    let body = assert_refused(r, StatusCode::NOT_FOUND, "unknown_source").await;
    assert!(body["message"].as_str().unwrap().contains("magento"));

    let r = app
        .client
        .get(format!("{}/nowhere", app.address))
        .send()
        .await
        .unwrap();
    assert_refused(r, StatusCode::NOT_FOUND, "not_found").await;

    for method in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let r = app
            .client
            .request(method.clone(), app.webhook_url("shopify"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["allow"], "POST, GET");
        assert_refused(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
    // GET is only for handshakes, and Shopify has none.
    let r = app
        .client
        .get(app.webhook_url("shopify"))
        .send()
        .await
        .unwrap();
    assert_refused(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    assert!(app.inbox().await.is_empty());
}

#[tokio::test]
async fn a_source_without_its_secret_answers_503_naming_the_variable() {
    let app = spawn_app_with(|env| {
        env.remove("SHOPIFY_WEBHOOK_SECRET");
    })
    .await;
    let fixture = fixture("shopify", "paid-two-items-discount");
    let r = app
        .post_fixture("shopify", &fixture, secret_of("shopify"))
        .await;
    let body = assert_refused(r, StatusCode::SERVICE_UNAVAILABLE, "source_not_configured").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("SHOPIFY_WEBHOOK_SECRET"),
        "{body}"
    );
    assert_eq!(body["variables"][0], "SHOPIFY_WEBHOOK_SECRET");
    // The other sources are unaffected.
    let woo = fixture_for_other();
    let r = app
        .post_fixture("woocommerce", &woo, secret_of("woocommerce"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.inbox().await.len(), 1);
}

fn fixture_for_other() -> storehook::fixture::Fixture {
    fixture("woocommerce", "paid-two-items-discount")
}

#[tokio::test]
async fn health_and_readiness_answer_json() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["status"], "ok");
    let r = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["status"], "ready");
}
