//! An operator's cancel: what it touches, what it skips, what brings a cancelled delivery
//! back; and the filters and counts an operator's listings and overview read.

use std::sync::Arc;

use storehook::store::{
    Cancelled, DeliveryFilter, DeliveryId, DeliveryStatus, MinuteCount, SkipKind, StatusCount,
    Store, Touched, WebhookFilter, WebhookId,
};

use super::waiting::conversion_and_two_updates;
use super::*;

fn by_id(id: DeliveryId) -> DeliveryFilter {
    DeliveryFilter {
        id: Some(id),
        ..Default::default()
    }
}

pub async fn a_cancel_touches_only_pending_waiting_and_dead_and_only_a_replay_naming_one_requeues_it(
    store: Arc<dyn Store>,
) {
    use DeliveryStatus::*;
    for n in 1..=4 {
        let key = n.to_string();
        accept(&store, webhook_at("s", &key, T0 + n, vec![legion(&key)])).await;
    }
    let [l1, l2, l3, l4] = [
        id_of(&store, LEGION_MAPPING, "s/1").await,
        id_of(&store, LEGION_MAPPING, "s/2").await,
        id_of(&store, LEGION_MAPPING, "s/3").await,
        id_of(&store, LEGION_MAPPING, "s/4").await,
    ];
    // l1 dead, l2 delivered, l3 in flight, l4 pending.
    let claimed = store
        .claim_due_deliveries("legion", 2, T0 + 10, LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    record(
        &store,
        &[l1],
        attempt(T0 + 10, Some(400), dead("400 refused")),
    )
    .await;
    record(&store, &[l2], attempt(T0 + 10, Some(200), delivered(None))).await;
    let claimed = store
        .claim_due_deliveries("legion", 1, T0 + 20, LEASE)
        .await
        .unwrap();
    assert_eq!(DeliveryId(claimed[0].id), l3);

    for (id, expected) in [(l2, 0), (l3, 0), (l1, 1), (l4, 1), (l1, 0)] {
        let (done, touched) = store.cancel_deliveries(&by_id(id), T0 + 30).await.unwrap();
        assert_eq!(done.cancelled, expected, "delivery {id}");
        assert_eq!(
            touched.ids.len() as u64,
            expected,
            "delivery {id}: {touched:?}"
        );
    }
    for (id, status) in [
        (l1, Cancelled),
        (l2, Delivered),
        (l3, InFlight),
        (l4, Cancelled),
    ] {
        assert_eq!(status_of(&store, id).await, status, "delivery {id}");
    }
    let dead_one = get(&store, l1).await;
    assert_eq!(dead_one.summary.last_error.as_deref(), Some("400 refused"));
    assert_eq!(
        store.list_attempts(l1).await.unwrap().len(),
        1,
        "its log stays"
    );

    // Never claimed, not even long after it was due: only l3, its lease expired, is.
    assert_eq!(claim(&store, "legion", T0 + 10 * LEASE).await, [l3]);
    assert_eq!(
        store.next_due_at("legion").await.unwrap(),
        Some(T0 + 11 * LEASE),
        "l3's lease; nothing cancelled is due"
    );
    // A replay that does not name it leaves it; a re-translation leaves it.
    for filter in [
        DeliveryFilter::default(),
        DeliveryFilter {
            status: Some(Cancelled),
            ..Default::default()
        },
    ] {
        let (requeued, touched) = store.requeue_deliveries(&filter, T0 + 40).await.unwrap();
        assert_eq!(requeued.requeued, 0, "{filter:?}");
        assert_eq!(touched, Touched::default(), "{filter:?}");
    }
    let webhook_of_l4 = get(&store, l4).await.summary.webhook_id;
    let (_, replaced) = store
        .replace_deliveries(webhook_of_l4, &[legion("4")], None, None, T0 + 50)
        .await
        .unwrap();
    assert_eq!(replaced, 0);
    assert_eq!(status_of(&store, l4).await, Cancelled);
    // A replay naming it puts it back, due now, its count fresh.
    let (requeued, touched) = store.requeue_deliveries(&by_id(l4), T0 + 60).await.unwrap();
    assert_eq!(requeued.requeued, 1);
    assert_eq!(touched.ids, [l4]);
    let back = get(&store, l4).await;
    assert_eq!(
        (
            back.summary.status,
            back.summary.attempts,
            back.summary.next_attempt_at
        ),
        (Pending, 0, T0 + 60)
    );
    // A cancel by filter takes every cancellable one it matches, in one go.
    let pending = DeliveryFilter {
        destination: Some("legion".into()),
        ..Default::default()
    };
    let (done, touched) = store.cancel_deliveries(&pending, T0 + 70).await.unwrap();
    assert_eq!(
        done,
        storehook::store::Cancelled {
            cancelled: 1,
            skipped: 0
        }
    );
    // What it touched, for the operator's log line: the one it cancelled, its mapping and
    // destination.
    assert_eq!(
        touched,
        Touched {
            ids: vec![l4],
            mappings: [LEGION_MAPPING.to_string()].into(),
            destinations: ["legion".to_string()].into(),
        }
    );
}

pub async fn cancelling_a_conversion_skips_the_updates_waiting_for_it_and_a_replay_naming_it_re_arms_them(
    store: Arc<dyn Store>,
) {
    let [create, approved, rejected] = conversion_and_two_updates(&store).await;
    let (done, touched) = store
        .cancel_deliveries(&by_id(create), T0 + 10)
        .await
        .unwrap();
    assert_eq!(
        touched.ids,
        [create],
        "only the one cancelled, not those skipped"
    );
    assert_eq!(
        done,
        Cancelled {
            cancelled: 1,
            skipped: 2
        }
    );
    for update in [approved, rejected] {
        let skipped = get(&store, update).await;
        assert_eq!(skipped.summary.status, DeliveryStatus::Skipped);
        assert_eq!(skipped.summary.skip, Some(SkipKind::UnmetNeed));
        let reason = skipped.summary.last_error.unwrap_or_default();
        assert!(reason.contains("cancelled"), "{reason}");
        assert!(reason.contains(&create.to_string()), "{reason}");
    }
    assert!(claim(&store, "scalef", T0 + 20).await.is_empty());

    // An update that comes after the cancel is skipped when waiting ones are released,
    // naming the cancel too.
    let late = status_update("1001-refunded", "1001");
    accept(&store, webhook_at("s", "refunded", T0 + 30, vec![late])).await;
    let late = id_of(&store, STATUS_MAPPING, "s/1001-refunded").await;
    release(&store, T0 + 40).await;
    let skipped = get(&store, late).await;
    assert_eq!(skipped.summary.status, DeliveryStatus::Skipped);
    let reason = skipped.summary.last_error.unwrap_or_default();
    assert!(reason.contains("cancelled by an operator"), "{reason}");

    let (requeued, _) = store
        .requeue_deliveries(&by_id(create), T0 + 50)
        .await
        .unwrap();
    assert_eq!((requeued.requeued, requeued.rearmed), (1, 3));
    for update in [approved, rejected, late] {
        assert_eq!(status_of(&store, update).await, DeliveryStatus::Waiting);
    }
    assert_eq!(claim(&store, "scalef", T0 + 50).await, [create]);
}

pub async fn a_cancelled_update_no_longer_holds_back_the_newer_ones(store: Arc<dyn Store>) {
    let [create, approved, rejected] = conversion_and_two_updates(&store).await;
    assert_eq!(claim(&store, "scalef", T0 + 10).await, [create]);
    record(
        &store,
        &[create],
        attempt(T0 + 10, Some(200), delivered(Some("conv-5"))),
    )
    .await;
    release(&store, T0 + 20).await;
    assert_eq!(claim(&store, "scalef", T0 + 20).await, [approved]);
    record(
        &store,
        &[approved],
        attempt(T0 + 20, Some(503), retry(T0 + 100_000, "503")),
    )
    .await;
    assert!(
        claim(&store, "scalef", T0 + 30).await.is_empty(),
        "the rejection waits for the approval's retry"
    );
    let (done, _) = store
        .cancel_deliveries(&by_id(approved), T0 + 40)
        .await
        .unwrap();
    assert_eq!(done.cancelled, 1);
    assert_eq!(
        store.next_due_at("scalef").await.unwrap(),
        Some(T0 + 2),
        "the rejection, due from when it was made, is no longer held back"
    );
    assert_eq!(claim(&store, "scalef", T0 + 50).await, [rejected]);
}

pub async fn listings_filter_by_mapping_time_range_order_and_page_by_cursor(store: Arc<dyn Store>) {
    let mut webhooks = Vec::new();
    for n in 1..=5i64 {
        let key = format!("10{n}");
        let mut new = webhook_at("s", &key, T0 + n * 1_000, vec![legion(&key), http(&key)]);
        new.body = format!(r##"{{"id":{key},"order_number":"#{n}"}}"##).into_bytes();
        webhooks.push(accept(&store, new).await);
    }
    let mut plain = webhook_at("s", "text", T0 + 9_000, vec![]);
    plain.body = b"not json".to_vec();
    let plain = accept(&store, plain).await;

    let ids = |found: Vec<storehook::store::WebhookRecord>| -> Vec<WebhookId> {
        found.iter().map(|w| w.id).collect()
    };
    let list = |filter: WebhookFilter| {
        let store = store.clone();
        async move { store.list_webhooks(&filter).await.unwrap() }
    };
    let order = |text: &str| WebhookFilter {
        order_id: Some(text.into()),
        ..Default::default()
    };
    assert_eq!(
        ids(list(order("103")).await),
        [webhooks[2]],
        "by the body's id"
    );
    assert_eq!(
        ids(list(order("#4")).await),
        [webhooks[3]],
        "by the number shown"
    );
    assert!(list(order("999")).await.is_empty());
    let range = WebhookFilter {
        since_ms: Some(T0 + 2_000),
        until_ms: Some(T0 + 4_000),
        ..Default::default()
    };
    assert_eq!(ids(list(range).await), [webhooks[2], webhooks[1]]);
    // Pages of two, newest first, each after the last id of the one before.
    let mut pages = Vec::new();
    let mut before_id = None;
    loop {
        let page = ids(list(WebhookFilter {
            before_id,
            limit: Some(2),
            ..Default::default()
        })
        .await);
        if page.is_empty() {
            break;
        }
        before_id = page.last().copied();
        pages.push(page);
    }
    assert_eq!(
        pages,
        [
            vec![plain, webhooks[4]],
            vec![webhooks[3], webhooks[2]],
            vec![webhooks[1], webhooks[0]],
        ]
    );

    let deliveries = |filter: DeliveryFilter| {
        let store = store.clone();
        async move {
            let found = store.list_deliveries(&filter).await.unwrap();
            found
                .iter()
                .map(|d| (d.mapping.clone(), d.key.clone()))
                .collect::<Vec<_>>()
        }
    };
    let by_mapping = DeliveryFilter {
        mapping: Some(HTTP_MAPPING.into()),
        until_ms: Some(T0 + 3_000),
        ..Default::default()
    };
    assert_eq!(
        deliveries(by_mapping).await,
        [
            (HTTP_MAPPING.to_string(), "s/102".to_string()),
            (HTTP_MAPPING.to_string(), "s/101".to_string())
        ]
    );
    let all = store
        .list_deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    let after_third = DeliveryFilter {
        before_id: Some(all[2].id),
        limit: Some(3),
        ..Default::default()
    };
    let page = store.list_deliveries(&after_third).await.unwrap();
    assert_eq!(page.as_slice(), &all[3..6]);
    let one = store.list_deliveries(&by_id(all[4].id)).await.unwrap();
    assert_eq!(one.as_slice(), &all[4..5]);
}

pub async fn the_overview_counts_by_destination_and_status_the_oldest_pending_and_attempts_per_minute(
    store: Arc<dyn Store>,
) {
    let stats = store.delivery_stats(T0).await.unwrap();
    assert_eq!(stats, storehook::store::DeliveryStats::default());
    for n in 1..=3i64 {
        let key = n.to_string();
        accept(
            &store,
            webhook_at("s", &key, T0 + n, vec![legion(&key), http(&key)]),
        )
        .await;
    }
    let legion_ids = claim(&store, "legion", T0 + 10).await;
    assert_eq!(legion_ids.len(), 3);
    // Minute 0: one delivered, one retried; minute 2: one dead.
    record(
        &store,
        &legion_ids[..1],
        attempt(T0 + 10, Some(200), delivered(None)),
    )
    .await;
    record(
        &store,
        &legion_ids[1..2],
        attempt(T0 + 20, Some(503), retry(T0 + 999_999, "503")),
    )
    .await;
    record(
        &store,
        &legion_ids[2..],
        attempt(T0 + 120_000, Some(400), dead("400")),
    )
    .await;

    let stats = store.delivery_stats(T0).await.unwrap();
    let count = |destination: &str, status, count| StatusCount {
        destination: destination.into(),
        status,
        count,
    };
    use DeliveryStatus::*;
    let mut counts = stats.counts.clone();
    counts.sort_by(|a, b| {
        (&a.destination, a.status.as_str()).cmp(&(&b.destination, b.status.as_str()))
    });
    assert_eq!(
        counts,
        [
            count("http", Pending, 3),
            count("legion", Dead, 1),
            count("legion", Delivered, 1),
            count("legion", Pending, 1),
        ]
    );
    let mut oldest = stats.oldest_pending.clone();
    oldest.sort();
    assert_eq!(
        oldest,
        [("http".to_string(), T0 + 1), ("legion".to_string(), T0 + 2)]
    );
    let minute = |at: i64| at / 60_000 * 60_000;
    assert_eq!(
        stats.per_minute,
        [
            MinuteCount {
                minute: minute(T0 + 10),
                delivered: 1,
                failed: 1
            },
            MinuteCount {
                minute: minute(T0 + 120_000),
                delivered: 0,
                failed: 1
            },
        ]
    );
    let later = store.delivery_stats(T0 + 60_000).await.unwrap();
    assert_eq!(
        later.per_minute.len(),
        1,
        "only the attempts since the time asked"
    );
}
