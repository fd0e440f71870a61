//! A delivery worker's side: claims, leases, and what its attempts come to.

use std::sync::Arc;

use storehook::store::{AttemptOutcome, DeliveryId, DeliveryStatus, Recorded, Store, StoreError};

use super::*;

pub async fn a_claim_leases_a_delivery_to_one_worker_and_an_expired_lease_is_claimed_again(
    store: Arc<dyn Store>,
) {
    accept(&store, webhook_at("s", "a", T0, vec![legion("1")])).await;
    accept(&store, webhook_at("s", "b", T0 + 10, vec![legion("2")])).await;
    let a = id_of(&store, LEGION_MAPPING, "s/1").await;
    let b = id_of(&store, LEGION_MAPPING, "s/2").await;

    // Two workers claim at once: one of them leases a (b is not due yet), the other nothing.
    let (one, other) = tokio::join!(claim(&store, "legion", T0), claim(&store, "legion", T0));
    let mut both = [one, other];
    both.sort();
    assert_eq!(both, [vec![], vec![a]]);
    let leased = get(&store, a).await;
    assert_eq!(leased.summary.status, DeliveryStatus::InFlight);
    assert_eq!(
        (leased.summary.attempts, leased.lease_until),
        (1, Some(T0 + LEASE))
    );
    assert!(
        claim(&store, "scalef", T0 + 10).await.is_empty(),
        "another destination's"
    );
    assert_eq!(claim(&store, "legion", T0 + 10).await, [b], "a is leased");
    record(&store, &[b], attempt(T0 + 10, Some(200), delivered(None))).await;

    // The worker that leased a died. Its lease holds through its last millisecond, then a
    // is claimed again, the attempt counted.
    assert!(claim(&store, "legion", T0 + LEASE).await.is_empty());
    let again = store
        .claim_due_deliveries("legion", 10, T0 + LEASE + 1, LEASE)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((DeliveryId(again[0].id), again[0].attempts), (a, 2));
    assert_eq!(again[0].operation, Operation::LegionPurchaseEvent.as_str());
    assert_eq!(
        (again[0].payload.as_str(), again[0].conversion_id.as_deref()),
        (r#"{"order":"1"}"#, None)
    );
    assert_eq!(
        get(&store, a).await.lease_until,
        Some(T0 + LEASE + 1 + LEASE)
    );
}

pub async fn retry_scheduling_and_dead(store: Arc<dyn Store>) {
    accept(&store, webhook("s", "a", vec![legion("1")])).await;
    let [d] = claim(&store, "legion", T0).await[..] else {
        panic!("one delivery due");
    };
    let next = T0 + 5_000;
    record(
        &store,
        &[d],
        attempt(T0, Some(503), retry(next, "503 Service Unavailable")),
    )
    .await;
    let scheduled = get(&store, d).await;
    assert_eq!(scheduled.summary.status, DeliveryStatus::Pending);
    assert_eq!(
        (scheduled.summary.next_attempt_at, scheduled.lease_until),
        (next, None)
    );
    assert_eq!(
        scheduled.summary.last_error.as_deref(),
        Some("503 Service Unavailable")
    );
    assert_eq!(store.next_due_at("legion").await.unwrap(), Some(next));

    assert!(
        claim(&store, "legion", next - 1).await.is_empty(),
        "not due before its retry"
    );
    let claimed = store
        .claim_due_deliveries("legion", 10, next, LEASE)
        .await
        .unwrap();
    assert_eq!((DeliveryId(claimed[0].id), claimed[0].attempts), (d, 2));
    assert_eq!(
        store.next_due_at("legion").await.unwrap(),
        Some(next + LEASE),
        "its lease's end"
    );

    record(
        &store,
        &[d],
        attempt(next, Some(400), dead("400 Bad Request: invalid uid")),
    )
    .await;
    let given_up = get(&store, d).await;
    assert_eq!(given_up.summary.status, DeliveryStatus::Dead);
    assert_eq!(
        given_up.summary.last_error.as_deref(),
        Some("400 Bad Request: invalid uid")
    );
    assert_eq!(given_up.lease_until, None);
    assert!(
        claim(&store, "legion", next + 10 * LEASE).await.is_empty(),
        "never due again"
    );
    assert_eq!(store.next_due_at("legion").await.unwrap(), None);
}

pub async fn dry_run_keeps_the_request(store: Arc<dyn Store>) {
    accept(&store, webhook("s", "a", vec![legion("1")])).await;
    let [d] = claim(&store, "legion", T0).await[..] else {
        panic!("one delivery due");
    };
    let request =
        "POST https://legion.example/api/events\nauthorization: ****\n\n[{\"order\":\"1\"}]";
    let dry = Recorded::DryRun {
        request: request.to_string(),
    };
    record(&store, &[d], attempt(T0, None, dry)).await;

    let kept = get(&store, d).await;
    assert_eq!(kept.summary.status, DeliveryStatus::DryRun);
    assert_eq!(kept.request.as_deref(), Some(request), "the exact request");
    assert_eq!(kept.payload, r#"{"order":"1"}"#);
    assert_eq!(kept.lease_until, None);
    let log = store.list_attempts(d).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].outcome, log[0].http_status),
        (AttemptOutcome::DryRun, None)
    );
    assert_eq!(log[0].response.as_deref(), Some(request));
    assert!(
        claim(&store, "legion", T0 + 10 * LEASE).await.is_empty(),
        "nothing was sent, nothing is due"
    );
    assert_eq!(store.next_due_at("legion").await.unwrap(), None);
}

