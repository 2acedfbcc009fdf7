//! topk-api: rankings per window, health and the OpenAPI document.
//!
//! # Layout
//! - [`config`]: settings (flags and environment).
//! - [`rankings`]: `GET /view/video` and `GET /v1/topk`: per-partition top K from Redis, merged.
//! - [`videos`]: `GET /v1/videos/{videoId}`: one video's views in each window, from Redis.
//! - [`history`]: `GET /v1/topk/history`: past rankings from Postgres snapshots.
//!
//! A request reads each partition's maintained window (`ZRANGE ... REV`), never a union of slices.

pub mod config;
pub mod history;
pub mod rankings;
pub mod videos;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use config::ApiConfig;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use topk_core::domain::{RankedVideo, Window};
use topk_core::http::{healthz, ApiError, ErrorBody, Health};
use topk_core::redis::RedisStore;
use utoipa::OpenApi;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: RedisStore,
    pub db: sqlx::PgPool,
}

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
        history::history,
        readyz
    ),
    components(schemas(
        RankedVideo,
        Window,
        ErrorBody,
        Health,
        videos::VideoViews,
        history::HistoricRanking
    ))
)]
struct ApiDoc;

/// The OpenAPI document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Redis answers: rankings can be served.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Redis is reachable", body = Health),
    (status = 503, description = "Redis is not reachable", body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::unavailable("Redis", &e))?;
    Ok(Json(Health { status: "ok" }))
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/view/video", get(rankings::view_video))
        .route("/v1/topk", get(rankings::topk))
        .route("/v1/topk/history", get(history::history))
        .route("/v1/videos/{video_id}", get(videos::video))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .fallback(topk_core::http::not_found)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(10),
        ))
        .with_state(state)
}

/// A built API: bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: ApiConfig) -> anyhow::Result<Self> {
        let store = RedisStore::connect(&config.redis).await?;
        let db = topk_core::db::pool(&config.database)?;
        let listener = TcpListener::bind(config.addr).await?;
        Ok(Self {
            listener,
            state: AppState { store, db },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Serves until `stop` is cancelled, then drains in-flight requests.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "api listening");
        axum::serve(self.listener, router(self.state.clone()))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await?;
        self.state.store.quit().await;
        tracing::info!("api stopped");
        Ok(())
    }
}
