//! Destination clients against doubles: real HTTP servers on 127.0.0.1 that record each
//! request and answer as the real API would.

use std::time::Duration;

use serde_json::{Value, json};
use storehook::config::{Config, EMBEDDED};
use storehook::destination::{self, Destination, Outcome, Outgoing};
use storehook::domain::Operation;

use crate::doubles::{Double, Received};

/// The shipped configuration's destination `id`, pointed at `url` with test credentials.
fn shipped_destination(id: &str, url: &str) -> Box<dyn Destination> {
    let env = |name: &str| -> Option<String> {
        match name {
            "LEGION_BASE_URL" | "SCALEF_BASE_URL" | "SALEKIT_BASE_URL" => Some(url.to_string()),
            "LEGION_API_KEY" => Some("legion-key".into()),
            "SCALEF_USER" => Some("scalef-user".into()),
            "SCALEF_ACCESS_TOKEN" => Some("scalef-token".into()),
            "SALEKIT_TOKEN" => Some("salekit-token".into()),
            _ => None,
        }
    };
    let config = Config::parse(EMBEDDED, "storehook.toml", &env).unwrap();
    let destination = &config.destinations[id];
    assert!(!destination.is_dry());
    destination::build(destination).unwrap()
}

fn outgoing(id: i64, operation: Operation, payload: Value) -> Outgoing {
    Outgoing {
        delivery_id: id,
        operation,
        payload,
        conversion_id: None,
    }
}

