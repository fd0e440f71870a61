//! Deliveries that need another delivery first: a Scalef conversion's status updates.

use std::sync::Arc;

use storehook::store::{DeliveryFilter, DeliveryId, DeliveryStatus, Requeued, SkipKind, Store};

use super::*;

/// Order 1001's conversion, accepted at [`T0`], and its status updates `approved` then
/// `rejected`, from webhooks of their own at `T0 + 1` and `T0 + 2`: their ids.
pub async fn conversion_and_two_updates(store: &Arc<dyn Store>) -> [DeliveryId; 3] {
    accept(store, webhook("s", "paid", vec![conversion("1001")])).await;
    for (n, status) in ["approved", "rejected"].into_iter().enumerate() {
        let update = status_update(&format!("1001-{status}"), "1001");
        accept(
            store,
            webhook_at("s", status, T0 + 1 + n as i64, vec![update]),
        )
        .await;
    }
    [
        id_of(store, CONVERSION_MAPPING, "s/1001").await,
        id_of(store, STATUS_MAPPING, "s/1001-approved").await,
        id_of(store, STATUS_MAPPING, "s/1001-rejected").await,
    ]
}

pub async fn a_scalef_status_update_waits_for_its_conversion_copies_its_id_and_goes_out_one_at_a_time_in_order(
    store: Arc<dyn Store>,
) {
    let [create, approved, rejected] = conversion_and_two_updates(&store).await;
    let waiting = get(&store, approved).await;
    assert_eq!(waiting.summary.status, DeliveryStatus::Waiting);
    assert_eq!(
        waiting.needs,
        Some((CONVERSION_MAPPING.to_string(), "s/1001".to_string()))
    );
    assert_eq!(
        claim(&store, "scalef", T0 + 10).await,
        [create],
        "only the create"
    );
    release(&store, T0 + 10).await;
    assert_eq!(
        status_of(&store, approved).await,
        DeliveryStatus::Waiting,
        "the create is in flight"
    );
    record(
        &store,
        &[create],
        attempt(T0 + 10, Some(200), delivered(Some("conv-77"))),
    )
    .await;
    assert_eq!(
        get(&store, create).await.conversion_id.as_deref(),
        Some("conv-77")
    );

    release(&store, T0 + 30).await;
    for (update, made) in [(approved, T0 + 1), (rejected, T0 + 2)] {
        let released = get(&store, update).await;
        assert_eq!(released.summary.status, DeliveryStatus::Pending);
        assert_eq!(
            released.conversion_id.as_deref(),
            Some("conv-77"),
            "copied from its create"
        );
        assert_eq!(
            released.summary.next_attempt_at, made,
            "due from when it was made"
        );
    }
    assert_eq!(store.next_due_at("scalef").await.unwrap(), Some(T0 + 1));

    // One at a time, in the order they were made: the rejection waits while the approval
    // is unfinished, however long its retry takes.
    let first = store
        .claim_due_deliveries("scalef", 10, T0 + 40, LEASE)
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        (DeliveryId(first[0].id), first[0].conversion_id.as_deref()),
        (approved, Some("conv-77"))
    );
    record(
        &store,
        &[approved],
        attempt(T0 + 40, Some(503), retry(T0 + 5_000, "503")),
    )
    .await;
    assert_eq!(
        store.next_due_at("scalef").await.unwrap(),
        Some(T0 + 5_000),
        "the rejection, due, is held back"
    );
    assert!(claim(&store, "scalef", T0 + 50).await.is_empty());
    assert_eq!(claim(&store, "scalef", T0 + 5_000).await, [approved]);
    assert!(
        claim(&store, "scalef", T0 + 5_001).await.is_empty(),
        "the approval is in flight"
    );
    record(
        &store,
        &[approved],
        attempt(T0 + 5_000, Some(200), delivered(None)),
    )
    .await;
    let second = store
        .claim_due_deliveries("scalef", 10, T0 + 5_010, LEASE)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(
        (DeliveryId(second[0].id), second[0].conversion_id.as_deref()),
        (rejected, Some("conv-77"))
    );
}

pub async fn waiting_that_times_out_becomes_skipped(store: Arc<dyn Store>) {
    // An update whose conversion never appears, and one whose conversion is stored but not
    // yet delivered.
    accept(
        &store,
        webhook("s", "orphan", vec![status_update("2002-approved", "2002")]),
    )
    .await;
    accept(
        &store,
        webhook(
            "s",
            "late",
            vec![conversion("3003"), status_update("3003-approved", "3003")],
        ),
    )
    .await;
    let orphan = id_of(&store, STATUS_MAPPING, "s/2002-approved").await;
    let patient = id_of(&store, STATUS_MAPPING, "s/3003-approved").await;

    release(&store, T0 + WAITING_TIMEOUT - 1).await;
    assert_eq!(status_of(&store, orphan).await, DeliveryStatus::Waiting);
    release(&store, T0 + WAITING_TIMEOUT).await;
    let skipped = get(&store, orphan).await;
    assert_eq!(skipped.summary.status, DeliveryStatus::Skipped);
    let reason = skipped.summary.last_error.unwrap_or_default();
    assert!(reason.contains("never appeared"), "{reason}");
    assert_eq!(skipped.summary.skip, Some(SkipKind::UnmetNeed));
    // The timeout is for a delivery that never appeared, not for one that is slow.
    release(&store, T0 + 10 * WAITING_TIMEOUT).await;
    assert_eq!(status_of(&store, patient).await, DeliveryStatus::Waiting);
    let due: Vec<DeliveryId> = claim(&store, "scalef", T0 + 10 * WAITING_TIMEOUT).await;
    assert!(!due.contains(&orphan), "a skipped delivery is never sent");
}

