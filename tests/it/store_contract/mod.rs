//! The store contract suite: the rules every [`Store`] backend keeps, written once as plain
//! `async fn rule(store: Arc<dyn Store>)` over the trait alone (no SQL, no backend's own
//! calls, every time given as an explicit `now_ms` where the method takes one), and run as
//! one `#[tokio::test]` per rule for every backend named by a `contract_tests!` line below.
//!
//! Adding a backend is one line, `contract_tests!(name, open_name);`, and its `open_name`:
//! an `async fn(test name)` returning a fresh, empty store and a guard that keeps it alive
//! (and cleans it up when dropped), or `None` when the backend cannot run here (PostgreSQL
//! without `DATABASE_URL`: see [`crate::postgres`]), which skips the test.
//!
//! The rules live by subject: [`receive`] (accepting webhooks, keys, listings),
//! [`retranslate`], [`rounds`] (claims, leases, attempts), [`waiting`] (deliveries that need
//! another one first: Scalef status updates), [`skips`] (skipped deliveries by kind),
//! [`upkeep`] (replay and retention), [`cancel`] (an operator's cancel, and the filters and
//! counts of listings and the overview), [`wakeups`] (announcements of due deliveries and
//! of mappings reloads), [`heartbeats`] (the running instances' heartbeats).

mod cancel;
mod heartbeats;
mod receive;
mod recording;
mod retranslate;
mod rounds;
mod skips;
mod upkeep;
mod waiting;
mod wakeups;

use std::sync::Arc;

use storehook::store::{
    Attempt, DeliveryFilter, DeliveryId, DeliveryRecord, DeliveryStatus, NewDelivery, NewWebhook,
    Operation, Recorded, Store, WebhookId,
};

/// Calls `$then!($args; room::rule, …)` with every rule of the suite: the one list that both
/// each backend's tests and its `every_store_method_is_exercised` are made from.
macro_rules! with_every_rule {
    ($then:ident!($($args:tt)*)) => {
        $then!($($args)*;
            receive::a_repeated_webhook_is_refused_by_source_and_dedupe_id,
            receive::one_delivery_per_mapping_and_key,
            receive::an_opened_store_is_ready_and_holds_nothing,
            receive::listings_read_back_what_was_accepted_newest_first_by_filter,
            receive::a_webhook_reads_back_by_its_id_as_listed_and_an_unknown_id_is_none,
            retranslate::a_retranslation_gives_new_payloads_only_to_deliveries_not_delivered,
            rounds::a_claim_leases_a_delivery_to_one_worker_and_an_expired_lease_is_claimed_again,
            rounds::retry_scheduling_and_dead,
            rounds::dry_run_keeps_the_request,
            rounds::the_attempt_log_of_a_delivery,
            rounds::a_full_round_is_recorded_and_the_next_claimed_in_one_call,
            rounds::released_leases_are_due_again_with_the_attempt_uncounted,
            waiting::a_scalef_status_update_waits_for_its_conversion_copies_its_id_and_goes_out_one_at_a_time_in_order,
            waiting::waiting_that_times_out_becomes_skipped,
            waiting::a_replayed_conversion_re_queues_its_skipped_status_updates,
            waiting::a_replayed_status_update_older_than_one_already_delivered_is_superseded,
            waiting::the_delivery_a_waiting_one_needs_is_found_by_its_mapping_and_key,
            skips::a_mapping_skip_is_stored_with_its_reason_and_never_sent_nor_replayed,
            skips::a_later_plan_of_the_same_key_replaces_a_mapping_skip_and_a_skip_never_replaces_a_plan,
            skips::a_replayed_conversion_re_arms_only_updates_skipped_for_an_unmet_need,
            upkeep::retention_purges_bodies_and_payloads_but_keeps_ids_and_keys,
            upkeep::replay_touches_only_what_its_filter_names,
            upkeep::a_replay_keeps_the_attempt_log_and_counts_attempts_anew,
            upkeep::a_periodic_job_is_claimed_once_per_period,
            cancel::a_cancel_touches_only_pending_waiting_and_dead_and_only_a_replay_naming_one_requeues_it,
            cancel::cancelling_a_conversion_skips_the_updates_waiting_for_it_and_a_replay_naming_it_re_arms_them,
            cancel::a_cancelled_update_no_longer_holds_back_the_newer_ones,
            cancel::listings_filter_by_mapping_time_range_order_and_page_by_cursor,
            cancel::the_overview_counts_by_destination_and_status_the_oldest_pending_and_attempts_per_minute,
            wakeups::a_store_that_announces_due_deliveries_announces_each_destination_made_due,
            wakeups::a_store_that_announces_a_reload_does_not_announce_it_to_itself,
            heartbeats::a_heartbeat_is_listed_until_removed_and_stale_ones_are_forgotten,
        );
    };
}

