//! What operators and the store's upkeep do to stored deliveries: replay and retention, and
//! the claim that runs a periodic job once among the instances.

use std::collections::BTreeMap;
use std::sync::Arc;

use storehook::store::{
    Accepted, AttemptOutcome, DeliveryFilter, DeliveryId, DeliveryStatus, Recorded, Requeued,
    Store, WebhookFilter, WebhookStatus, periodic::RETENTION,
};

use super::*;

/// A day in milliseconds.
const DAY: i64 = 86_400_000;

pub async fn retention_purges_bodies_and_payloads_but_keeps_ids_and_keys(store: Arc<dyn Store>) {
    let done = accept(&store, webhook("s", "done", vec![legion("1")])).await;
    let dead_one = accept(&store, webhook("s", "dead", vec![legion("2")])).await;
    let dry = accept(&store, webhook("s", "dry", vec![http("3")])).await;
    let mut failed = webhook("s", "untranslated", vec![]);
    failed.translation_error = Some("no mapping for orders/paid".into());
    let untranslated = accept(&store, failed).await;
    let recent = accept(
        &store,
        webhook_at("s", "recent", T0 + DAY, vec![legion("4")]),
    )
    .await;
    let ids = [
        id_of(&store, LEGION_MAPPING, "s/1").await,
        id_of(&store, LEGION_MAPPING, "s/2").await,
        id_of(&store, HTTP_MAPPING, "s/3").await,
        id_of(&store, LEGION_MAPPING, "s/4").await,
    ];
    let [delivered_id, dead_id, dry_id, recent_id] = ids;
    let legion_due = claim(&store, "legion", T0 + DAY).await;
    assert_eq!(legion_due, [delivered_id, dead_id, recent_id]);
    record(
        &store,
        &[delivered_id, recent_id],
        attempt(T0 + DAY, Some(200), delivered(None)),
    )
    .await;
    record(
        &store,
        &[dead_id],
        attempt(T0 + DAY, Some(400), dead("400")),
    )
    .await;
    assert_eq!(claim(&store, "http", T0 + DAY).await, [dry_id]);
    let request = Recorded::DryRun {
        request: "POST https://example.test/orders".into(),
    };
    record(&store, &[dry_id], attempt(T0 + DAY, None, request)).await;

    // Webhooks received before the cutoff whose deliveries are all done: the dead one may
    // still be replayed, so its webhook keeps its body.
    assert_eq!(store.purge_before(T0 + DAY).await.unwrap(), 3);
    let webhooks: BTreeMap<_, _> = store
        .list_webhooks(&WebhookFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.id, w))
        .collect();
    for id in [done, dry, untranslated] {
        let purged = &webhooks[&id];
        assert_eq!(purged.status, WebhookStatus::Purged, "{purged:?}");
        assert!(
            purged.body.is_empty() && purged.headers.is_empty(),
            "{purged:?}"
        );
        assert_eq!(
            (purged.source.as_str(), purged.topic.as_str()),
            ("s", "orders/paid")
        );
    }
    assert_eq!(webhooks[&done].dedupe_id, "done");
    for id in [dead_one, recent] {
        assert_eq!(webhooks[&id].status, WebhookStatus::Translated);
        assert!(!webhooks[&id].body.is_empty());
    }
    let purged_only = WebhookFilter {
        status: Some(WebhookStatus::Purged),
        ..Default::default()
    };
    assert_eq!(store.list_webhooks(&purged_only).await.unwrap().len(), 3);

    for id in [delivered_id, dry_id] {
        let kept = get(&store, id).await;
        assert_eq!(kept.payload, "null", "{kept:?}");
        assert_eq!(kept.request, None);
        assert!(kept.summary.key.starts_with("s/"), "the key stays");
        assert!(
            store.list_attempts(id).await.unwrap().is_empty(),
            "its attempts go"
        );
    }
    assert_eq!(
        get(&store, delivered_id).await.summary.status,
        DeliveryStatus::Delivered
    );
    for id in [dead_id, recent_id] {
        assert_ne!(get(&store, id).await.payload, "null");
        assert_eq!(store.list_attempts(id).await.unwrap().len(), 1);
    }

    // The ids and keys still refuse what they refused.
    assert_eq!(
        store.accept(webhook("s", "done", vec![])).await.unwrap(),
        Accepted::Duplicate { webhook_id: done }
    );
    let repeated = store
        .accept(webhook_at("s", "again", T0 + DAY, vec![legion("1")]))
        .await
        .unwrap();
    assert!(
        matches!(repeated, Accepted::Stored { deliveries: 0, .. }),
        "{repeated:?}"
    );
    // Nothing is left to send again, nor to translate again.
    let dry_runs = DeliveryFilter {
        status: Some(DeliveryStatus::DryRun),
        ..Default::default()
    };
    let (requeued, _) = store.requeue_deliveries(&dry_runs, T0 + DAY).await.unwrap();
    assert_eq!(
        requeued,
        Requeued {
            purged: 1,
            ..Requeued::default()
        }
    );
    let readable: Vec<_> = store
        .webhooks_for(&DeliveryFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert!(
        readable.contains(&dead_one) && readable.contains(&recent),
        "{readable:?}"
    );
    assert!(
        !readable
            .iter()
            .any(|id| [done, dry, untranslated].contains(id)),
        "{readable:?}"
    );
    assert_eq!(
        store.purge_before(T0 + DAY).await.unwrap(),
        0,
        "done already"
    );
}

