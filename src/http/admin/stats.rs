//! `GET /api/stats`.

use axum::Json;
use axum::extract::State;

use super::{AdminError, AdminState};
use crate::ops::{self, Stats};

/// Deliveries per status and per destination, each destination's oldest pending age and
/// circuit, and the attempts per minute of the last hour.
#[utoipa::path(
    get,
    path = "/api/stats",
    responses((status = 200, description = "The overview", body = Stats)),
    security(("bearer" = [])),
)]
pub(super) async fn overview(State(state): State<AdminState>) -> Result<Json<Stats>, AdminError> {
    Ok(Json(
        ops::stats(state.store.as_ref(), &state.circuits).await?,
    ))
}
