//! Skipped deliveries by kind: a mapping's own skip (stored with its reason, never sent nor
//! replayed, replaced by a later plan of its key), and the re-arming of status updates
//! skipped for an unmet need, which reads the kind and never the reason's text.

use std::sync::Arc;

use storehook::store::{
    Accepted, DeliveryFilter, DeliveryStatus, Requeued, SkipKind, Store, WebhookStatus,
};

use super::*;

/// The mapping's skip of `delivery`, with `reason`.
fn skipped(delivery: NewDelivery, reason: &str) -> NewDelivery {
    NewDelivery {
        payload: "null".to_string(),
        needs: None,
        skipped: Some(reason.to_string()),
        ..delivery
    }
}

pub async fn a_mapping_skip_is_stored_with_its_reason_and_never_sent_nor_replayed(
    store: Arc<dyn Store>,
) {
    let accepted = store
        .accept(webhook(
            "s",
            "guest",
            vec![skipped(legion("1"), "no mobile number"), http("1")],
        ))
        .await
        .unwrap();
    let Accepted::Stored {
        webhook_id,
        deliveries: 1,
        skipped: 1,
    } = accepted
    else {
        panic!("one delivery and one skip: {accepted:?}");
    };
    let webhooks = store.list_webhooks(&Default::default()).await.unwrap();
    assert_eq!(
        webhooks[0].status,
        WebhookStatus::Translated,
        "a skip is no error"
    );
    let skip = get(&store, id_of(&store, LEGION_MAPPING, "s/1").await).await;
    assert_eq!(
        (
            skip.summary.webhook_id,
            skip.summary.status,
            skip.summary.skip,
            skip.summary.last_error.as_deref()
        ),
        (
            webhook_id,
            DeliveryStatus::Skipped,
            Some(SkipKind::Mapping),
            Some("no mobile number")
        )
    );
    assert!(
        claim(&store, "legion", T0 + 10).await.is_empty(),
        "never sent"
    );
    assert_eq!(store.next_due_at("legion").await.unwrap(), None);
    record(
        &store,
        &claim(&store, "http", T0 + 10).await,
        attempt(T0 + 10, Some(200), delivered(None)),
    )
    .await;

    for filter in [
        DeliveryFilter::default(),
        DeliveryFilter {
            status: Some(DeliveryStatus::Skipped),
            ..Default::default()
        },
        DeliveryFilter {
            webhook_id: Some(webhook_id),
            destination: Some("legion".into()),
            ..Default::default()
        },
    ] {
        let (requeued, _) = store.requeue_deliveries(&filter, T0 + 20).await.unwrap();
        assert_eq!(requeued.requeued, 0, "{filter:?}: {requeued:?}");
        assert_eq!(
            requeued.purged, 0,
            "{filter:?}: not counted as purged either"
        );
    }
    let still = get(&store, skip.summary.id).await.summary;
    assert_eq!(
        (still.status, still.skip),
        (DeliveryStatus::Skipped, Some(SkipKind::Mapping))
    );
    assert!(claim(&store, "legion", T0 + 30).await.is_empty());
}

