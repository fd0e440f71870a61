//! `GET /api/mappings`, `POST /api/mappings/reload`, `POST /api/translate`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::ClientOrigin;
use super::query::Body;
use super::{AdminError, AdminState, ErrorBody};
use crate::domain::PlatformKind;
use crate::ops::{self, MappingsListed, Translation, TryWebhook};

/// The live mappings, and the problems of the files on disk a reload would meet now.
#[utoipa::path(
    get,
    path = "/api/mappings",
    responses((status = 200, description = "The mappings", body = MappingsListed)),
    security(("bearer" = [])),
)]
pub(super) async fn list(State(state): State<AdminState>) -> Json<MappingsListed> {
    let mappings = state.mappings.clone();
    // Loading the directory reads and compiles every file: off the async threads.
    let listed = tokio::task::spawn_blocking(move || mappings.list()).await;
    Json(listed.expect("listing the mappings does not panic"))
}

/// A reload that took.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    /// Mappings live now on the instance that answers.
    pub count: usize,
    /// Whether the reload was announced to the other instances on this store (PostgreSQL),
    /// each of which loads its own mappings directory again and logs the outcome. `false`
    /// on SQLite, which one instance serves, or when the announcement failed (the log says
    /// why).
    pub announced: bool,
}

/// Loads the mappings directory again, as `SIGHUP` does: with any error the mappings in
/// force stay live, and the answer (422) lists every problem. Either way, on a PostgreSQL
/// store the reload is then announced to the other instances on it, each of which loads its
/// own mappings directory again and logs the outcome (a 422 says so in its message).
#[utoipa::path(
    post,
    path = "/api/mappings/reload",
    responses(
        (status = 200, description = "The new mappings are live on this instance, and the reload was announced to the others (`announced`)", body = Reloaded),
        (status = 422, description = "A file does not load; the mappings in force stay", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn reload(
    State(state): State<AdminState>,
    Extension(origin): Extension<ClientOrigin>,
) -> Result<Json<Reloaded>, AdminError> {
    let mappings = state.mappings.clone();
    let reloaded = tokio::task::spawn_blocking(move || mappings.reload())
        .await
        .expect("a reload does not panic");
    let dir = state.mappings.dir();
    let client = origin.address.to_string();
    let announced = announce_reload(&state, "admin API", &client).await;
    match reloaded {
        Ok(count) => {
            tracing::info!(action = "reload", client = %client, mappings = %dir, count, announced, "admin API: mappings reloaded; {count} live");
            Ok(Json(Reloaded { count, announced }))
        }
        Err(error) => {
            let live = state.mappings.count();
            tracing::error!(
                action = "reload",
                client = %client,
                mappings = %dir,
                count = live,
                announced,
                error = %error.replace('\n', "; "),
                "admin API: mappings not reloaded; the ones in force stay live"
            );
            let others = if announced { ANNOUNCED } else { "" };
            Err(AdminError::Unprocessable(format!(
                "mappings not reloaded; the {live} in force stay live.{others} {error}"
            )))
        }
    }
}

/// What a refused reload's message says when it was announced.
const ANNOUNCED: &str = " The reload was announced to the other instances on this store: \
                         each loads its own mappings directory again and logs the outcome.";

/// Announces an operator's reload of this instance's mappings (`via` the admin API or the
/// dashboard, asked by `client`) to the other instances on the store; whether it was
/// announced (never on SQLite). A failure is logged: the reload here stands.
pub(super) async fn announce_reload(state: &AdminState, via: &str, client: &str) -> bool {
    match state.store.announce_reload(via, client).await {
        Ok(announced) => announced,
        Err(error) => {
            tracing::warn!(
                action = "reload",
                client = %client,
                mappings = %state.mappings.dir(),
                %error,
                "{via}: the reload was not announced to the other instances on the store; reload each of them (SIGHUP, or its admin API)"
            );
            false
        }
    }
}

/// A payload to try the live mappings on.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TranslateRequest {
    pub platform: PlatformKind,
    /// The platform's topic (e.g. `orders/paid`).
    pub topic: String,
    /// The webhook's body: a JSON value, or a string holding the raw body.
    pub body: Value,
    /// Headers the mappings may read as `$headers` (names are lowercased).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The source it comes from (`$source`, and that source's `vars`); default: the
    /// platform's name.
    pub source: Option<String>,
}

/// Every live mapping routed to the platform and topic, run over the payload: its plan (the
/// payload, valid for its operation's schema), its skip, its error (with every schema
/// violation), or its `when` not holding. Nothing is stored or sent.
#[utoipa::path(
    post,
    path = "/api/translate",
    request_body = TranslateRequest,
    responses(
        (status = 200, description = "What the mappings make of it", body = Translation),
        (status = 400, description = "A wrong platform, source or body", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn translate(
    State(state): State<AdminState>,
    Body(request): Body<TranslateRequest>,
) -> Result<Json<Translation>, AdminError> {
    let source = source_for(&state, request.platform, request.source.as_deref())?;
    let body = match request.body {
        Value::String(raw) => raw.into_bytes(),
        json => serde_json::to_vec(&json).expect("a JSON value"),
    };
    let headers: BTreeMap<String, String> = request
        .headers
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    Ok(Json(try_payload(
        &state,
        request.platform,
        &request.topic,
        &source,
        &headers,
        &body,
    )))
}

/// The source a tried payload comes from: `source` when it is a configured source of
/// `platform`, else the platform's name when none is named; any other is a 400 naming it.
pub(super) fn source_for(
    state: &AdminState,
    platform: PlatformKind,
    source: Option<&str>,
) -> Result<String, AdminError> {
    match source {
        None => Ok(platform.as_str().to_string()),
        Some(id) => match state.sources.get(id) {
            Some(source) if source.platform == platform => Ok(id.to_string()),
            Some(source) => Err(AdminError::BadRequest(format!(
                "source: `{id}` is a {} source, not a {} one",
                source.platform, platform
            ))),
            None => {
                let known: Vec<&str> = state.sources.keys().map(String::as_str).collect();
                Err(AdminError::BadRequest(format!(
                    "source: no source `{id}` is configured (there are: {})",
                    known.join(", ")
                )))
            }
        },
    }
}

/// Every live mapping routed to `platform` and `topic`, run over a payload: nothing is stored
/// or sent (`POST /api/translate` and the dashboard's playground).
pub(super) fn try_payload(
    state: &AdminState,
    platform: PlatformKind,
    topic: &str,
    source: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Translation {
    let catalog = state.mappings.live().load_full();
    ops::try_mappings(
        &catalog,
        &TryWebhook {
            platform,
            topic,
            source,
            headers,
            body,
        },
    )
}
