//! The OpenAPI document of the receiver, generated from the handlers.

use crate::{receiver, AppState};
use axum::routing::get;
use axum::{Json, Router};
use topk_core::http::{ErrorBody, HealthApi};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "topk ingest", description = "Receives video views into the log."),
    paths(receiver::post_views),
    tags((name = "views", description = "Views in: validated, stored in the log, counted once")),
    components(schemas(topk_core::wire::ViewIn, receiver::Accepted, ErrorBody)),
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

/// The OpenAPI document of the receiver, generated from the handlers (the health routes' part from core,
/// which owns them).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi().merge_from(HealthApi::openapi())
}

/// `GET /openapi.json`: the document above.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(openapi()) }))
}