pub async fn replay_touches_only_what_its_filter_names(store: Arc<dyn Store>) {
    let w1 = accept(
        &store,
        webhook_at("s", "w1", T0, vec![legion("1"), http("1")]),
    )
    .await;
    let w2 = accept(
        &store,
        webhook_at("s", "w2", T0 + 1_000, vec![legion("2"), legion("3")]),
    )
    .await;
    let w3 = accept(
        &store,
        webhook_at("s", "w3", T0 + 2_000, vec![legion("4"), legion("5")]),
    )
    .await;
    let now = T0 + 3_000;
    let legion_ids = claim(&store, "legion", now).await;
    let [l1, l2, l3, l4, l5] = legion_ids[..] else {
        panic!("{legion_ids:?}");
    };
    let [h1] = claim(&store, "http", now).await[..] else {
        panic!("one post");
    };
    record(
        &store,
        &[l1, h1, l2, l4],
        attempt(now, Some(400), dead("400")),
    )
    .await;
    record(&store, &[l3], attempt(now, Some(200), delivered(None))).await;
    // l5 stays in flight: it is its worker's.
    use DeliveryStatus::*;
    let mut expected = BTreeMap::from([
        (l1, Dead),
        (h1, Dead),
        (l2, Dead),
        (l3, Delivered),
        (l4, Dead),
        (l5, InFlight),
    ]);
    let statuses = || {
        let store = store.clone();
        async move {
            let all = store
                .list_deliveries(&DeliveryFilter::default())
                .await
                .unwrap();
            all.into_iter()
                .map(|d| (d.id, d.status))
                .collect::<BTreeMap<_, _>>()
        }
    };
    assert_eq!(statuses().await, expected);
    let dead_ones = || DeliveryFilter {
        status: Some(Dead),
        ..Default::default()
    };
    // The counts, and the ids of the deliveries requeued.
    let requeued = |ids: &[DeliveryId]| {
        let mut ids = ids.to_vec();
        ids.sort();
        let counts = Requeued {
            requeued: ids.len() as u64,
            ..Requeued::default()
        };
        (counts, ids)
    };

    let mut at = now;
    let mut replay = async |filter: DeliveryFilter| {
        at += 100;
        let (counts, touched) = store.requeue_deliveries(&filter, at).await.unwrap();
        (counts, touched.ids)
    };
    // Each filter's field narrows the replay; every other delivery stays as it was.
    let by_limit = DeliveryFilter {
        limit: Some(1),
        ..dead_ones()
    };
    assert_eq!(replay(by_limit).await, requeued(&[l1]), "the oldest");
    expected.insert(l1, Pending);
    assert_eq!(statuses().await, expected);

    let by_destination = DeliveryFilter {
        destination: Some("http".into()),
        ..dead_ones()
    };
    assert_eq!(replay(by_destination).await, requeued(&[h1]));
    expected.insert(h1, Pending);
    assert_eq!(statuses().await, expected);

    let by_time = DeliveryFilter {
        since_ms: Some(T0 + 2_000),
        ..dead_ones()
    };
    assert_eq!(replay(by_time).await, requeued(&[l4]));
    expected.insert(l4, Pending);
    assert_eq!(statuses().await, expected);

    // By webhook alone: its dead delivery, not its delivered one.
    let by_webhook = DeliveryFilter {
        webhook_id: Some(w2),
        ..Default::default()
    };
    assert_eq!(replay(by_webhook).await, requeued(&[l2]));
    expected.insert(l2, Pending);
    assert_eq!(statuses().await, expected);
    // With no status named, the pending ones are re-queued too (l1 and h1, replayed above):
    // due at this replay, their schedule fresh.
    let by_webhook = DeliveryFilter {
        webhook_id: Some(w1),
        ..Default::default()
    };
    assert_eq!(replay(by_webhook).await, requeued(&[l1, h1]));
    assert_eq!(statuses().await, expected);

    // Nothing delivered is sent again, and nothing in flight is taken from its worker.
    for status in [Delivered, InFlight] {
        let filter = DeliveryFilter {
            status: Some(status),
            ..Default::default()
        };
        assert_eq!(replay(filter).await, requeued(&[]), "{status}");
    }
    let by_webhook = DeliveryFilter {
        webhook_id: Some(w3),
        status: Some(InFlight),
        ..Default::default()
    };
    assert_eq!(replay(by_webhook).await, requeued(&[]));
    assert_eq!(statuses().await, expected);

    // A requeued delivery is due at its last replay's time (the fifth), with a fresh schedule.
    for id in [l1, h1] {
        let replayed = get(&store, id).await;
        assert_eq!(
            (replayed.summary.next_attempt_at, replayed.summary.attempts),
            (now + 500, 0)
        );
        assert_eq!(replayed.summary.webhook_id, w1);
    }
}

