//! Heartbeats: each running `serve` instance's row, refreshed by its beats, removed when it
//! stops cleanly, and forgotten once stale (see `storehook::store::heartbeat`).

use std::sync::Arc;

use storehook::store::{Heartbeat, Store};

use super::T0;

fn heartbeat(instance: &str, pid: i64, at: i64) -> Heartbeat {
    Heartbeat {
        instance: instance.to_string(),
        host: format!("host-of-{instance}"),
        pid,
        started_at: at,
        seen_at: at,
    }
}

pub async fn a_heartbeat_is_listed_until_removed_and_stale_ones_are_forgotten(
    store: Arc<dyn Store>,
) {
    assert_eq!(store.list_heartbeats().await.unwrap(), []);
    let first = heartbeat("a/1/0001", 1, T0);
    let second = heartbeat("b/2/0002", 2, T0 + 1_000);
    store.record_heartbeat(&first, 0).await.unwrap();
    store.record_heartbeat(&second, 0).await.unwrap();
    assert_eq!(
        store.list_heartbeats().await.unwrap(),
        [second.clone(), first.clone()],
        "the most recently seen first"
    );

    // A beat refreshes when the instance was seen, and nothing else.
    let beat = Heartbeat {
        seen_at: T0 + 5_000,
        started_at: T0 + 4_000,
        host: "elsewhere".into(),
        ..first.clone()
    };
    store.record_heartbeat(&beat, 0).await.unwrap();
    let refreshed = Heartbeat {
        seen_at: T0 + 5_000,
        ..first.clone()
    };
    assert_eq!(
        store.list_heartbeats().await.unwrap(),
        [refreshed.clone(), second.clone()]
    );

    // The second's next beat forgets those last seen before the time it names.
    let next = Heartbeat {
        seen_at: T0 + 10_000,
        ..second.clone()
    };
    store.record_heartbeat(&next, T0 + 6_000).await.unwrap();
    assert_eq!(store.list_heartbeats().await.unwrap(), [next]);

    // A clean stop removes the instance's own; removing one that is gone is no error.
    store.remove_heartbeat(&second.instance).await.unwrap();
    store.remove_heartbeat(&first.instance).await.unwrap();
    assert_eq!(store.list_heartbeats().await.unwrap(), []);
}
