//! The source store a copy starts from, made by the real service with deliveries in every
//! state, and what tests compare stores and sends by.

use std::collections::BTreeSet;

use serde_json::Value;
use storehook::store::{
    AttemptRecord, DeliveryRecord, NewDelivery, NewWebhook, Recorded, WebhookRecord, now_ms,
};

use crate::doubles::Double;
use crate::harness::*;

/// Everything a store holds, as its own reads give it back: every webhook, and every
/// delivery in full with its attempts.
#[derive(Debug, PartialEq)]
pub(super) struct Snapshot {
    pub(super) webhooks: Vec<WebhookRecord>,
    pub(super) deliveries: Vec<(DeliveryRecord, Vec<AttemptRecord>)>,
}

impl Snapshot {
    pub(super) async fn of(url: &str) -> Snapshot {
        let store = storehook::store::open(url).await.unwrap();
        let webhooks = store.list_webhooks(&Default::default()).await.unwrap();
        let mut deliveries = Vec::new();
        for summary in store.list_deliveries(&Default::default()).await.unwrap() {
            let record = store.get_delivery(summary.id).await.unwrap().unwrap();
            let attempts = store.list_attempts(summary.id).await.unwrap();
            deliveries.push((record, attempts));
        }
        Snapshot {
            webhooks,
            deliveries,
        }
    }

    pub(super) fn attempts(&self) -> usize {
        self.deliveries.iter().map(|(_, a)| a.len()).sum()
    }

    pub(super) fn delivery(&self, id: DeliveryId) -> &(DeliveryRecord, Vec<AttemptRecord>) {
        self.deliveries
            .iter()
            .find(|(d, _)| d.summary.id == id)
            .unwrap_or_else(|| panic!("delivery {id} is in the snapshot"))
    }

    pub(super) fn max_webhook_id(&self) -> i64 {
        self.webhooks.iter().map(|w| w.id.0).max().unwrap_or(0)
    }

    pub(super) fn max_delivery_id(&self) -> i64 {
        self.deliveries
            .iter()
            .map(|(d, _)| d.summary.id.0)
            .max()
            .unwrap_or(0)
    }
}

/// A recorded Haravan webhook with its order id set to `id` (and its topic to `topic`),
/// signed and posted; answered 200.
pub(super) async fn post_haravan(app: &TestApp, name: &str, id: u64, topic: Option<&str>) {
    let fixture = fixture("haravan", name);
    let mut order: Value = serde_json::from_slice(&fixture.body).unwrap();
    order["id"] = id.into();
    let body = serde_json::to_vec(&order).unwrap();
    let mut headers = signed_headers(&fixture, &body, secret_of("haravan"));
    if topic.is_some() {
        set_header(&mut headers, "X-Haravan-Topic", topic);
    }
    let response = app.post_raw("haravan", &headers, body).await;
    assert_eq!(response.status(), 200);
}

/// The Legion deliveries of the source, by what was done to them.
pub(super) struct Legion {
    /// In flight, its lease ended: sent again at once.
    pub(super) lease_ended: DeliveryId,
    /// In flight for another hour: not sent again meanwhile.
    pub(super) leased: DeliveryId,
    /// One attempt answered 503, retried a second later.
    pub(super) retried: DeliveryId,
    /// Never claimed.
    pub(super) pending: Vec<DeliveryId>,
}

impl Legion {
    /// What `serve` sends: everything not delivered, dead, cancelled or leased.
    pub(super) fn to_send(&self) -> Vec<DeliveryId> {
        let mut ids = vec![self.lease_ended, self.retried];
        ids.extend(&self.pending);
        ids
    }
}