pub async fn a_replay_keeps_the_attempt_log_and_counts_attempts_anew(store: Arc<dyn Store>) {
    accept(&store, webhook("s", "a", vec![legion("1")])).await;
    let id = id_of(&store, LEGION_MAPPING, "s/1").await;
    assert_eq!(claim(&store, "legion", T0 + 10).await, [id]);
    record(
        &store,
        &[id],
        attempt(T0 + 10, Some(400), dead("bad request")),
    )
    .await;
    let replayed = store
        .requeue_deliveries(
            &DeliveryFilter {
                status: Some(DeliveryStatus::Dead),
                ..DeliveryFilter::default()
            },
            T0 + 20,
        )
        .await
        .unwrap()
        .0;
    assert_eq!(replayed.requeued, 1);
    let requeued = get(&store, id).await.summary;
    assert_eq!(
        (requeued.status, requeued.attempts),
        (DeliveryStatus::Pending, 0)
    );
    assert_eq!(store.list_attempts(id).await.unwrap().len(), 1, "kept");

    assert_eq!(claim(&store, "legion", T0 + 30).await, [id]);
    record(&store, &[id], attempt(T0 + 30, Some(200), delivered(None))).await;
    let log = store.list_attempts(id).await.unwrap();
    let outcomes: Vec<_> = log
        .iter()
        .map(|a| (a.outcome, a.http_status, a.started_at))
        .collect();
    assert_eq!(
        outcomes,
        [
            (AttemptOutcome::Dead, Some(400), T0 + 10),
            (AttemptOutcome::Delivered, Some(200), T0 + 30)
        ],
        "the attempt before the replay, then the one after it"
    );
    assert_eq!(get(&store, id).await.summary.attempts, 1, "counted anew");
}

/// A periodic job is claimed once per period, whoever asks: of claims made at once one
/// wins; a claim within the period of the last run is refused, one a period later wins, and
/// each job has a period of its own.
pub async fn a_periodic_job_is_claimed_once_per_period(store: Arc<dyn Store>) {
    const HOUR: i64 = 3_600_000;
    let claims = (0..6).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_run(RETENTION, T0, HOUR).await.unwrap() })
    });
    let mut won = 0;
    for claim in claims {
        won += usize::from(claim.await.unwrap());
    }
    assert_eq!(won, 1, "one of the claims made at once wins");

    assert!(
        !store
            .claim_run(RETENTION, T0 + HOUR - 1, HOUR)
            .await
            .unwrap()
    );
    assert!(store.claim_run("another job", T0 + 1, HOUR).await.unwrap());
    assert!(store.claim_run(RETENTION, T0 + HOUR, HOUR).await.unwrap());
    assert!(
        !store
            .claim_run(RETENTION, T0 + HOUR + 1, HOUR)
            .await
            .unwrap()
    );
}
