//! Accepting webhooks and their deliveries, and reading them back.

use std::sync::Arc;

use storehook::store::{
    Accepted, DeliveryFilter, DeliveryId, DeliveryStatus, Store, WebhookFilter, WebhookId,
    WebhookStatus, stored_key,
};

use super::*;

pub async fn a_repeated_webhook_is_refused_by_source_and_dedupe_id(store: Arc<dyn Store>) {
    let first = store
        .accept(webhook("shop-a", "evt-1", vec![legion("1001")]))
        .await
        .unwrap();
    let Accepted::Stored {
        webhook_id: a,
        deliveries: 1,
        skipped: 0,
    } = first
    else {
        panic!("{first:?}");
    };
    // The shop sends it again, even with another body and other deliveries: nothing is
    // written, and the answer names the webhook stored first.
    let mut again = webhook("shop-a", "evt-1", vec![legion("1002")]);
    again.body = b"{\"event\":\"changed\"}".to_vec();
    assert_eq!(
        store.accept(again).await.unwrap(),
        Accepted::Duplicate { webhook_id: a }
    );
    // The same dedupe id from another source is another webhook.
    let other = store
        .accept(webhook("shop-b", "evt-1", vec![legion("1001")]))
        .await
        .unwrap();
    let Accepted::Stored {
        webhook_id: b,
        deliveries: 1,
        skipped: 0,
    } = other
    else {
        panic!("{other:?}");
    };
    assert_ne!(a, b);

    let stored = store
        .list_webhooks(&WebhookFilter::default())
        .await
        .unwrap();
    let ids: Vec<WebhookId> = stored.iter().map(|w| w.id).collect();
    assert_eq!(ids, [b, a], "two rows, newest first");
    assert_eq!(
        stored[1].body, br#"{"event":"evt-1"}"#,
        "the first body kept"
    );
    let keys: Vec<String> = store
        .list_deliveries(&DeliveryFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.key)
        .collect();
    assert_eq!(keys, ["shop-b/1001", "shop-a/1001"], "no delivery of 1002");
}

pub async fn one_delivery_per_mapping_and_key(store: Arc<dyn Store>) {
    let paid = accept(
        &store,
        webhook("s", "paid", vec![legion("1001"), conversion("1001")]),
    )
    .await;
    // Another webhook of the same order (an update): its Legion event is already stored,
    // another order's is not.
    let updated = store
        .accept(webhook(
            "s",
            "updated",
            vec![legion("1001"), legion("1002")],
        ))
        .await
        .unwrap();
    let Accepted::Stored {
        webhook_id: updated,
        deliveries: 1,
        skipped: 0,
    } = updated
    else {
        panic!("{updated:?}");
    };
    // Keys are per source: another shop's order 1001 is another order.
    let other = accept(&store, webhook("t", "paid", vec![legion("1001")])).await;

    let mut all: Vec<(String, String, WebhookId)> = store
        .list_deliveries(&DeliveryFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.mapping, d.key, d.webhook_id))
        .collect();
    all.sort();
    let stored = |mapping: &str, source, key, webhook| {
        (mapping.to_string(), stored_key(source, key), webhook)
    };
    assert_eq!(
        all,
        [
            stored(LEGION_MAPPING, "s", "1001", paid),
            stored(LEGION_MAPPING, "s", "1002", updated),
            stored(LEGION_MAPPING, "t", "1001", other),
            stored(CONVERSION_MAPPING, "s", "1001", paid),
        ]
    );
}

