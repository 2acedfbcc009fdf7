//! The OpenAPI document of the API, generated from the handlers.

use crate::{history, rankings, video_hourly, videos, AppState};
use axum::routing::get;
use axum::{Json, Router};
use topk_core::domain::{RankedVideo, Window};
use topk_core::http::{ErrorBody, Health};
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
        topk_core::http::healthz,
        topk_core::http::readyz,
        topk_core::http::metrics
    ),
    tags(
        (name = "rankings", description = "The most viewed videos of a window, live"),
        (name = "videos", description = "One video's views in every window"),
        (name = "history", description = "Rankings as they were, from the snapshots in Postgres"),
        (name = "health", description = "Liveness, readiness and Prometheus metrics")
    ),
    components(schemas(
        RankedVideo,
        Window,
        ErrorBody,
        Health,
        videos::VideoViews,
        videos::Ranks,
        video_hourly::VideoHourly,
        video_hourly::HourViews,
        history::HistoricRanking
    ))
)]
struct ApiDoc;

/// The OpenAPI document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /openapi.json`: the document above; `GET /docs`: Swagger UI on it, from assets vendored into the
/// binary (nothing is fetched from elsewhere).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs")
                .config(utoipa_swagger_ui::Config::from("/openapi.json")),
        )
}
