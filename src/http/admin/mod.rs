//! The admin surface: `/api` JSON routes (and their OpenAPI document at `/api/openapi.json`)
//! behind the admin token. Every route reads and acts through [`crate::ops`]; every action
//! that changes state is logged with what it touched and the client's address.
//!
//! - `auth.rs`: the token, throttling, the client's address, the cookie session and CSRF
//!   token a dashboard uses;
//! - `token.rs`: where the token comes from at start-up;
//! - `query.rs`: query parameters and request bodies into the store's filters;
//! - `webhooks.rs`, `deliveries.rs`, `mappings.rs` (and `POST /api/translate`), `stats.rs`:
//!   the routes;
//! - `openapi.rs`: the document, generated from the handlers' annotations;
//! - `dashboard.rs` (and `templates/`): the web dashboard at `/admin`, behind the login
//!   form's session cookie, over the same operations.

pub mod auth;
mod dashboard;
mod deliveries;
mod mappings;
mod openapi;
mod query;
mod stats;
pub mod token;
mod webhooks;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::{DestinationConfig, SourceConfig};
use crate::delivery::Circuit;
use crate::ops::Mappings;
use crate::store::{Store, StoreError};

pub use auth::Gate;
pub use openapi::ApiDoc;

/// What the admin routes share.
#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    pub mappings: Mappings,
    pub sources: Arc<BTreeMap<String, SourceConfig>>,
    pub destinations: Arc<BTreeMap<String, DestinationConfig>>,
    /// The circuits of the destinations this service's workers send to.
    pub circuits: Arc<BTreeMap<String, Circuit>>,
    /// One per destination: notified when a replay or a re-translation queued deliveries.
    pub wake: Arc<HashMap<String, Arc<Notify>>>,
    pub gate: Arc<Gate>,
}

impl AdminState {
    /// Wakes every destination's worker: deliveries were put back in the queue.
    fn wake_workers(&self) {
        for notify in self.wake.values() {
            notify.notify_one();
        }
    }
}

/// The `/api` routes, each behind the token, and the dashboard's `/admin` pages, behind
/// its session cookie. Throttling counts per client address: the accept loop
/// ([`crate::http::serve`]) gives each request its peer's `ConnectInfo`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/webhooks", get(webhooks::list))
        .route("/api/webhooks/retranslate", post(webhooks::retranslate))
        .route("/api/webhooks/{id}", get(webhooks::detail))
        .route("/api/deliveries", get(deliveries::list))
        .route("/api/deliveries/replay", post(deliveries::replay))
        .route("/api/deliveries/cancel", post(deliveries::cancel))
        .route("/api/deliveries/{id}", get(deliveries::detail))
        .route("/api/mappings", get(mappings::list))
        .route("/api/mappings/reload", post(mappings::reload))
        .route("/api/translate", post(mappings::translate))
        .route("/api/stats", get(stats::overview))
        .route("/api", get(not_found))
        .route("/api/{*rest}", axum::routing::any(not_found))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .merge(dashboard::routes(state.clone()))
        .with_state(state)
}

/// Lets a request through with the right bearer token; else 401, or 429 for an address
/// that sent too many wrong ones. Never logs the token.
pub async fn require_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0);
    let origin = state.gate.origin(peer, request.headers());
    let presented = auth::bearer(request.headers());
    match state.gate.judge(origin.address, presented) {
        auth::Verdict::Allowed => {
            let mut request = request;
            request.extensions_mut().insert(origin);
            next.run(request).await
        }
        auth::Verdict::Refused => {
            tracing::warn!(
                client = %origin.address,
                path = %request.uri().path(),
                token = if presented.is_some() { "wrong" } else { "missing" },
                "admin API: refused"
            );
            AdminError::Unauthorized.into_response()
        }
        auth::Verdict::Throttled { retry_after } => {
            tracing::warn!(
                client = %origin.address,
                path = %request.uri().path(),
                retry_after_s = retry_after.as_secs(),
                "admin API: too many wrong tokens from this address"
            );
            AdminError::Throttled {
                retry_after_secs: retry_after.as_secs().max(1),
            }
            .into_response()
        }
    }
}

async fn not_found() -> Response {
    AdminError::NotFound("no such admin route".into()).into_response()
}

/// The body of every error: a code and a short message naming the problem.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: &'static str,
    pub message: String,
}

/// Why an admin request was not done.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or wrong admin token: send Authorization: Bearer <STOREHOOK_ADMIN_TOKEN>")]
    Unauthorized,
    #[error("too many wrong tokens from this address: retry in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The request was understood and cannot be done (a reload with broken mappings).
    #[error("{0}")]
    Unprocessable(String),
    #[error("the store is unavailable; retry later")]
    Store(#[from] StoreError),
}

impl AdminError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Throttled { .. } => "too_many_attempts",
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::Unprocessable(_) => "unprocessable",
            Self::Store(_) => "store_unavailable",
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        match &self {
            // The cause is the operator's to read in the log, not the client's.
            Self::Store(error) => tracing::error!(%error, "admin API: the store failed"),
            Self::BadRequest(message) | Self::Unprocessable(message) => {
                tracing::info!(%message, "admin API: request refused")
            }
            _ => {}
        }
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        match self {
            Self::Throttled { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"storehook admin\""),
                );
            }
            _ => {}
        }
        response
    }
}

/// A page of a listing, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass it as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<i64>,
}
