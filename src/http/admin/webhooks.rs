//! `GET /api/webhooks`, `GET /api/webhooks/{id}`, `POST /api/webhooks/retranslate`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::{Deserialize, Serialize};

use super::auth::ClientOrigin;
use super::query::{Body, DeliveryQuery, Query, WebhookQuery};
use super::{AdminError, AdminState, ErrorBody, Page};
use crate::domain::WebhookId;
use crate::ops::{self, Translation, TryWebhook, WebhookDetail, WebhookSummary};
use crate::store::DeliveryFilter;

/// Stored webhooks, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/webhooks",
    params(WebhookQuery),
    responses(
        (status = 200, description = "A page of webhooks", body = Page<WebhookSummary>),
        (status = 400, description = "A filter's value is wrong", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn list(
    State(state): State<AdminState>,
    Query(query): Query<WebhookQuery>,
) -> Result<Json<Page<WebhookSummary>>, AdminError> {
    let filter = query.filter()?;
    let items = ops::list_webhooks(state.store.as_ref(), &filter).await?;
    let next_cursor = (items.len() as i64 == filter.limit.unwrap_or_default())
        .then(|| items.last().map(|w| w.id.0))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// One webhook in full, with what the live mappings make of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    #[serde(flatten)]
    pub webhook: WebhookDetail,
    /// Every mapping routed to its platform and topic, run now over the stored body:
    /// its plan, skip or error (`null` once the body is purged).
    pub mappings: Option<Translation>,
}

/// One stored webhook: its headers (signatures redacted), body, status and error, each
/// delivery made of it with every attempt, and each mapping's plan, skip or error.
#[utoipa::path(
    get,
    path = "/api/webhooks/{id}",
    params(("id" = i64, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "The webhook", body = WebhookView),
        (status = 404, description = "No webhook has this id", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn detail(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, AdminError> {
    let id: WebhookId = id
        .parse()
        .map_err(|_| AdminError::BadRequest(format!("`{id}` is not a webhook id")))?;
    view(&state, id)
        .await?
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(format!("no webhook {id}")))
}

/// The webhook with this id in full, with what the live mappings make of it now (the API's
/// detail and the dashboard's page).
pub(super) async fn view(
    state: &AdminState,
    id: WebhookId,
) -> Result<Option<WebhookView>, crate::store::StoreError> {
    let Some(webhook) = ops::webhook(state.store.as_ref(), id).await? else {
        return Ok(None);
    };
    let body = match &webhook.body {
        ops::Body::Json(json) => Some(serde_json::to_vec(json).expect("a JSON value")),
        ops::Body::Text(text) => Some(text.clone().into_bytes()),
        ops::Body::Purged => None,
    };
    let mappings = body.map(|body| {
        let catalog = state.mappings.live().load_full();
        ops::try_mappings(
            &catalog,
            &TryWebhook {
                platform: webhook.summary.platform,
                topic: &webhook.summary.topic,
                source: &webhook.summary.source,
                headers: &webhook.headers,
                body: &body,
            },
        )
    });
    Ok(Some(WebhookView { webhook, mappings }))
}

/// Which webhooks a re-translation reads.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetranslateRequest {
    /// Webhook ids.
    pub ids: Option<Vec<i64>>,
    /// Or a filter of deliveries: the webhooks of the matching ones, and the untranslated
    /// ones (as `storehook replay --retranslate`; with no status, webhook nor id named,
    /// the dead deliveries).
    pub filter: Option<DeliveryQuery>,
    /// Write only the deliveries of this mapping.
    pub mapping: Option<String>,
}

/// What a re-translation did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RetranslateDone {
    /// Webhooks run through the live mappings again.
    pub webhooks: u64,
    /// Deliveries the mappings make now that did not exist.
    pub added: u64,
    /// Deliveries not yet delivered that took the new payload and are due now.
    pub replaced: u64,
    /// Webhooks whose translation failed, with the error (stored as `untranslated`).
    pub failed: Vec<FailedWebhook>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FailedWebhook {
    pub webhook: WebhookId,
    pub error: String,
}

/// Runs the live mappings again over stored webhooks (after a mapping fix): new deliveries
/// are added, those not yet delivered take the new payload, delivered and cancelled ones are
/// left alone.
#[utoipa::path(
    post,
    path = "/api/webhooks/retranslate",
    request_body = RetranslateRequest,
    responses(
        (status = 200, description = "What was re-translated", body = RetranslateDone),
        (status = 400, description = "Neither ids nor filter, or an unknown mapping", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn retranslate(
    State(state): State<AdminState>,
    Extension(origin): Extension<ClientOrigin>,
    Body(request): Body<RetranslateRequest>,
) -> Result<Json<RetranslateDone>, AdminError> {
    let filters: Vec<DeliveryFilter> = match (&request.ids, &request.filter) {
        (Some(ids), None) if !ids.is_empty() => ids
            .iter()
            .map(|id| DeliveryFilter {
                webhook_id: Some(WebhookId(*id)),
                ..DeliveryFilter::default()
            })
            .collect(),
        (None, Some(filter)) => {
            let status_named = filter.status.is_some();
            vec![ops::replay_filter(filter.filter()?, status_named)]
        }
        _ => {
            return Err(AdminError::BadRequest(
                "give either `ids` (a non-empty list of webhook ids) or `filter`".into(),
            ));
        }
    };
    let catalog = state.mappings.live().load_full();
    if let Some(mapping) = &request.mapping
        && !catalog.mappings().iter().any(|m| &m.id == mapping)
    {
        let known: Vec<&str> = catalog.mappings().iter().map(|m| m.id.as_str()).collect();
        return Err(AdminError::BadRequest(format!(
            "mapping: no live mapping `{mapping}` (there are: {})",
            known.join(", ")
        )));
    }
    let mut done = RetranslateDone {
        webhooks: 0,
        added: 0,
        replaced: 0,
        failed: Vec::new(),
    };
    for filter in &filters {
        let one = ops::retranslate(
            state.store.as_ref(),
            &catalog,
            filter,
            request.mapping.as_deref(),
            |_, _, _| {},
        )
        .await
        .map_err(|error| match error {
            ops::RetranslateError::Store(error) => AdminError::Store(error),
            other => AdminError::Unprocessable(other.to_string()),
        })?;
        done.webhooks += one.webhooks;
        done.added += one.added;
        done.replaced += one.replaced;
        done.failed.extend(
            one.failed
                .into_iter()
                .map(|(webhook, error)| FailedWebhook { webhook, error }),
        );
    }
    state.wake_workers();
    tracing::info!(
        action = "retranslate",
        client = %origin.address,
        ids = ?request.ids,
        filter = ?request.filter,
        mapping = ?request.mapping,
        webhooks = done.webhooks,
        added = done.added,
        replaced = done.replaced,
        failed = done.failed.len(),
        "admin API: webhooks re-translated"
    );
    Ok(Json(done))
}
