//! Announcements ([`Store::subscribe`]), by which the instances that share a store wake each
//! other's workers and pass on an operator's mappings reload. A store may make none (`None`:
//! SQLite, served by one process whose receive path wakes its own workers); one that makes
//! them announces each destination whose deliveries a write made due, once that write is
//! committed, and every reload but its own.

use std::sync::Arc;
use std::time::Duration;

use storehook::store::{Announcement, DeliveryFilter, DeliveryStatus, Store};
use tokio::sync::mpsc::Receiver;

use super::*;

/// Generous: an announcement crosses a database connection.
const DEADLINE: Duration = Duration::from_secs(10);

/// Waits for every announcement `wanted`, in any order, passing over any other.
async fn announced(due: &mut Receiver<Announcement>, wanted: &[Announcement]) {
    let mut missing = wanted.to_vec();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(got) = due.recv().await {
            missing.retain(|w| *w != got);
            if missing.is_empty() {
                return;
            }
        }
    })
    .await;
    assert!(
        found.is_ok() && missing.is_empty(),
        "{missing:?} not announced within {DEADLINE:?}"
    );
}

fn destination(name: &str) -> Announcement {
    Announcement::Due(name.to_string())
}

const LISTENING: Announcement = Announcement::Listening { again: false };

pub async fn a_store_that_announces_due_deliveries_announces_each_destination_made_due(
    store: Arc<dyn Store>,
) {
    let Some(mut due) = store.subscribe() else {
        return;
    };
    // Listening: whatever was announced before may have been missed.
    announced(&mut due, &[LISTENING]).await;

    accept(&store, webhook("s", "paid", vec![legion("1"), http("1")])).await;
    announced(&mut due, &[destination("legion"), destination("http")]).await;

    // Made due again: by a replay, and by a lease given back.
    let [legion_id] = claim(&store, "legion", T0).await[..] else {
        panic!("one legion delivery");
    };
    record(&store, &[legion_id], attempt(T0, Some(400), dead("400"))).await;
    let dead = DeliveryFilter {
        status: Some(DeliveryStatus::Dead),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        store
            .requeue_deliveries(&dead, T0 + 1)
            .await
            .unwrap()
            .0
            .requeued,
        1
    );
    announced(&mut due, &[destination("legion")]).await;
    let [http_id] = claim(&store, "http", T0 + 2).await[..] else {
        panic!("one http delivery");
    };
    assert_eq!(store.release_leases(&[http_id.0], T0 + 3).await.unwrap(), 1);
    announced(&mut due, &[destination("http")]).await;
}

pub async fn a_store_that_announces_a_reload_does_not_announce_it_to_itself(store: Arc<dyn Store>) {
    let Some(mut heard) = store.subscribe() else {
        assert!(
            !store
                .announce_reload("admin API", "127.0.0.1")
                .await
                .unwrap(),
            "a store that makes no announcements announces no reload"
        );
        return;
    };
    announced(&mut heard, &[LISTENING]).await;
    assert!(
        store
            .announce_reload("admin API", "127.0.0.1")
            .await
            .unwrap()
    );
    // Announced after the reload: heard after it, had it been heard.
    accept(&store, webhook("s", "paid", vec![legion("1")])).await;
    let before = tokio::time::timeout(DEADLINE, async {
        let mut before = Vec::new();
        while let Some(got) = heard.recv().await {
            if got == destination("legion") {
                return before;
            }
            before.push(got);
        }
        before
    })
    .await
    .expect("the due delivery is announced");
    assert!(
        !before
            .iter()
            .any(|got| matches!(got, Announcement::Reload(_))),
        "its own reload was announced to the store: {before:?}"
    );
}