/// The tests of one backend: a module named after it, with one test per rule, each on a
/// store of its own from `$open`, and `every_store_method_is_exercised`, which runs every
/// rule again through [`recording::Recording`] and checks that together they call each
/// method of the trait.
macro_rules! backend_tests {
    ($backend:ident, $open:path; $($room:ident::$rule:ident),+ $(,)?) => {
        mod $backend {
            use super::*;

            $(
                #[tokio::test]
                async fn $rule() {
                    let Some((store, _guard)) = $open(stringify!($rule)).await else {
                        return;
                    };
                    $room::$rule(store).await;
                }
            )+

            #[tokio::test]
            async fn every_store_method_is_exercised() {
                let called = recording::Called::default();
                $(
                    let Some((store, _guard)) = $open("every_store_method_is_exercised").await
                    else {
                        return;
                    };
                    $room::$rule(recording::Recording::wrap(store, &called)).await;
                )+
                called.assert_every_method();
            }
        }
    };
}

/// The contract suite for one backend: `contract_tests!(name, open)`.
macro_rules! contract_tests {
    ($backend:ident, $open:path) => {
        with_every_rule!(backend_tests!($backend, $open));
    };
}

/// A new SQLite store in a file of a temporary directory of its own.
async fn open_sqlite(_test: &str) -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = storehook::store::open(&url).await.unwrap();
    Some((store, dir))
}

/// A new PostgreSQL store in a schema of its own, dropped afterwards; `None` without
/// `DATABASE_URL` (outside CI).
async fn open_postgres(test: &str) -> Option<(Arc<dyn Store>, crate::postgres::PgSchema)> {
    let schema = crate::postgres::fresh_schema(test).await?;
    let store = storehook::store::open(&schema.store_url()).await.unwrap();
    Some((store, schema))
}

contract_tests!(sqlite, open_sqlite);
contract_tests!(postgres, open_postgres);

/// When the suite's first webhooks arrive (Unix time in milliseconds). Times in the suite
/// are offsets from it.
pub const T0: i64 = 1_700_000_000_000;
/// The lease a claim asks for.
pub const LEASE: i64 = 60_000;
/// How long a delivery may wait for the one it needs.
pub const WAITING_TIMEOUT: i64 = 3_600_000;

pub const LEGION_MAPPING: &str = "legion-purchase";
pub const CONVERSION_MAPPING: &str = "scalef-conversion";
pub const STATUS_MAPPING: &str = "scalef-status";
pub const HTTP_MAPPING: &str = "http-order";