/// Runs the service on `url` with the Legion and Scalef workers taken out (Salekit runs
/// dry), receives webhooks that become deliveries of every state, moves Legion's on as a
/// worker would (delivered, retried, dead, in flight with an ended and a running lease),
/// cancels one, purges the first webhook, and stops the service cleanly.
pub(super) async fn make_source(url: &str) -> Legion {
    let url = url.to_string();
    let (mut app, _taken) = spawn_app_stepping(
        move |env| {
            env.insert("STOREHOOK_STORE_URL".into(), url);
        },
        |_| {},
        &["legion", "scalef"],
    )
    .await;
    // Untranslated (no mapping takes the topic), and purged below.
    post_haravan(
        &app,
        "paid-two-items-discount",
        900,
        Some("customers/update"),
    )
    .await;
    let cutoff = now_ms() + 1;
    while now_ms() <= cutoff {
        tokio::task::yield_now().await;
    }
    post_haravan(
        &app,
        "paid-two-items-discount",
        901,
        Some("customers/update"),
    )
    .await;
    app.post_paid_haravan_orders(1000, 7).await;
    // Legion, Salekit and a Scalef create.
    post_haravan(&app, "local-phone-click-id", 2000, None).await;
    // A Scalef status update waiting for a create that never came.
    post_haravan(&app, "cancelled-refunded", 3000, None).await;
    // Legion skipped by its mapping (no mobile number), and Salekit.
    post_haravan(&app, "guest-email-only", 4000, None).await;

    let store = app.store.clone();
    let now = now_ms();
    let claimed = store
        .claim_due_deliveries("legion", 4, now, 3_600_000)
        .await
        .unwrap();
    let [delivered, retried, dead, leased] = [0, 1, 2, 3].map(|n| DeliveryId(claimed[n].id));
    let attempt = |recorded| storehook::store::Attempt {
        started_at_ms: now,
        duration_ms: 12,
        http_status: Some(200),
        recorded,
    };
    store
        .record_attempts(&[
            (
                vec![delivered.0],
                attempt(Recorded::Delivered {
                    response: r#"{"status":"success"}"#.into(),
                    conversion_id: None,
                }),
            ),
            (
                vec![retried.0],
                attempt(Recorded::Retry {
                    next_attempt_at_ms: now + 1_000,
                    reason: "HTTP 503".into(),
                }),
            ),
            (
                vec![dead.0],
                attempt(Recorded::Dead {
                    reason: "HTTP 400: bad event".into(),
                }),
            ),
        ])
        .await
        .unwrap();
    let lease_ended = store
        .claim_due_deliveries("legion", 1, now, 1)
        .await
        .unwrap();
    let lease_ended = DeliveryId(lease_ended[0].id);
    let pending_filter = DeliveryFilter {
        destination: Some("legion".into()),
        status: Some(DeliveryStatus::Pending),
        ..Default::default()
    };
    let mut pending: Vec<DeliveryId> = store
        .list_deliveries(&pending_filter)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .filter(|id| *id != retried)
        .collect();
    assert_eq!(pending.len(), 3, "{pending:?}");
    let cancel = DeliveryFilter {
        id: pending.pop(),
        ..Default::default()
    };
    assert_eq!(
        store
            .cancel_deliveries(&cancel, now)
            .await
            .unwrap()
            .0
            .cancelled,
        1
    );
    app.wait_for_deliveries(|rows| {
        let salekit: Vec<_> = rows
            .iter()
            .filter(|r| r.mapping.contains("salekit"))
            .collect();
        salekit.len() == 9 && salekit.iter().all(|r| r.status == "dry_run")
    })
    .await;
    assert_eq!(store.purge_before(cutoff).await.unwrap(), 1);
    app.stop().await;
    Legion {
        lease_ended,
        leased,
        retried,
        pending,
    }
}

/// The statuses a snapshot holds: every webhook's and every delivery's.
pub(super) fn statuses(snapshot: &Snapshot) -> (BTreeSet<String>, BTreeSet<String>) {
    let webhooks = snapshot
        .webhooks
        .iter()
        .map(|w| w.status.as_str().to_string())
        .collect();
    let deliveries = snapshot
        .deliveries
        .iter()
        .map(|(d, _)| d.summary.status.as_str().to_string())
        .collect();
    (webhooks, deliveries)
}

/// `serve` on `url`, Legion live at a double taking one event a request (so each request
/// carries its delivery's `Idempotency-Key`), until it has delivered `legion`'s deliveries
/// to send; the app, still running, and what Legion received: (Idempotency-Key, body), in
/// key order.
pub(super) async fn serve_until_sent(
    url: &str,
    legion: &Legion,
) -> (TestApp, Vec<(String, Value)>) {
    let (double, legion_url) = Double::start().await;
    let url = url.to_string();
    let app = spawn_app_configured(
        move |env| {
            env.insert("STOREHOOK_STORE_URL".into(), url);
            env.insert("LEGION_BASE_URL".into(), legion_url);
            env.insert("LEGION_API_KEY".into(), "legion-key".into());
        },
        |config| {
            config
                .destinations
                .get_mut("legion")
                .expect("legion is configured")
                .batch_size = 1;
        },
    )
    .await;
    let to_send = legion.to_send();
    app.wait_for_deliveries(|rows| {
        to_send
            .iter()
            .all(|id| rows.iter().any(|r| r.id == id.0 && r.status == "delivered"))
    })
    .await;
    let mut received: Vec<(String, Value)> = double
        .received()
        .into_iter()
        .map(|request| {
            let key = request.headers["idempotency-key"].to_str().unwrap();
            (key.to_string(), request.body)
        })
        .collect();
    received.sort_by(|a, b| a.0.cmp(&b.0));
    (app, received)
}

/// A store with one webhook, whose delivery has one attempt (a retry).
pub(super) async fn small_source(url: &str) {
    let store = storehook::store::open(url).await.unwrap();
    store.accept(new_webhook("source-1")).await.unwrap();
    let claimed = store
        .claim_due_deliveries("legion", 1, 10, 60_000)
        .await
        .unwrap();
    let attempt = storehook::store::Attempt {
        started_at_ms: 10,
        duration_ms: 5,
        http_status: Some(503),
        recorded: Recorded::Retry {
            next_attempt_at_ms: 20,
            reason: "HTTP 503".into(),
        },
    };
    store
        .record_attempts(&[(vec![claimed[0].id], attempt)])
        .await
        .unwrap();
}

pub(super) fn new_webhook(dedupe_id: &str) -> NewWebhook {
    NewWebhook {
        source: "haravan".into(),
        platform: "haravan".into(),
        topic: "orders/paid".into(),
        dedupe_id: dedupe_id.into(),
        headers: Default::default(),
        body: br#"{"id":1}"#.to_vec(),
        received_at_ms: 1,
        deliveries: vec![NewDelivery {
            mapping: "haravan/legion-purchase".into(),
            key: dedupe_id.into(),
            destination: "legion".into(),
            operation: "legion.purchase_event".into(),
            payload: r#"{"id":"event"}"#.into(),
            needs: None,
            skipped: None,
        }],
        translation_error: None,
    }
}
