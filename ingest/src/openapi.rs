//! The OpenAPI document of the receiver, generated from the handlers.

use crate::{receiver, AppState};
use axum::routing::get;
use axum::{Json, Router};
use topk_core::http::{ErrorBody, Health};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "topk ingest", description = "Receives video views into the log."),
    paths(
        receiver::post_views,
        topk_core::http::healthz,
        topk_core::http::readyz,
        topk_core::http::metrics
    ),
    tags(
        (name = "views", description = "Views in: validated, stored in the log, counted once"),
        (name = "health", description = "Liveness, readiness and Prometheus metrics")
    ),
    components(schemas(topk_core::wire::ViewIn, receiver::Accepted, ErrorBody, Health)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;
impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The OpenAPI document of the receiver, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json`: the document above.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(openapi()) }))
}