pub async fn a_replayed_conversion_re_queues_its_skipped_status_updates(store: Arc<dyn Store>) {
    let [create, approved, rejected] = conversion_and_two_updates(&store).await;
    conversion_goes_dead(&store, create).await;
    for update in [approved, rejected] {
        let skipped = get(&store, update).await;
        assert_eq!(skipped.summary.status, DeliveryStatus::Skipped);
        let reason = skipped.summary.last_error.unwrap_or_default();
        assert!(reason.contains("was not made (dead)"), "{reason}");
        assert_eq!(skipped.summary.skip, Some(SkipKind::UnmetNeed));
    }

    let filter = DeliveryFilter {
        status: Some(DeliveryStatus::Dead),
        ..Default::default()
    };
    let (requeued, _) = store.requeue_deliveries(&filter, T0 + 100).await.unwrap();
    assert_eq!(
        requeued,
        Requeued {
            requeued: 1,
            waiting: 0,
            rearmed: 2,
            purged: 0
        }
    );
    let again = get(&store, create).await;
    assert_eq!(
        (again.summary.status, again.summary.attempts),
        (DeliveryStatus::Pending, 0)
    );
    assert_eq!(again.summary.next_attempt_at, T0 + 100);
    assert_eq!(status_of(&store, approved).await, DeliveryStatus::Waiting);
    assert_eq!(status_of(&store, rejected).await, DeliveryStatus::Waiting);

    assert_eq!(claim(&store, "scalef", T0 + 100).await, [create]);
    record(
        &store,
        &[create],
        attempt(T0 + 100, Some(200), delivered(Some("conv-88"))),
    )
    .await;
    release(&store, T0 + 110).await;
    let claimed = store
        .claim_due_deliveries("scalef", 10, T0 + 110, LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "one at a time");
    assert_eq!(
        (
            DeliveryId(claimed[0].id),
            claimed[0].conversion_id.as_deref()
        ),
        (approved, Some("conv-88"))
    );
}

pub async fn a_replayed_status_update_older_than_one_already_delivered_is_superseded(
    store: Arc<dyn Store>,
) {
    let [create, approved, rejected] = conversion_and_two_updates(&store).await;
    assert_eq!(claim(&store, "scalef", T0 + 10).await, [create]);
    record(
        &store,
        &[create],
        attempt(T0 + 10, Some(200), delivered(Some("conv-77"))),
    )
    .await;
    release(&store, T0 + 20).await;
    assert_eq!(claim(&store, "scalef", T0 + 20).await, [approved]);
    record(
        &store,
        &[approved],
        attempt(T0 + 20, Some(400), dead("400")),
    )
    .await;
    assert_eq!(
        claim(&store, "scalef", T0 + 30).await,
        [rejected],
        "the approval is finished"
    );
    record(
        &store,
        &[rejected],
        attempt(T0 + 30, Some(200), delivered(None)),
    )
    .await;

    // Sent now, the approval would undo the rejection.
    let filter = DeliveryFilter {
        status: Some(DeliveryStatus::Dead),
        ..Default::default()
    };
    let (requeued, _) = store.requeue_deliveries(&filter, T0 + 40).await.unwrap();
    assert_eq!(
        requeued,
        Requeued {
            requeued: 1,
            waiting: 1,
            rearmed: 0,
            purged: 0
        }
    );
    let replayed = get(&store, approved).await;
    assert_eq!(replayed.summary.status, DeliveryStatus::Waiting);
    assert_eq!(
        replayed.conversion_id, None,
        "taken again once the create is delivered"
    );
    release(&store, T0 + 50).await;
    let superseded = get(&store, approved).await;
    assert_eq!(superseded.summary.status, DeliveryStatus::Skipped);
    let reason = superseded.summary.last_error.unwrap_or_default();
    assert!(reason.contains("superseded"), "{reason}");
    assert_eq!(superseded.summary.skip, Some(SkipKind::Superseded));
    assert_eq!(status_of(&store, rejected).await, DeliveryStatus::Delivered);
    assert!(claim(&store, "scalef", T0 + 60).await.is_empty());
}

pub async fn the_delivery_a_waiting_one_needs_is_found_by_its_mapping_and_key(
    store: Arc<dyn Store>,
) {
    let [create, approved, _] = conversion_and_two_updates(&store).await;
    let (mapping, key) = get(&store, approved)
        .await
        .needs
        .expect("it needs its create");
    let needed = store
        .delivery_by_key(&mapping, &key)
        .await
        .unwrap()
        .expect("its create is stored");
    assert_eq!(needed, get(&store, create).await.summary);
    assert_eq!(needed.status, DeliveryStatus::Pending);
    // The key is the stored one (`source/key`), and the mapping is part of it.
    assert_eq!(store.delivery_by_key(&mapping, "1001").await.unwrap(), None);
    assert_eq!(
        store.delivery_by_key(STATUS_MAPPING, &key).await.unwrap(),
        None
    );
}