pub async fn an_opened_store_is_ready_and_holds_nothing(store: Arc<dyn Store>) {
    store.check_ready().await.unwrap();
    assert!(
        store
            .list_webhooks(&WebhookFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_deliveries(&DeliveryFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.get_delivery(DeliveryId(1)).await.unwrap(), None);
    assert!(store.list_attempts(DeliveryId(1)).await.unwrap().is_empty());
    assert!(claim(&store, "legion", T0).await.is_empty());
    assert_eq!(store.next_due_at("legion").await.unwrap(), None);
    accept(&store, webhook("s", "a", vec![legion("1")])).await;
    store.check_ready().await.unwrap();
}

pub async fn listings_read_back_what_was_accepted_newest_first_by_filter(store: Arc<dyn Store>) {
    let mut failed = webhook_at("s", "a", T0, vec![]);
    failed.topic = "orders/create".into();
    failed.translation_error = Some("no mapping for orders/create".into());
    let a = accept(&store, failed).await;
    let b = accept(
        &store,
        webhook_at("t", "b", T0 + 1_000, vec![legion("1"), http("1")]),
    )
    .await;

    let all = store
        .list_webhooks(&WebhookFilter::default())
        .await
        .unwrap();
    assert_eq!(all.iter().map(|w| w.id).collect::<Vec<_>>(), [b, a]);
    let b_record = &all[0];
    assert_eq!(
        (b_record.source.as_str(), b_record.topic.as_str()),
        ("t", "orders/paid")
    );
    assert_eq!(b_record.platform.as_str(), "haravan");
    assert_eq!(
        (b_record.dedupe_id.as_str(), b_record.received_at),
        ("b", T0 + 1_000)
    );
    assert_eq!(b_record.headers["x-haravan-topic"], "orders/paid");
    assert_eq!(b_record.body, br#"{"event":"b"}"#);
    assert_eq!(
        (b_record.status, b_record.error.as_deref()),
        (WebhookStatus::Translated, None)
    );
    assert_eq!(
        (all[1].status, all[1].error.as_deref()),
        (
            WebhookStatus::Untranslated,
            Some("no mapping for orders/create")
        )
    );
    let webhooks = |filter: WebhookFilter| {
        let store = store.clone();
        async move {
            let found = store.list_webhooks(&filter).await.unwrap();
            found.iter().map(|w| w.id).collect::<Vec<_>>()
        }
    };
    let by = WebhookFilter::default;
    let source = Some("s".to_string());
    assert_eq!(webhooks(WebhookFilter { source, ..by() }).await, [a]);
    let status = Some(WebhookStatus::Untranslated);
    assert_eq!(webhooks(WebhookFilter { status, ..by() }).await, [a]);
    let topic = Some("orders/create".to_string());
    assert_eq!(webhooks(WebhookFilter { topic, ..by() }).await, [a]);
    let topic = Some("orders/paid".to_string());
    assert_eq!(webhooks(WebhookFilter { topic, ..by() }).await, [b]);
    let since_ms = Some(T0 + 1_000);
    assert_eq!(webhooks(WebhookFilter { since_ms, ..by() }).await, [b]);
    assert_eq!(
        webhooks(WebhookFilter {
            limit: Some(1),
            ..by()
        })
        .await,
        [b]
    );

    let all = store
        .list_deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].id > all[1].id, "newest first");
    let legion_one = &all[1];
    assert_eq!(
        (
            legion_one.webhook_id,
            legion_one.mapping.as_str(),
            legion_one.key.as_str()
        ),
        (b, LEGION_MAPPING, "t/1")
    );
    assert_eq!(
        (legion_one.destination.as_str(), legion_one.operation),
        ("legion", Operation::LegionPurchaseEvent)
    );
    assert_eq!(
        (legion_one.status, legion_one.attempts),
        (DeliveryStatus::Pending, 0)
    );
    assert_eq!(
        (legion_one.created_at, legion_one.next_attempt_at),
        (T0 + 1_000, T0 + 1_000)
    );
    assert_eq!(legion_one.last_error, None);
    let record = get(&store, legion_one.id).await;
    assert_eq!(&record.summary, legion_one);
    assert_eq!(record.payload, r#"{"order":"1"}"#);
    assert_eq!(
        (
            record.needs,
            record.conversion_id,
            record.request,
            record.lease_until
        ),
        (None, None, None, None)
    );

    let deliveries = |filter: DeliveryFilter| {
        let store = store.clone();
        async move {
            let found = store.list_deliveries(&filter).await.unwrap();
            found
                .iter()
                .map(|d| d.destination.clone())
                .collect::<Vec<_>>()
        }
    };
    let by = DeliveryFilter::default;
    let destination = Some("http".to_string());
    assert_eq!(
        deliveries(DeliveryFilter {
            destination,
            ..by()
        })
        .await,
        ["http"]
    );
    let webhook_id = Some(a);
    assert!(
        deliveries(DeliveryFilter { webhook_id, ..by() })
            .await
            .is_empty()
    );
    let since_ms = Some(T0 + 1_001);
    assert!(
        deliveries(DeliveryFilter { since_ms, ..by() })
            .await
            .is_empty()
    );
    let status = Some(DeliveryStatus::Pending);
    assert_eq!(
        deliveries(DeliveryFilter {
            status,
            limit: Some(1),
            ..by()
        })
        .await,
        ["http"]
    );
    let status = Some(DeliveryStatus::Dead);
    assert!(
        deliveries(DeliveryFilter { status, ..by() })
            .await
            .is_empty()
    );
}

pub async fn a_webhook_reads_back_by_its_id_as_listed_and_an_unknown_id_is_none(
    store: Arc<dyn Store>,
) {
    let a = accept(&store, webhook("s", "a", vec![legion("1")])).await;
    let mut failed = webhook_at("s", "b", T0 + 1, vec![]);
    failed.translation_error = Some("no mapping for orders/paid".into());
    let b = accept(&store, failed).await;
    let listed = store
        .list_webhooks(&WebhookFilter::default())
        .await
        .unwrap();
    for (id, record) in [(b, &listed[0]), (a, &listed[1])] {
        assert_eq!(
            store.get_webhook(id).await.unwrap().as_ref(),
            Some(record),
            "webhook {id}"
        );
    }
    let one = store.get_webhook(a).await.unwrap().unwrap();
    assert_eq!(one.body, br#"{"event":"a"}"#);
    assert_eq!(one.headers["x-haravan-topic"], "orders/paid");
    let unknown = WebhookId(b.0 + 100);
    assert_eq!(store.get_webhook(unknown).await.unwrap(), None);
}
