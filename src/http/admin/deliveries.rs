//! `GET /api/deliveries`, `GET /api/deliveries/{id}`, `POST /api/deliveries/replay`,
//! `POST /api/deliveries/cancel`.

use axum::Json;
use axum::extract::{Extension, Path, State};

use super::auth::ClientOrigin;
use super::query::{Body, DeliveryQuery, DeliverySelection, Query, Selected, limit};
use super::{AdminError, AdminState, ErrorBody, Page};
use crate::domain::DeliveryId;
use crate::ops::{self, DeliveryDetail};
use crate::store::{Cancelled, DeliveryFilter, DeliverySummary, Requeued};

/// Deliveries, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/deliveries",
    params(DeliveryQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = Page<DeliverySummary>),
        (status = 400, description = "A filter's value is wrong", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn list(
    State(state): State<AdminState>,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<Page<DeliverySummary>>, AdminError> {
    let page_size = limit(query.limit)?;
    let filter = DeliveryFilter {
        limit: Some(page_size),
        ..query.filter()?
    };
    let items = ops::list_deliveries(state.store.as_ref(), &filter).await?;
    let next_cursor = (items.len() as i64 == page_size)
        .then(|| items.last().map(|d| d.id.0))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// One delivery in full: its payload, the request it is sent as (secrets masked), every
/// attempt, and what it waits for.
#[utoipa::path(
    get,
    path = "/api/deliveries/{id}",
    params(("id" = i64, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryDetail),
        (status = 404, description = "No delivery has this id", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn detail(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryDetail>, AdminError> {
    let id: DeliveryId = id
        .parse()
        .map_err(|_| AdminError::BadRequest(format!("`{id}` is not a delivery id")))?;
    ops::delivery(state.store.as_ref(), &state.destinations, id)
        .await?
        .map(Json)
        .ok_or_else(|| AdminError::NotFound(format!("no delivery {id}")))
}

/// The store's filters a selection means: one per id, or the filter.
fn filters(
    selected: Selected,
    with_default: impl Fn(DeliveryFilter) -> DeliveryFilter,
) -> Vec<DeliveryFilter> {
    match selected {
        Selected::Ids(ids) => ids.into_iter().map(DeliveryFilter::one).collect(),
        Selected::Filter(filter) => vec![with_default(filter)],
    }
}

/// Puts deliveries back in the queue, due now: those named (a cancelled one too), or the
/// ones a filter matches (the dead ones when it names no status nor webhook). Delivered and
/// in-flight ones are never touched; a mapping's skip is never sent.
#[utoipa::path(
    post,
    path = "/api/deliveries/replay",
    request_body = DeliverySelection,
    responses(
        (status = 200, description = "What was requeued", body = Requeued),
        (status = 400, description = "Neither ids nor filter, or a wrong filter", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn replay(
    State(state): State<AdminState>,
    Extension(origin): Extension<ClientOrigin>,
    Body(selection): Body<DeliverySelection>,
) -> Result<Json<Requeued>, AdminError> {
    let status_named = selection
        .filter
        .as_ref()
        .is_some_and(|f| f.status.is_some());
    let (done, touched) = ops::replay_each(
        state.store.as_ref(),
        filters(selection.selected()?, |f| {
            ops::replay_filter(f, status_named)
        }),
    )
    .await?;
    state.wake_workers();
    // What was asked (`ids`, `filter`), and what it touched: the deliveries requeued, with
    // their mappings and destinations.
    tracing::info!(
        action = "replay",
        client = %origin.address,
        ids = ?selection.ids,
        filter = ?selection.filter,
        deliveries = %touched.ids_shown(),
        mappings = ?touched.mappings,
        destinations = ?touched.destinations,
        requeued = done.requeued,
        waiting = done.waiting,
        rearmed = done.rearmed,
        purged = done.purged,
        "admin API: deliveries replayed"
    );
    Ok(Json(done))
}

/// Cancels deliveries that are pending, waiting or dead: never sent, unless a replay names
/// one by its id. Status updates waiting for a cancelled delivery are skipped. A filter must
/// name something (a cancel never takes every delivery).
#[utoipa::path(
    post,
    path = "/api/deliveries/cancel",
    request_body = DeliverySelection,
    responses(
        (status = 200, description = "What was cancelled", body = Cancelled),
        (status = 400, description = "Neither ids nor a filter naming something", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn cancel(
    State(state): State<AdminState>,
    Extension(origin): Extension<ClientOrigin>,
    Body(selection): Body<DeliverySelection>,
) -> Result<Json<Cancelled>, AdminError> {
    let selected = selection.selected()?;
    if let Selected::Filter(filter) = &selected
        && !ops::names_something(filter)
    {
        return Err(AdminError::BadRequest(
            "filter: name at least one of destination, status, mapping, webhook, since, until (a cancel never takes every delivery)".into(),
        ));
    }
    let (done, touched) = ops::cancel_each(state.store.as_ref(), filters(selected, |f| f)).await?;
    tracing::info!(
        action = "cancel",
        client = %origin.address,
        ids = ?selection.ids,
        filter = ?selection.filter,
        deliveries = %touched.ids_shown(),
        mappings = ?touched.mappings,
        destinations = ?touched.destinations,
        cancelled = done.cancelled,
        skipped = done.skipped,
        "admin API: deliveries cancelled"
    );
    Ok(Json(done))
}
