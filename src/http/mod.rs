//! The router: webhooks in, health out. Handlers live one concern per file; `serve.rs` is
//! the accept loop (request deadline, idle keep-alive, graceful shutdown), `limit.rs` the
//! cap on webhooks handled at once.

pub mod admin;
mod health;
mod limit;
pub mod metrics;
mod serve;
mod webhooks;

pub use limit::ConcurrencyLimit;
pub use serve::{RequestTimedOut, serve};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::Method;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;
use tower_http::trace::TraceLayer;

use crate::config::SourceConfig;
use crate::error::ApiError;
use crate::mapping::Catalog;
use crate::store::Store;

/// What every handler shares. Cloned per request; everything inside is immutable or `Arc`.
#[derive(Clone)]
pub struct AppState {
    pub sources: Arc<BTreeMap<String, SourceConfig>>,
    pub store: Arc<dyn Store>,
    /// The live mappings: a reload swaps them, a request in progress keeps the ones it took.
    pub catalog: Arc<arc_swap::ArcSwap<Catalog>>,
    /// One per destination: notified when deliveries for it were stored.
    pub wake: Arc<HashMap<String, Arc<Notify>>>,
    pub max_body_bytes: usize,
    /// The slots of the webhook route (`server.max_concurrent_requests`).
    pub concurrency: ConcurrencyLimit,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/webhooks/{source}",
            post(webhooks::receive)
                .get(webhooks::handshake)
                .fallback(method_not_allowed)
                .route_layer(middleware::from_fn_with_state(
                    state.concurrency.clone(),
                    limit::limit_concurrency,
                )),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .with_state(state)
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
}

/// The span of a request, for tower-http's debug lines: its method and path, not its query,
/// which may hold a secret (Haravan's subscription handshake sends `hub.verify_token`).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        version = ?request.version(),
    )
}

async fn method_not_allowed(Path(source_id): Path<String>, method: Method) -> Response {
    let err = ApiError::MethodNotAllowed;
    tracing::warn!(source = %source_id, %method, status = 405, "webhook refused: method not allowed");
    err.into_response()
}

async fn not_found() -> Response {
    ApiError::NotFound.into_response()
}
