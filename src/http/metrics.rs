//! `GET /metrics`: the metrics of [`crate::observe`] in Prometheus's text format. The counters
//! are counted where things happen; the gauges (each destination's queue and circuit) are
//! read from the store and the workers when scraped, so they are never stale.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::delivery::{Circuit, CircuitState};
use crate::store::{DeliveryStatus, Store};

#[derive(Clone)]
pub struct MetricsState {
    pub handle: &'static PrometheusHandle,
    pub store: Arc<dyn Store>,
    /// The circuit of each destination a worker of this process sends to.
    pub circuits: Arc<BTreeMap<String, Circuit>>,
}

pub fn router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(state)
}

async fn render(State(state): State<MetricsState>) -> Response {
    match crate::ops::stats(state.store.as_ref(), &state.circuits).await {
        Ok(stats) => {
            for destination in &stats.destinations {
                let depth = [
                    DeliveryStatus::Pending,
                    DeliveryStatus::Waiting,
                    DeliveryStatus::InFlight,
                ]
                .iter()
                .map(|status| {
                    destination
                        .counts
                        .get(status.as_str())
                        .copied()
                        .unwrap_or(0)
                })
                .sum();
                let oldest = destination.oldest_pending_age_ms.unwrap_or(0) as f64 / 1000.0;
                crate::observe::queue(&destination.destination, depth, oldest);
                if let Some(circuit) = &destination.circuit {
                    let open = matches!(circuit, CircuitState::Open { .. });
                    crate::observe::circuit(&destination.destination, open);
                }
            }
        }
        // The counters are still worth having: the gauges keep their last values.
        Err(error) => tracing::warn!(%error, "metrics: cannot read the queues from the store"),
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.handle.render(),
    )
        .into_response()
}
