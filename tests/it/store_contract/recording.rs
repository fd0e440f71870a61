//! A [`Store`] that passes every call on to a real one and notes which method was called,
//! so that `every_store_method_is_exercised` can check that the rules, together, call each
//! method of the trait. It overrides every method, those with a default body included, so
//! that a backend's own version of each is what the rules run.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use storehook::store::{
    Accepted, Announcement, Attempt, AttemptRecord, Cancelled, ClaimedDelivery, DeliveryFilter,
    DeliveryId, DeliveryRecord, DeliveryStats, DeliveryStatus, DeliverySummary, Heartbeat,
    NewDelivery, NewWebhook, Requeued, Store, StoreError, StoredWebhook, Touched, WebhookFilter,
    WebhookId, WebhookRecord,
};

/// Every method of [`Store`]. [`Recording`] must override each one: a method added to the
/// trait without a default body does not compile here until it is, and this list must then
/// name it for the check to pass.
const EVERY_METHOD: [&str; 26] = [
    "accept",
    "check_ready",
    "claim_due_deliveries",
    "record_attempts",
    "record_attempts_and_claim",
    "release_waiting_deliveries",
    "list_deliveries",
    "requeue_deliveries",
    "cancel_deliveries",
    "delivery_stats",
    "webhooks_for",
    "list_webhooks",
    "get_webhook",
    "delivery_by_key",
    "get_delivery",
    "list_attempts",
    "replace_deliveries",
    "purge_before",
    "claim_run",
    "release_leases",
    "next_due_at",
    "subscribe",
    "announce_reload",
    "record_heartbeat",
    "remove_heartbeat",
    "list_heartbeats",
];