fn client() -> reqwest::Client {
    destination::client(Duration::from_secs(2), Duration::from_secs(5))
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn legion_receives_a_batch_as_one_array_with_its_key() {
    let (double, url) = Double::start().await;
    let legion = shipped_destination("legion", &url);
    assert_eq!(legion.max_batch(), 50);
    let batch = [
        outgoing(
            1,
            Operation::LegionPurchaseEvent,
            json!({"id": "a", "event_id": 2}),
        ),
        outgoing(
            2,
            Operation::LegionPurchaseEvent,
            json!({"id": "b", "event_id": 2}),
        ),
    ];
    let outcome = destination::send(&client(), legion.as_ref(), &batch).await;
    assert!(
        matches!(outcome, Outcome::Delivered { status: 200, .. }),
        "{outcome:?}"
    );
    let received = double.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/integration/flow-state/event/add/");
    assert_eq!(header(&received[0], "x-api-key"), "legion-key");
    assert_eq!(header(&received[0], "content-type"), "application/json");
    assert_eq!(
        received[0].body,
        json!([{"id": "a", "event_id": 2}, {"id": "b", "event_id": 2}])
    );

    double.answer(
        200,
        vec![],
        r#"{"status": "error", "message": "bad event"}"#,
    );
    let outcome = destination::send(&client(), legion.as_ref(), &batch[..1]).await;
    assert!(
        matches!(&outcome, Outcome::Failed { reason, .. } if reason.contains("error")),
        "{outcome:?}"
    );
    // A status that is not a string is not "success" either.
    for body in [
        r#"{"status": false}"#,
        r#"{"status": 400, "message": "bad event"}"#,
    ] {
        double.answer(200, vec![], body);
        let outcome = destination::send(&client(), legion.as_ref(), &batch[..1]).await;
        assert!(
            matches!(&outcome, Outcome::Failed { reason, .. } if reason.contains("status")),
            "{body}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn salekit_success_is_read_from_the_body() {
    let (double, url) = Double::start().await;
    let salekit = shipped_destination("salekit", &url);
    let batch = [outgoing(
        1,
        Operation::SalekitUpsertAudience,
        json!({"full_name": "A", "email": "a@b.vn"}),
    )];
    double.answer(200, vec![], r#"{"error": false, "msg": "Thành công"}"#);
    let outcome = destination::send(&client(), salekit.as_ref(), &batch).await;
    assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    let received = &double.received()[0];
    assert_eq!(received.path, "/api/v1/audience/create");
    assert_eq!(header(received, "token"), "salekit-token");
    assert_eq!(received.body["email"], "a@b.vn");

    double.answer(
        200,
        vec![],
        r#"{"error": true, "msg": "Sai Token vui lòng kiểm tra lại!"}"#,
    );
    let outcome = destination::send(&client(), salekit.as_ref(), &batch).await;
    match outcome {
        Outcome::Failed { reason, .. } => assert!(reason.contains("Sai Token"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn scalef_creates_a_conversion_then_updates_it_by_id() {
    let (double, url) = Double::start().await;
    let scalef = shipped_destination("scalef", &url);
    double.answer(
        200,
        vec![],
        r#"{"status": "success", "data": {"conversion": {"conversion_id": "6010e55f6c906f4c7b7cd0f1"}}}"#,
    );
    let create = [outgoing(
        1,
        Operation::ScalefCreateConversion,
        json!({"click_id": "c", "campaign_id": "463", "order_id": "1", "currency": "VND"}),
    )];
    let outcome = destination::send(&client(), scalef.as_ref(), &create).await;
    let Outcome::Delivered { conversion_id, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(conversion_id.as_deref(), Some("6010e55f6c906f4c7b7cd0f1"));

    let mut update = outgoing(
        2,
        Operation::ScalefUpdateConversionStatus,
        json!({"status": "rejected", "reason": "Don hang bi huy"}),
    );
    let outcome =
        destination::send(&client(), scalef.as_ref(), std::slice::from_ref(&update)).await;
    assert!(
        matches!(&outcome, Outcome::Failed { reason, .. } if reason.contains("conversion id")),
        "{outcome:?}"
    );
    assert_eq!(
        double.received().len(),
        1,
        "nothing sent without the conversion id"
    );

    update.conversion_id = conversion_id;
    double.answer(200, vec![], r#"{"status": "success"}"#);
    let outcome = destination::send(&client(), scalef.as_ref(), &[update]).await;
    assert!(
        matches!(
            outcome,
            Outcome::Delivered {
                conversion_id: None,
                ..
            }
        ),
        "{outcome:?}"
    );

    let received = double.received();
    assert_eq!(received[0].path, "/api/v1/conversion");
    assert_eq!(header(&received[0], "x-at-user"), "scalef-user");
    assert_eq!(header(&received[0], "x-at-user-type"), "advertiser");
    assert_eq!(
        header(&received[0], "x-at-user-access-token"),
        "scalef-token"
    );
    assert_eq!(received[1].path, "/api/v1/update-conversion-status");
    assert_eq!(header(&received[1], "x-at-user-type"), "api");
    assert_eq!(header(&received[1], "x-network-id"), "1");
    assert_eq!(
        received[1].body,
        json!({"conversion_id": "6010e55f6c906f4c7b7cd0f1", "status": "rejected", "reason": "Don hang bi huy"})
    );
}

#[tokio::test]
async fn answers_become_retries_or_failures() {
    let (double, url) = Double::start().await;
    let salekit = shipped_destination("salekit", &url);
    let batch = [outgoing(
        1,
        Operation::SalekitUpsertAudience,
        json!({"full_name": "A", "email": "a@b.vn"}),
    )];
    double.answer(500, vec![], "upstream broke");
    double.answer(429, vec![("retry-after", "2")], "slow down");
    double.answer(408, vec![], "");
    double.answer(400, vec![], r#"{"error": true, "msg": "thiếu email"}"#);
    double.answer(302, vec![("location", "http://127.0.0.1:1/elsewhere")], "");

    let first = destination::send(&client(), salekit.as_ref(), &batch).await;
    assert!(
        matches!(&first, Outcome::Retry { after: None, reason, .. } if reason.contains("500")),
        "{first:?}"
    );
    let second = destination::send(&client(), salekit.as_ref(), &batch).await;
    assert_eq!(
        second,
        Outcome::Retry {
            after: Some(Duration::from_secs(2)),
            reason: "HTTP 429: slow down".into(),
            status: Some(429),
        }
    );
    let third = destination::send(&client(), salekit.as_ref(), &batch).await;
    assert!(matches!(third, Outcome::Retry { .. }), "{third:?}");
    let fourth = destination::send(&client(), salekit.as_ref(), &batch).await;
    assert!(
        matches!(&fourth, Outcome::Failed { reason, .. } if reason.contains("thiếu email")),
        "the response is kept: {fourth:?}"
    );
    let fifth = destination::send(&client(), salekit.as_ref(), &batch).await;
    assert!(
        matches!(&fifth, Outcome::Failed { reason, .. } if reason.contains("302")),
        "redirects are not followed: {fifth:?}"
    );
    assert_eq!(double.received().len(), 5);
}

/// A closed port is retried. The reason, stored with the attempt and shown to operators,
/// does not carry the URL: a base URL may hold a secret (user info, a token in a path).
#[tokio::test]
async fn a_closed_port_is_a_retry_whose_reason_leaves_the_url_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://user:url-secret@{}/hooks/url-secret",
        listener.local_addr().unwrap()
    );
    drop(listener);
    let legion = shipped_destination("legion", &url);
    let batch = [outgoing(1, Operation::LegionPurchaseEvent, json!({}))];
    let outcome = destination::send(&client(), legion.as_ref(), &batch).await;
    let Outcome::Retry { reason, .. } = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(reason.contains("failed"), "{reason}");
    assert!(!reason.contains("url-secret"), "{reason}");
}

#[test]
fn shown_requests_mask_credentials_and_unconfigured_destinations_run_dry() {
    let legion = shipped_destination("legion", "http://127.0.0.1:9");
    let request = legion
        .request(&[outgoing(
            1,
            Operation::LegionPurchaseEvent,
            json!({"id": "a"}),
        )])
        .unwrap();
    let shown = request.shown();
    assert_eq!(
        shown.url,
        "http://127.0.0.1:9/integration/flow-state/event/add/"
    );
    assert!(
        shown
            .headers
            .contains(&("X-Api-Key".to_string(), "***".to_string()))
    );
    assert!(!format!("{shown:?}").contains("legion-key"));
    assert_eq!(shown.body, r#"[{"id":"a"}]"#);

    let bare = Config::parse(EMBEDDED, "storehook.toml", &|_| None).unwrap();
    for id in ["legion", "scalef", "salekit"] {
        assert!(
            bare.destinations[id].is_dry(),
            "{id} without credentials runs dry"
        );
    }
    assert_eq!(
        bare.destinations["legion"].base_url,
        "https://api.legion.tools"
    );
    assert_eq!(bare.destinations["salekit"].base_url, "https://salekit.io");
    assert_eq!(
        bare.destinations["legion"].unset_variables,
        ["LEGION_API_KEY"]
    );
}
