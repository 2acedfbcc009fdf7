//! The OpenAPI document of the API, generated from the handlers.

use crate::{history, range, rankings, video_hourly, videos, AppState};
use axum::http::header::{CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::HeaderValue;
use axum::middleware::map_response;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use topk_core::domain::{RankedVideo, Window};
use topk_core::http::{ErrorBody, HealthApi};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "topk",
        description = "The most viewed videos of the last minute, hour, day and of all time."
    ),
    paths(
        rankings::topk,
        rankings::view_video,
        videos::video,
        video_hourly::hourly,
        history::history,
        range::range
    ),
    tags(
        (name = "rankings", description = "The most viewed videos of a window, live"),
        (name = "videos", description = "One video's views in every window"),
        (name = "history", description = "Rankings as they were, from the snapshots in Postgres, and the most viewed videos of any past range")
    ),
    components(schemas(
        RankedVideo,
        Window,
        ErrorBody,
        videos::VideoViews,
        videos::Ranks,
        video_hourly::VideoHourly,
        video_hourly::HourViews,
        history::HistoricRanking,
        range::RangeRanking,
        topk_core::db::range::Resolution
    ))
)]
struct ApiDoc;

/// The OpenAPI document, generated from the handlers (the health routes' part from core, which owns them).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi().merge_from(HealthApi::openapi())
}

/// The policy of Swagger UI's pages: this server only, never framed (clickjacking). Its scripts are files (no
/// inline script, no eval); its styles need `'unsafe-inline'` (the UI sets style attributes) and its icons
/// are `data:` images in its stylesheet.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// `GET /openapi.json`: the document above; `GET /docs`: Swagger UI on it, from assets vendored into the
/// binary (nothing is fetched from elsewhere), under [`DOCS_CSP`].
pub fn router() -> Router<AppState> {
    let docs = Router::from(
        utoipa_swagger_ui::SwaggerUi::new("/docs")
            .config(utoipa_swagger_ui::Config::from("/openapi.json")),
    )
    .layer(map_response(|mut response: Response| async move {
        let headers = response.headers_mut();
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        response
    }));
    Router::new()
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .merge(docs)
}
