//! Re-translation (`replay --retranslate`): which stored webhooks it reads, and what the new
//! deliveries of one replace.

use std::sync::Arc;

use storehook::store::{
    DeliveryFilter, DeliveryStatus, Store, WebhookFilter, WebhookId, WebhookStatus,
};

use super::*;

pub async fn a_retranslation_gives_new_payloads_only_to_deliveries_not_delivered(
    store: Arc<dyn Store>,
) {
    let mut failed = webhook_at("s", "a", T0, vec![]);
    failed.translation_error = Some("no mapping for orders/paid".into());
    let a = accept(&store, failed).await;
    let b = accept(
        &store,
        webhook_at("s", "b", T0 + 1, vec![legion("1"), http("1")]),
    )
    .await;
    let legion_one = id_of(&store, LEGION_MAPPING, "s/1").await;
    let http_one = id_of(&store, HTTP_MAPPING, "s/1").await;
    record(
        &store,
        &claim(&store, "legion", T0 + 10).await,
        attempt(T0 + 10, Some(200), delivered(None)),
    )
    .await;
    record(
        &store,
        &claim(&store, "http", T0 + 10).await,
        attempt(T0 + 10, Some(400), dead("400 Bad Request")),
    )
    .await;

    // What a re-translation reads: by webhook or time, every webhook, translated or not; by
    // the deliveries' status or destination, the webhooks of the matching deliveries and
    // the untranslated ones (a failed mapping made no delivery to match).
    let read = |filter: DeliveryFilter| {
        let store = store.clone();
        async move {
            let found = store.webhooks_for(&filter).await.unwrap();
            found.iter().map(|w| w.id).collect::<Vec<WebhookId>>()
        }
    };
    assert_eq!(
        read(DeliveryFilter::default()).await,
        [a, b],
        "oldest first"
    );
    let status = Some(DeliveryStatus::Dead);
    assert_eq!(
        read(DeliveryFilter {
            status,
            ..Default::default()
        })
        .await,
        [a, b]
    );
    let destination = Some("legion".to_string());
    assert_eq!(
        read(DeliveryFilter {
            destination,
            ..Default::default()
        })
        .await,
        [a, b]
    );
    let (status, webhook_id) = (Some(DeliveryStatus::Dead), Some(b));
    assert_eq!(
        read(DeliveryFilter {
            status,
            webhook_id,
            ..Default::default()
        })
        .await,
        [b],
        "an untranslated webhook outside the filter's webhook is not read"
    );
    let webhook_id = Some(a);
    assert_eq!(
        read(DeliveryFilter {
            webhook_id,
            ..Default::default()
        })
        .await,
        [a]
    );
    let since_ms = Some(T0 + 1);
    assert_eq!(
        read(DeliveryFilter {
            since_ms,
            ..Default::default()
        })
        .await,
        [b]
    );
    let stored = store
        .webhooks_for(&DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(
        (
            stored[1].source.as_str(),
            stored[1].platform.as_str(),
            stored[1].topic.as_str()
        ),
        ("s", "haravan", "orders/paid")
    );
    assert_eq!(stored[1].headers["x-haravan-topic"], "orders/paid");
    assert_eq!(stored[1].body, br#"{"event":"b"}"#);

    // The fixed mapping now translates a: its delivery is added, and a is translated.
    let added = store
        .replace_deliveries(a, &[legion("9")], None, None, T0 + 100)
        .await
        .unwrap();
    assert_eq!(added, (1, 0));
    let nine = get(&store, id_of(&store, LEGION_MAPPING, "s/9").await).await;
    assert_eq!(
        (nine.summary.webhook_id, nine.summary.status),
        (a, DeliveryStatus::Pending)
    );
    assert_eq!(nine.summary.next_attempt_at, T0 + 100);
    let a_now = store
        .list_webhooks(&WebhookFilter::default())
        .await
        .unwrap();
    let a_now = a_now.iter().find(|w| w.id == a).unwrap();
    assert_eq!(
        (a_now.status, a_now.error.as_deref()),
        (WebhookStatus::Translated, None)
    );

    // b again, with new payloads: the delivered Legion event is left alone, the dead post
    // takes its new payload and is due now with a fresh schedule, and a new one is added.
    let mut new_legion = legion("1");
    new_legion.payload = r#"{"order":"1","v":2}"#.into();
    let mut new_http = http("1");
    new_http.payload = r#"{"order":"1","v":2}"#.into();
    let replaced = store
        .replace_deliveries(
            b,
            &[new_legion, new_http.clone(), http("2")],
            None,
            Some(DeliveryStatus::Dead),
            T0 + 200,
        )
        .await
        .unwrap();
    assert_eq!(replaced, (1, 1));
    let legion_now = get(&store, legion_one).await;
    assert_eq!(
        (legion_now.summary.status, legion_now.payload.as_str()),
        (DeliveryStatus::Delivered, r#"{"order":"1"}"#)
    );
    let http_now = get(&store, http_one).await;
    assert_eq!(
        (http_now.summary.status, http_now.payload.as_str()),
        (DeliveryStatus::Pending, r#"{"order":"1","v":2}"#)
    );
    assert_eq!(
        (http_now.summary.attempts, http_now.summary.next_attempt_at),
        (0, T0 + 200)
    );
    assert_eq!(http_now.summary.last_error, None);

    // Only the status named: the post is pending now, not dead, so it keeps its payload;
    // a failed translation marks the webhook untranslated with its error.
    new_http.payload = r#"{"order":"1","v":3}"#.into();
    let untouched = store
        .replace_deliveries(
            b,
            &[new_http],
            Some("price is not a number"),
            Some(DeliveryStatus::Dead),
            T0 + 300,
        )
        .await
        .unwrap();
    assert_eq!(untouched, (0, 0));
    assert_eq!(
        get(&store, http_one).await.payload,
        r#"{"order":"1","v":2}"#
    );
    let b_now = store
        .list_webhooks(&WebhookFilter {
            source: Some("s".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let b_now = b_now.iter().find(|w| w.id == b).unwrap();
    assert_eq!(
        (b_now.status, b_now.error.as_deref()),
        (WebhookStatus::Untranslated, Some("price is not a number"))
    );

    // A dry run keeps what it recorded unless its status is named: a re-translation for a
    // fixed mapping does not resend what ran dry on purpose.
    let c = accept(&store, webhook_at("s", "c", T0 + 2, vec![http("3")])).await;
    let claimed = claim(&store, "http", T0 + 400).await;
    let dry = [id_of(&store, HTTP_MAPPING, "s/3").await];
    assert!(claimed.contains(&dry[0]));
    let request = Recorded::DryRun {
        request: "POST https://example.test/orders".into(),
    };
    record(&store, &claimed, attempt(T0 + 400, None, request)).await;
    let mut new_dry = http("3");
    new_dry.payload = r#"{"order":"3","v":2}"#.into();
    let kept = store
        .replace_deliveries(c, std::slice::from_ref(&new_dry), None, None, T0 + 500)
        .await
        .unwrap();
    assert_eq!(kept, (0, 0));
    assert_eq!(status_of(&store, dry[0]).await, DeliveryStatus::DryRun);
    let asked = store
        .replace_deliveries(c, &[new_dry], None, Some(DeliveryStatus::DryRun), T0 + 500)
        .await
        .unwrap();
    assert_eq!(asked, (0, 1));
    assert_eq!(status_of(&store, dry[0]).await, DeliveryStatus::Pending);
}