/// The names of the methods called so far, shared by every [`Recording`] of one test.
#[derive(Default, Clone)]
pub struct Called(Arc<Mutex<BTreeSet<&'static str>>>);

impl Called {
    fn note(&self, method: &'static str) {
        self.0.lock().unwrap().insert(method);
    }

    pub fn assert_every_method(&self) {
        let called = self.0.lock().unwrap();
        let every: BTreeSet<&str> = EVERY_METHOD.into_iter().collect();
        let never: Vec<&&str> = every.difference(&called).collect();
        let unknown: Vec<&&str> = called.difference(&every).collect();
        assert!(
            never.is_empty() && unknown.is_empty(),
            "no rule calls {never:?}; not in EVERY_METHOD: {unknown:?}"
        );
    }
}

pub struct Recording {
    store: Arc<dyn Store>,
    called: Called,
}

impl Recording {
    pub fn wrap(store: Arc<dyn Store>, called: &Called) -> Arc<dyn Store> {
        Arc::new(Recording {
            store,
            called: called.clone(),
        })
    }
}

#[async_trait]
impl Store for Recording {
    async fn accept(&self, webhook: NewWebhook) -> Result<Accepted, StoreError> {
        self.called.note("accept");
        self.store.accept(webhook).await
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        self.called.note("check_ready");
        self.store.check_ready().await
    }

    async fn claim_due_deliveries(
        &self,
        destination: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.called.note("claim_due_deliveries");
        self.store
            .claim_due_deliveries(destination, limit, now_ms, lease_ms)
            .await
    }

    async fn record_attempts(&self, attempts: &[(Vec<i64>, Attempt)]) -> Result<(), StoreError> {
        self.called.note("record_attempts");
        self.store.record_attempts(attempts).await
    }

    async fn record_attempts_and_claim(
        &self,
        attempts: &[(Vec<i64>, Attempt)],
        destination: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.called.note("record_attempts_and_claim");
        self.store
            .record_attempts_and_claim(attempts, destination, limit, now_ms, lease_ms)
            .await
    }

    async fn release_waiting_deliveries(
        &self,
        destination: &str,
        now_ms: i64,
        waiting_timeout_ms: i64,
    ) -> Result<(), StoreError> {
        self.called.note("release_waiting_deliveries");
        self.store
            .release_waiting_deliveries(destination, now_ms, waiting_timeout_ms)
            .await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<DeliverySummary>, StoreError> {
        self.called.note("list_deliveries");
        self.store.list_deliveries(filter).await
    }

    async fn requeue_deliveries(
        &self,
        filter: &DeliveryFilter,
        now_ms: i64,
    ) -> Result<(Requeued, Touched), StoreError> {
        self.called.note("requeue_deliveries");
        self.store.requeue_deliveries(filter, now_ms).await
    }

    async fn cancel_deliveries(
        &self,
        filter: &DeliveryFilter,
        now_ms: i64,
    ) -> Result<(Cancelled, Touched), StoreError> {
        self.called.note("cancel_deliveries");
        self.store.cancel_deliveries(filter, now_ms).await
    }

    async fn delivery_stats(&self, since_ms: i64) -> Result<DeliveryStats, StoreError> {
        self.called.note("delivery_stats");
        self.store.delivery_stats(since_ms).await
    }

    async fn webhooks_for(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<StoredWebhook>, StoreError> {
        self.called.note("webhooks_for");
        self.store.webhooks_for(filter).await
    }

    async fn list_webhooks(
        &self,
        filter: &WebhookFilter,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        self.called.note("list_webhooks");
        self.store.list_webhooks(filter).await
    }

    async fn get_webhook(&self, id: WebhookId) -> Result<Option<WebhookRecord>, StoreError> {
        self.called.note("get_webhook");
        self.store.get_webhook(id).await
    }

    async fn delivery_by_key(
        &self,
        mapping: &str,
        key: &str,
    ) -> Result<Option<DeliverySummary>, StoreError> {
        self.called.note("delivery_by_key");
        self.store.delivery_by_key(mapping, key).await
    }

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.called.note("get_delivery");
        self.store.get_delivery(id).await
    }

    async fn list_attempts(&self, id: DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.called.note("list_attempts");
        self.store.list_attempts(id).await
    }

    async fn replace_deliveries(
        &self,
        webhook_id: WebhookId,
        deliveries: &[NewDelivery],
        translation_error: Option<&str>,
        only_status: Option<DeliveryStatus>,
        now_ms: i64,
    ) -> Result<(u64, u64), StoreError> {
        self.called.note("replace_deliveries");
        self.store
            .replace_deliveries(
                webhook_id,
                deliveries,
                translation_error,
                only_status,
                now_ms,
            )
            .await
    }

    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.called.note("purge_before");
        self.store.purge_before(cutoff_ms).await
    }

    async fn claim_run(&self, job: &str, now_ms: i64, every_ms: i64) -> Result<bool, StoreError> {
        self.called.note("claim_run");
        self.store.claim_run(job, now_ms, every_ms).await
    }

    async fn release_leases(&self, deliveries: &[i64], now_ms: i64) -> Result<u64, StoreError> {
        self.called.note("release_leases");
        self.store.release_leases(deliveries, now_ms).await
    }

    async fn next_due_at(&self, destination: &str) -> Result<Option<i64>, StoreError> {
        self.called.note("next_due_at");
        self.store.next_due_at(destination).await
    }

    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Announcement>> {
        self.called.note("subscribe");
        self.store.subscribe()
    }

    async fn announce_reload(&self, via: &str, client: &str) -> Result<bool, StoreError> {
        self.called.note("announce_reload");
        self.store.announce_reload(via, client).await
    }

    async fn record_heartbeat(
        &self,
        heartbeat: &Heartbeat,
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        self.called.note("record_heartbeat");
        self.store
            .record_heartbeat(heartbeat, forget_before_ms)
            .await
    }

    async fn remove_heartbeat(&self, instance: &str) -> Result<(), StoreError> {
        self.called.note("remove_heartbeat");
        self.store.remove_heartbeat(instance).await
    }

    async fn list_heartbeats(&self) -> Result<Vec<Heartbeat>, StoreError> {
        self.called.note("list_heartbeats");
        self.store.list_heartbeats().await
    }
}