pub async fn a_later_plan_of_the_same_key_replaces_a_mapping_skip_and_a_skip_never_replaces_a_plan(
    store: Arc<dyn Store>,
) {
    accept(
        &store,
        webhook_at(
            "s",
            "v1",
            T0,
            vec![skipped(legion("1"), "no mobile number")],
        ),
    )
    .await;
    let id = id_of(&store, LEGION_MAPPING, "s/1").await;

    // The same order again, now with a phone: its plan takes the skip's place.
    let accepted = store
        .accept(webhook_at("s", "v2", T0 + 5, vec![legion("1")]))
        .await
        .unwrap();
    let Accepted::Stored {
        webhook_id: v2,
        deliveries: 1,
        skipped: 0,
    } = accepted
    else {
        panic!("the plan is a delivery: {accepted:?}");
    };
    let replaced = get(&store, id).await;
    assert_eq!(
        (
            replaced.summary.webhook_id,
            replaced.summary.status,
            replaced.summary.skip,
            replaced.summary.last_error,
            replaced.payload.as_str()
        ),
        (v2, DeliveryStatus::Pending, None, None, r#"{"order":"1"}"#)
    );
    assert_eq!(claim(&store, "legion", T0 + 5).await, [id]);
    record(&store, &[id], attempt(T0 + 5, Some(200), delivered(None))).await;

    // A later skip of the same key leaves the delivery as it is, and so does a later plan.
    let accepted = store
        .accept(webhook_at(
            "s",
            "v3",
            T0 + 6,
            vec![skipped(legion("1"), "no mobile number")],
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            accepted,
            Accepted::Stored {
                deliveries: 0,
                skipped: 0,
                ..
            }
        ),
        "{accepted:?}"
    );
    accept(&store, webhook_at("s", "v4", T0 + 7, vec![legion("1")])).await;
    let kept = get(&store, id).await.summary;
    assert_eq!(
        (kept.webhook_id, kept.status),
        (v2, DeliveryStatus::Delivered)
    );

    // A re-translation that now gives a plan replaces a skip too, and one that now skips
    // gives a delivery not yet sent the skip.
    let w = accept(
        &store,
        webhook_at("s", "v5", T0 + 8, vec![skipped(http("2"), "test order")]),
    )
    .await;
    let two = id_of(&store, HTTP_MAPPING, "s/2").await;
    let (added, replaced) = store
        .replace_deliveries(w, &[http("2")], None, None, T0 + 9)
        .await
        .unwrap();
    assert_eq!((added, replaced), (0, 1));
    let record2 = get(&store, two).await.summary;
    assert_eq!(
        (record2.status, record2.skip, record2.next_attempt_at),
        (DeliveryStatus::Pending, None, T0 + 9)
    );
    let (added, replaced) = store
        .replace_deliveries(w, &[skipped(http("2"), "test order")], None, None, T0 + 10)
        .await
        .unwrap();
    assert_eq!((added, replaced), (0, 1));
    let record2 = get(&store, two).await.summary;
    assert_eq!(
        (record2.status, record2.skip, record2.last_error.as_deref()),
        (
            DeliveryStatus::Skipped,
            Some(SkipKind::Mapping),
            Some("test order")
        )
    );
    assert!(claim(&store, "http", T0 + 20).await.is_empty());
}

pub async fn a_replayed_conversion_re_arms_only_updates_skipped_for_an_unmet_need(
    store: Arc<dyn Store>,
) {
    // The conversion of order 1001, an update the mapping skipped (with the conversion as
    // its need, as a store may be given), and one that waits for it.
    let mut mapping_skip = skipped(status_update("1001-approved", "1001"), "a test order");
    mapping_skip.needs = Some((CONVERSION_MAPPING.to_string(), "1001".to_string()));
    accept(
        &store,
        webhook(
            "s",
            "paid",
            vec![
                conversion("1001"),
                mapping_skip,
                status_update("1001-rejected", "1001"),
            ],
        ),
    )
    .await;
    let create = id_of(&store, CONVERSION_MAPPING, "s/1001").await;
    let by_mapping = id_of(&store, STATUS_MAPPING, "s/1001-approved").await;
    let unmet = id_of(&store, STATUS_MAPPING, "s/1001-rejected").await;
    conversion_goes_dead(&store, create).await;
    let kinds = |store: Arc<dyn Store>| async move {
        let mut kinds = Vec::new();
        for id in [by_mapping, unmet] {
            let summary = get(&store, id).await.summary;
            kinds.push((summary.status, summary.skip));
        }
        kinds
    };
    assert_eq!(
        kinds(store.clone()).await,
        [
            (DeliveryStatus::Skipped, Some(SkipKind::Mapping)),
            (DeliveryStatus::Skipped, Some(SkipKind::UnmetNeed)),
        ]
    );

    let (requeued, _) = store
        .requeue_deliveries(
            &DeliveryFilter {
                status: Some(DeliveryStatus::Dead),
                ..Default::default()
            },
            T0 + 30,
        )
        .await
        .unwrap();
    assert_eq!(
        requeued,
        Requeued {
            requeued: 1,
            waiting: 0,
            rearmed: 1,
            purged: 0
        }
    );
    assert_eq!(
        kinds(store.clone()).await,
        [
            (DeliveryStatus::Skipped, Some(SkipKind::Mapping)),
            (DeliveryStatus::Waiting, None),
        ]
    );
}
