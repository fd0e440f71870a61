//! The OpenAPI document of the admin API, generated from the handlers' annotations and the
//! record types (`GET /api/openapi.json`).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{deliveries, mappings, stats, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "storehook admin API",
        description = "What storehook received, what it made of it, and what operators may do about it. Every route needs `Authorization: Bearer <STOREHOOK_ADMIN_TOKEN>`."
    ),
    paths(
        document,
        webhooks::list,
        webhooks::detail,
        webhooks::retranslate,
        deliveries::list,
        deliveries::detail,
        deliveries::replay,
        deliveries::cancel,
        mappings::list,
        mappings::reload,
        mappings::translate,
        stats::overview,
    ),
    modifiers(&BearerToken),
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    responses((status = 200, description = "The OpenAPI document", body = Object)),
    security(("bearer" = [])),
)]
pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
