//! Destination clients against doubles: real HTTP servers on 127.0.0.1 that record each
//! request and answer as the real API would.

use std::time::Duration;

use serde_json::{Value, json};
use storehook::config::{Config, EMBEDDED};
use storehook::destination::{self, Destination, Outcome, Outgoing};
use storehook::domain::{Operation, Redactions, Secret};

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
    destination::build(destination)
}

fn outgoing(id: i64, operation: Operation, payload: Value) -> Outgoing {
    Outgoing {
        delivery_id: id,
        mapping: "haravan/test".into(),
        key: format!("haravan/{id}"),
        operation,
        payload,
        conversion_id: None,
    }
}

fn client() -> reqwest::Client {
    destination::client(Duration::from_secs(2), Duration::from_secs(5))
}

/// Sends `batch` to `destination` with nothing configured to redact.
async fn send(destination: &dyn Destination, batch: &[Outgoing]) -> Outcome {
    destination::send(&client(), destination, batch, &Redactions::default()).await
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
    let outcome = send(legion.as_ref(), &batch).await;
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
    let outcome = send(legion.as_ref(), &batch[..1]).await;
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
        let outcome = send(legion.as_ref(), &batch[..1]).await;
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
    let outcome = send(salekit.as_ref(), &batch).await;
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
    let outcome = send(salekit.as_ref(), &batch).await;
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
    let outcome = send(scalef.as_ref(), &create).await;
    let Outcome::Delivered { conversion_id, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(conversion_id.as_deref(), Some("6010e55f6c906f4c7b7cd0f1"));

    let mut update = outgoing(
        2,
        Operation::ScalefUpdateConversionStatus,
        json!({"status": "rejected", "reason": "Don hang bi huy"}),
    );
    let outcome = send(scalef.as_ref(), std::slice::from_ref(&update)).await;
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
    let outcome = send(scalef.as_ref(), &[update]).await;
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

    let first = send(salekit.as_ref(), &batch).await;
    assert!(
        matches!(&first, Outcome::Retry { after: None, reason, .. } if reason.contains("500")),
        "{first:?}"
    );
    let second = send(salekit.as_ref(), &batch).await;
    assert_eq!(
        second,
        Outcome::Retry {
            after: Some(Duration::from_secs(2)),
            reason: "HTTP 429: slow down".into(),
            status: Some(429),
        }
    );
    let third = send(salekit.as_ref(), &batch).await;
    assert!(matches!(third, Outcome::Retry { .. }), "{third:?}");
    let fourth = send(salekit.as_ref(), &batch).await;
    assert!(
        matches!(&fourth, Outcome::Failed { reason, .. } if reason.contains("thiếu email")),
        "the response is kept: {fourth:?}"
    );
    let fifth = send(salekit.as_ref(), &batch).await;
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
    let outcome = send(legion.as_ref(), &batch).await;
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

/// A CRM over the generic `http` destination, as mappings/README.md configures it.
const CRM: &str = r#"
[destinations.crm]
kind = "http"
url = "${CRM_URL}"
method = "PUT"
headers = { Authorization = "Bearer ${CRM_TOKEN}", "X-Shop" = "shop-one" }
"#;

fn crm_config(url: &str, token: Option<&str>) -> storehook::config::DestinationConfig {
    let url = url.to_string();
    let token = token.map(str::to_string);
    let env = move |name: &str| match name {
        "CRM_URL" => Some(url.clone()),
        "CRM_TOKEN" => token.clone(),
        _ => None,
    };
    let text = format!("{EMBEDDED}{CRM}");
    Config::parse(&text, "storehook.toml", &env)
        .unwrap()
        .destinations["crm"]
        .clone()
}

#[tokio::test]
async fn an_http_destination_sends_its_headers_a_user_agent_and_the_same_idempotency_key_on_a_retry()
 {
    let (double, url) = Double::start().await;
    double.answer(503, vec![], "busy");
    let config = crm_config(&format!("{url}/api/contacts"), Some("crm-secret-token"));
    assert!(!config.is_dry());
    let crm = destination::build(&config);
    let delivery = |id| Outgoing {
        delivery_id: id,
        mapping: "haravan/crm-paid".into(),
        key: "haravan/1071234501".into(),
        operation: Operation::HttpPost,
        payload: json!({"email": "an@example.com"}),
        conversion_id: None,
    };
    let first = send(crm.as_ref(), &[delivery(7)]).await;
    assert!(matches!(first, Outcome::Retry { .. }), "{first:?}");
    // The retry, and a replay stored under another row id: the same delivery.
    let second = send(crm.as_ref(), &[delivery(8)]).await;
    assert!(matches!(second, Outcome::Delivered { .. }), "{second:?}");
    let received = double.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert_eq!(request.path, "/api/contacts");
        assert_eq!(header(request, "authorization"), "Bearer crm-secret-token");
        assert_eq!(header(request, "x-shop"), "shop-one");
        assert_eq!(
            header(request, "user-agent"),
            format!("storehook/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(header(request, "content-type"), "application/json");
        assert_eq!(request.body, json!({"email": "an@example.com"}));
    }
    let key = header(&received[0], "idempotency-key");
    assert_eq!(key.len(), 36, "a UUID: {key}");
    assert_eq!(key, header(&received[1], "idempotency-key"));
    assert_eq!(
        key,
        destination::idempotency_key("haravan/crm-paid", "haravan/1071234501")
    );
    assert_ne!(
        key,
        destination::idempotency_key("haravan/crm-paid", "haravan/1071234502"),
        "another order, another key"
    );

    // Shown (a dry run's record, `storehook delivery`): the method, the token masked.
    let shown = destination::request(crm.as_ref(), &[delivery(7)])
        .unwrap()
        .shown();
    assert_eq!(shown.method, "PUT");
    assert!(
        shown
            .headers
            .contains(&("Authorization".to_string(), "***".to_string()))
    );
    assert!(!format!("{shown:?}").contains("crm-secret-token"));

    // Without its token the destination runs dry, naming the variable.
    let dry = crm_config(&url, None);
    assert!(dry.is_dry());
    assert_eq!(dry.unset_variables, ["CRM_TOKEN"]);
}

#[test]
fn a_bad_http_destination_is_refused_naming_the_key() {
    let refused = |table: &str| {
        let text = format!("{EMBEDDED}\n[destinations.crm]\n{table}\n");
        let env = |name: &str| (name == "CRM_TOKEN").then(|| "t".to_string());
        Config::parse(&text, "storehook.toml", &env)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let cases = [
        // The spellings a newcomer tries first.
        (
            "kind = \"http\"\nbase_url = \"https://crm.example\"",
            "destinations.crm.base_url",
            "url",
        ),
        (
            "kind = \"http\"\nurl = \"https://crm.example\"\ncredentials = { \"header:Authorization\" = \"${CRM_TOKEN}\" }",
            "destinations.crm.credentials",
            "headers",
        ),
        (
            "kind = \"http\"\nurl = \"https://crm.example\"\nheader = { A = \"b\" }",
            "header",
            "unknown field",
        ),
        (
            "kind = \"http\"\nurl = \"https://crm.example\"\nsettings = { \"header:X-Token\" = \"abc\" }",
            "destinations.crm.settings.header:X-Token",
            "no settings",
        ),
        (
            "kind = \"htttp\"\nurl = \"https://crm.example\"",
            "destinations.crm.kind",
            "htttp",
        ),
        (
            "kind = \"http\"\nurl = \"https://crm.example\"\nmethod = \"DELETE\"",
            "destinations.crm.method",
            "POST, PUT or PATCH",
        ),
        // Secrets in the file: a literal, and a default.
        (
            "kind = \"http\"\nurl = \"https://crm.example\"\nheaders = { Authorization = \"Bearer abc123\" }",
            "destinations.crm.headers.Authorization",
            "from the environment",
        ),
        (
            "kind = \"http\"\nurl = \"https://crm.example\"\nheaders = { \"X-Api-Key\" = \"${CRM_KEY:-abc123}\" }",
            "destinations.crm.headers.X-Api-Key",
            "no default",
        ),
        (
            "kind = \"http\"\nurl = \"https://crm.example\"\nheaders = { \"User-Agent\" = \"me\" }",
            "destinations.crm.headers.User-Agent",
            "itself",
        ),
        (
            "kind = \"legion\"\nbase_url = \"https://x\"\nurl = \"https://x\"\ncredentials = { api_key = \"${CRM_TOKEN}\" }",
            "destinations.crm.url",
            "only an http destination",
        ),
        (
            "kind = \"scalef\"\nbase_url = \"https://x\"\ncredentials = { user = \"${CRM_TOKEN}\", access_token = \"${CRM_TOKEN}\" }\nsettings = { create_pat = \"/x\" }",
            "destinations.crm.settings.create_pat",
            "create_path",
        ),
    ];
    for (table, key, says) in cases {
        let error = refused(table);
        assert!(error.contains(key), "{table}: {error}");
        assert!(error.contains(says), "{table}: {error}");
        assert!(
            !error.contains("abc123"),
            "the secret is not repeated: {error}"
        );
    }
}

/// A destination that quotes the credentials it was sent (in an error, a refusal in a 2xx,
/// or a success) has them redacted from what is logged and recorded: the reason and the
/// excerpt, also where the excerpt is cut, and so is any other configured secret it quotes.
#[tokio::test]
async fn credentials_a_destination_quotes_back_are_redacted_from_its_answer() {
    // By default: a 422 quoting the request's credential headers.
    let (double, url) = Double::start_with(|request| {
        let user = header(request, "X-At-User");
        let token = header(request, "X-At-User-Access-Token");
        assert!(!token.is_empty(), "the double is sent the token");
        (
            422,
            vec![],
            format!(
                r#"{{"error":"refused","X-At-User":"{user}","X-At-User-Access-Token":"{token}"}}"#
            ),
        )
    })
    .await;
    let scalef = shipped_destination("scalef", &url);
    let create = [outgoing(
        1,
        Operation::ScalefCreateConversion,
        json!({"click_id": "c", "campaign_id": "463", "order_id": "1", "currency": "VND"}),
    )];
    let webhook_secret = Secret::new("haravan-webhook-secret-9c1e");
    let secrets = Redactions::new([&webhook_secret]);
    let in_clear = |text: &str| {
        [
            "scalef-user",
            "scalef-token",
            "scalef-to",
            webhook_secret.expose(),
        ]
        .into_iter()
        .find(|secret| text.contains(secret))
        .map(str::to_string)
    };

    let refused = destination::send(&client(), scalef.as_ref(), &create, &secrets).await;
    let Outcome::Failed { reason, .. } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(in_clear(reason), None, "{reason}");
    assert!(
        reason.contains(r#""X-At-User-Access-Token":"[redacted]""#),
        "{reason}"
    );

    // Cut at the excerpt's length across the token: no part of it is left either (cut
    // before it is redacted, `scalef-to` would be).
    let padding = "x".repeat(destination::RESPONSE_EXCERPT_BYTES - "scalef-to".len());
    double.answer(500, vec![], &format!("{padding}scalef-token and more"));
    // A 2xx that refuses, quoting the token; a success quoting the user and a webhook
    // secret.
    double.answer(200, vec![], r#"{"status": "scalef-token"}"#);
    double.answer(
        200,
        vec![],
        r#"{"status": "success", "data": {"conversion": {"conversion_id": "c1"}}, "by": "scalef-user", "hmac": "haravan-webhook-secret-9c1e"}"#,
    );
    for expected in ["retry", "refusal", "delivered"] {
        let outcome = destination::send(&client(), scalef.as_ref(), &create, &secrets).await;
        let text = match (&outcome, expected) {
            (Outcome::Retry { reason, .. }, "retry") => reason,
            (Outcome::Failed { reason, .. }, "refusal") => reason,
            (Outcome::Delivered { response, .. }, "delivered") => response,
            _ => panic!("{expected}: {outcome:?}"),
        };
        assert_eq!(in_clear(text), None, "{expected}: {text}");
        if expected != "retry" {
            assert!(text.contains("[redacted]"), "{expected}: {text}");
        }
    }
    assert_eq!(double.received().len(), 4);
}