pub async fn the_attempt_log_of_a_delivery(store: Arc<dyn Store>) {
    accept(&store, webhook("s", "a", vec![legion("1"), legion("2")])).await;
    let a = id_of(&store, LEGION_MAPPING, "s/1").await;
    let b = id_of(&store, LEGION_MAPPING, "s/2").await;
    assert_eq!(claim(&store, "legion", T0).await, [a, b]);
    // One request for both, refused: each is sent again alone within the same lease.
    let split = Recorded::Split {
        reason: "400: one event of the batch is invalid".into(),
    };
    store
        .record_attempts(&[(vec![a.0, b.0], attempt(T0, Some(400), split))])
        .await
        .unwrap();
    assert_eq!(status_of(&store, a).await, DeliveryStatus::InFlight);
    store
        .record_attempts(&[
            (
                vec![a.0],
                attempt(
                    T0 + 20,
                    Some(503),
                    retry(T0 + 5_000, "503 Service Unavailable"),
                ),
            ),
            (vec![b.0], attempt(T0 + 20, Some(200), delivered(None))),
        ])
        .await
        .unwrap();
    assert_eq!(claim(&store, "legion", T0 + 5_000).await, [a]);
    record(
        &store,
        &[a],
        attempt(T0 + 5_000, Some(400), dead("400 Bad Request")),
    )
    .await;
    // A replay adds attempts; it never erases the earlier ones.
    let filter = DeliveryFilter {
        status: Some(DeliveryStatus::Dead),
        ..Default::default()
    };
    assert_eq!(
        store
            .requeue_deliveries(&filter, T0 + 9_000)
            .await
            .unwrap()
            .0
            .requeued,
        1
    );
    assert_eq!(claim(&store, "legion", T0 + 9_000).await, [a]);
    record(
        &store,
        &[a],
        attempt(T0 + 9_000, Some(200), delivered(None)),
    )
    .await;

    let log = store.list_attempts(a).await.unwrap();
    let outcomes: Vec<(AttemptOutcome, Option<u16>, i64)> = log
        .iter()
        .map(|r| (r.outcome, r.http_status, r.started_at))
        .collect();
    use AttemptOutcome::*;
    assert_eq!(
        outcomes,
        [
            (Split, Some(400), T0),
            (Retry, Some(503), T0 + 20),
            (Dead, Some(400), T0 + 5_000),
            (Delivered, Some(200), T0 + 9_000),
        ],
        "oldest first"
    );
    assert!(log.iter().all(|r| r.duration_ms == 10));
    let responses: Vec<Option<&str>> = log.iter().map(|r| r.response.as_deref()).collect();
    assert_eq!(
        responses,
        [
            Some("400: one event of the batch is invalid"),
            Some("503 Service Unavailable"),
            Some("400 Bad Request"),
            Some(r#"{"status":"success"}"#),
        ]
    );
    let b_log: Vec<AttemptOutcome> = store
        .list_attempts(b)
        .await
        .unwrap()
        .iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(b_log, [Split, Delivered]);
    // The delivery's own count starts again at a replay; the log keeps every attempt.
    assert_eq!(get(&store, a).await.summary.attempts, 1);
    assert!(
        store
            .list_attempts(DeliveryId(a.0 + b.0 + 100))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_full_round_is_recorded_and_the_next_claimed_in_one_call(store: Arc<dyn Store>) {
    for (n, key) in ["1", "2", "3"].into_iter().enumerate() {
        accept(
            &store,
            webhook_at("s", key, T0 + n as i64, vec![legion(key)]),
        )
        .await;
    }
    let ids = [
        id_of(&store, LEGION_MAPPING, "s/1").await,
        id_of(&store, LEGION_MAPPING, "s/2").await,
        id_of(&store, LEGION_MAPPING, "s/3").await,
    ];
    let first = store
        .claim_due_deliveries("legion", 2, T0 + 2, LEASE)
        .await
        .unwrap();
    let first: Vec<DeliveryId> = first.iter().map(|d| DeliveryId(d.id)).collect();
    assert_eq!(first, ids[..2], "the oldest due first");
    let round = [(
        vec![ids[0].0, ids[1].0],
        attempt(T0 + 2, Some(200), delivered(None)),
    )];
    let next = store
        .record_attempts_and_claim(&round, "legion", 2, T0 + 20, LEASE)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|d| DeliveryId(d.id)).collect::<Vec<_>>(),
        [ids[2]]
    );
    assert_eq!(status_of(&store, ids[0]).await, DeliveryStatus::Delivered);
    assert_eq!(status_of(&store, ids[1]).await, DeliveryStatus::Delivered);
    assert_eq!(status_of(&store, ids[2]).await, DeliveryStatus::InFlight);

    // A record that fails (its delivery does not exist) claims nothing.
    accept(&store, webhook_at("s", "4", T0 + 30, vec![legion("4")])).await;
    let fourth = id_of(&store, LEGION_MAPPING, "s/4").await;
    let unknown = DeliveryId(ids[2].0 + 1_000);
    let round = [(
        vec![unknown.0],
        attempt(T0 + 40, Some(200), delivered(None)),
    )];
    let failed = store
        .record_attempts_and_claim(&round, "legion", 2, T0 + 40, LEASE)
        .await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
    assert_eq!(status_of(&store, fourth).await, DeliveryStatus::Pending);
    assert_eq!(store.get_delivery(unknown).await.unwrap(), None);
}

pub async fn released_leases_are_due_again_with_the_attempt_uncounted(store: Arc<dyn Store>) {
    accept(&store, webhook("s", "a", vec![legion("1"), legion("2")])).await;
    let a = id_of(&store, LEGION_MAPPING, "s/1").await;
    let b = id_of(&store, LEGION_MAPPING, "s/2").await;
    assert_eq!(claim(&store, "legion", T0).await, [a, b]);
    record(&store, &[b], attempt(T0, Some(200), delivered(None))).await;

    // At shutdown the worker gives back what it did not start; b is no longer in flight.
    let after = T0 + 5;
    assert_eq!(store.release_leases(&[a.0, b.0], after).await.unwrap(), 1);
    let released = get(&store, a).await;
    assert_eq!(released.summary.status, DeliveryStatus::Pending);
    assert_eq!((released.summary.attempts, released.lease_until), (0, None));
    assert_eq!(released.summary.next_attempt_at, after, "due when released");
    assert_eq!(status_of(&store, b).await, DeliveryStatus::Delivered);

    let again = store
        .claim_due_deliveries("legion", 10, after, LEASE)
        .await
        .unwrap();
    assert_eq!(
        (DeliveryId(again[0].id), again[0].attempts, again.len()),
        (a, 1, 1)
    );
}