/// A verified webhook from `source` with these deliveries, received at [`T0`].
pub fn webhook(source: &str, dedupe_id: &str, deliveries: Vec<NewDelivery>) -> NewWebhook {
    NewWebhook {
        source: source.to_string(),
        platform: "haravan".to_string(),
        topic: "orders/paid".to_string(),
        dedupe_id: dedupe_id.to_string(),
        headers: [("x-haravan-topic".to_string(), "orders/paid".to_string())].into(),
        body: format!(r#"{{"event":"{dedupe_id}"}}"#).into_bytes(),
        received_at_ms: T0,
        deliveries,
        translation_error: None,
    }
}

/// [`webhook`], received at `received_at_ms`.
pub fn webhook_at(
    source: &str,
    dedupe_id: &str,
    received_at_ms: i64,
    deliveries: Vec<NewDelivery>,
) -> NewWebhook {
    NewWebhook {
        received_at_ms,
        ..webhook(source, dedupe_id, deliveries)
    }
}

fn delivery(mapping: &str, key: &str, destination: &str, operation: Operation) -> NewDelivery {
    NewDelivery {
        mapping: mapping.to_string(),
        key: key.to_string(),
        destination: destination.to_string(),
        operation: operation.as_str().to_string(),
        payload: format!(r#"{{"order":"{key}"}}"#),
        needs: None,
        skipped: None,
    }
}

/// A Legion purchase event of order `key`.
pub fn legion(key: &str) -> NewDelivery {
    delivery(
        LEGION_MAPPING,
        key,
        "legion",
        Operation::LegionPurchaseEvent,
    )
}

/// A generic HTTP post of order `key`.
pub fn http(key: &str) -> NewDelivery {
    delivery(HTTP_MAPPING, key, "http", Operation::HttpPost)
}

/// A Scalef conversion's create, for order `key`.
pub fn conversion(key: &str) -> NewDelivery {
    delivery(
        CONVERSION_MAPPING,
        key,
        "scalef",
        Operation::ScalefCreateConversion,
    )
}

/// A Scalef status update (key `key`) of the conversion of order `conversion_key`.
pub fn status_update(key: &str, conversion_key: &str) -> NewDelivery {
    NewDelivery {
        needs: Some((CONVERSION_MAPPING.to_string(), conversion_key.to_string())),
        ..delivery(
            STATUS_MAPPING,
            key,
            "scalef",
            Operation::ScalefUpdateConversionStatus,
        )
    }
}

/// An attempt started at `at`, answered 10 ms later with `http_status`.
pub fn attempt(at: i64, http_status: Option<u16>, recorded: Recorded) -> Attempt {
    Attempt {
        started_at_ms: at,
        duration_ms: 10,
        http_status,
        recorded,
    }
}

pub fn delivered(conversion_id: Option<&str>) -> Recorded {
    Recorded::Delivered {
        response: r#"{"status":"success"}"#.to_string(),
        conversion_id: conversion_id.map(str::to_string),
    }
}

pub fn retry(next_attempt_at_ms: i64, reason: &str) -> Recorded {
    Recorded::Retry {
        next_attempt_at_ms,
        reason: reason.to_string(),
    }
}

pub fn dead(reason: &str) -> Recorded {
    Recorded::Dead {
        reason: reason.to_string(),
    }
}

/// The webhook id of what [`Store::accept`] stored (a duplicate fails the test).
pub async fn accept(store: &Arc<dyn Store>, webhook: NewWebhook) -> WebhookId {
    match store.accept(webhook).await.unwrap() {
        storehook::store::Accepted::Stored { webhook_id, .. } => webhook_id,
        duplicate => panic!("stored before: {duplicate:?}"),
    }
}

/// Moves the waiting Scalef deliveries on at `now_ms`.
pub async fn release(store: &Arc<dyn Store>, now_ms: i64) {
    store
        .release_waiting_deliveries("scalef", now_ms, WAITING_TIMEOUT)
        .await
        .unwrap();
}

/// The conversion `create` is claimed at `T0 + 10` and refused for good (dead), and the
/// waiting deliveries moved on at `T0 + 20`: the status updates that need it are skipped.
pub async fn conversion_goes_dead(store: &Arc<dyn Store>, create: DeliveryId) {
    assert_eq!(claim(store, "scalef", T0 + 10).await, [create]);
    record(
        store,
        &[create],
        attempt(T0 + 10, Some(200), dead("status: failed")),
    )
    .await;
    release(store, T0 + 20).await;
}

/// The ids a claim of `destination` at `now_ms` leases (up to 100).
pub async fn claim(store: &Arc<dyn Store>, destination: &str, now_ms: i64) -> Vec<DeliveryId> {
    store
        .claim_due_deliveries(destination, 100, now_ms, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|claimed| DeliveryId(claimed.id))
        .collect()
}

/// Records one attempt of each of `deliveries` alone.
pub async fn record(store: &Arc<dyn Store>, deliveries: &[DeliveryId], attempt: Attempt) {
    let attempts: Vec<(Vec<i64>, Attempt)> = deliveries
        .iter()
        .map(|id| (vec![id.0], attempt.clone()))
        .collect();
    store.record_attempts(&attempts).await.unwrap();
}

/// A delivery that exists, in full.
pub async fn get(store: &Arc<dyn Store>, id: DeliveryId) -> DeliveryRecord {
    store
        .get_delivery(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("delivery {id} exists"))
}

pub async fn status_of(store: &Arc<dyn Store>, id: DeliveryId) -> DeliveryStatus {
    get(store, id).await.summary.status
}

/// The id of the delivery of `mapping` with the stored key `source/key`.
pub async fn id_of(store: &Arc<dyn Store>, mapping: &str, stored_key: &str) -> DeliveryId {
    let all = store
        .list_deliveries(&DeliveryFilter::default())
        .await
        .unwrap();
    all.iter()
        .find(|d| d.mapping == mapping && d.key == stored_key)
        .unwrap_or_else(|| panic!("a delivery of {mapping} {stored_key} in {all:?}"))
        .id
}
