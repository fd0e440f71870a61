//! Metrics: what the service counts, named once here (`http::metrics` serves them at
//! `/metrics`, refreshing the gauges from the store when scraped).
//! The other rooms call the functions below; with no recorder installed (the CLI, in-process
//! tests) they cost next to nothing and record nothing.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `storehook_webhooks_received_total` | counter | `source`, `topic`, `outcome` (`stored`, `untranslated`, `duplicate`, `ping`, or the refusal's code) |
//! | `storehook_webhook_ack_seconds` | histogram | `source`: from the request's arrival to its answer |
//! | `storehook_translations_total` | counter | `mapping`, `outcome` (`plan`, `skip`, `error`): webhooks received or re-translated, not tries |
//! | `storehook_attempts_total` | counter | `destination`, `outcome` (`delivered`, `retry`, `dead`, `split`, `dry_run`): requests |
//! | `storehook_deliveries_total` | counter | `destination`, `status` (`delivered`, `dead`, `dry_run`): deliveries that reached it |
//! | `storehook_delivery_seconds` | histogram | `destination`: from the webhook's acknowledgement to its delivery |
//! | `storehook_circuit_open` | gauge | `destination`: 1 while its circuit breaker stops sending |
//! | `storehook_queue_depth` | gauge | `destination`: deliveries `pending`, `waiting` or `in_flight` |
//! | `storehook_oldest_pending_seconds` | gauge | `destination`: age of its oldest `pending` delivery (0: none) |

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of the latency histograms, in seconds: an acknowledgement takes milliseconds, a
/// delivery after retries may take hours.
const ACK_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
const DELIVERY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0,
];

/// Installs the process's recorder (once; later calls return the same handle).
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("storehook_webhook_ack_seconds".into()),
                &ACK_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("storehook_delivery_seconds".into()),
                    &DELIVERY_BUCKETS,
                )
            })
            .expect("fixed, non-empty buckets")
            .install_recorder()
            .expect("the metrics recorder is installed once per process")
    })
}

/// A webhook answered: how, and how long it took.
pub fn webhook_answered(source: &str, topic: &str, outcome: &'static str, seconds: f64) {
    counter!(
        "storehook_webhooks_received_total",
        "source" => source.to_string(),
        "topic" => topic.to_string(),
        "outcome" => outcome,
    )
    .increment(1);
    histogram!("storehook_webhook_ack_seconds", "source" => source.to_string()).record(seconds);
}

/// One mapping's outcome for one webhook.
pub fn translated(mapping: &str, outcome: &'static str) {
    counter!(
        "storehook_translations_total",
        "mapping" => mapping.to_string(),
        "outcome" => outcome,
    )
    .increment(1);
}

/// One request to a destination (or, dry, one made) and its `outcome` (`delivered`,
/// `dry_run`, `retry`, `dead`, `split`), for deliveries made `made_ms_ago` (one a delivery).
pub fn attempted(destination: &str, outcome: &'static str, made_ms_ago: &[i64]) {
    // the outcomes that are a delivery's final status
    let status = matches!(outcome, "delivered" | "dry_run" | "dead").then_some(outcome);
    counter!(
        "storehook_attempts_total",
        "destination" => destination.to_string(),
        "outcome" => outcome,
    )
    .increment(1);
    if let Some(status) = status {
        counter!(
            "storehook_deliveries_total",
            "destination" => destination.to_string(),
            "status" => status,
        )
        .increment(made_ms_ago.len() as u64);
    }
    if outcome == "delivered" {
        let delivered =
            histogram!("storehook_delivery_seconds", "destination" => destination.to_string());
        for ms in made_ms_ago {
            delivered.record(*ms as f64 / 1000.0);
        }
    }
}

/// Whether a destination's circuit breaker stops sending.
pub fn circuit(destination: &str, open: bool) {
    gauge!("storehook_circuit_open", "destination" => destination.to_string()).set(if open {
        1.0
    } else {
        0.0
    });
}

/// A destination's queue: deliveries not yet sent, and how long its oldest pending one has
/// waited.
pub fn queue(destination: &str, depth: u64, oldest_pending_seconds: f64) {
    gauge!("storehook_queue_depth", "destination" => destination.to_string()).set(depth as f64);
    gauge!("storehook_oldest_pending_seconds", "destination" => destination.to_string())
        .set(oldest_pending_seconds);
}
