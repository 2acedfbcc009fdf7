//! topk-ingest: views in, counted exactly once.
//!
//! # Layout
//! - [`config`]: settings and roles (receiver, worker, or both in one process).
//! - [`receiver`]: `POST /v1/views`: validate the whole batch, append it to the partitioned log, answer 202.
//! - [`worker`]: per partition, read the log in a consumer group, aggregate, apply with the acknowledgement in
//!   one script call; claim what dead workers left pending.
//! - [`retirer`]: subtract slices that left a window, once; trim the acknowledged log past its retention.
//!
//! Views move: HTTP → [`receiver`] → Redis stream `{p}:log` → [`worker::step`] → window sets → `topk-api`.

pub mod config;
pub mod receiver;
pub mod retirer;
pub mod worker;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{get, post};
use axum::{Json, Router};
use config::{IngestConfig, Role};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use topk_core::http::{ErrorBody, Health};
use topk_core::redis::RedisStore;
use utoipa::OpenApi;

/// What every handler shares.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: RedisStore,
    pub config: Arc<IngestConfig>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "topk ingest", description = "Receives video views into the log."),
    paths(receiver::post_views, topk_core::http::healthz, topk_core::http::readyz),
    components(schemas(receiver::ViewIn, receiver::Accepted, ErrorBody, Health)),
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

/// The receiver's routes.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/v1/views", post(receiver::post_views))
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .merge(topk_core::http::health_routes())
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(30),
        ))
        .with_state(state)
}

/// A built ingest process: its listener is bound (so tests can pass port 0 and read the port) but nothing
/// runs until [`Application::run`].
pub struct Application {
    listener: Option<TcpListener>,
    state: AppState,
}

impl Application {
    pub async fn build(config: IngestConfig) -> anyhow::Result<Self> {
        let store = RedisStore::connect(&config.redis).await?;
        if let Err(e) = store.ensure_log_groups().await {
            // Redis may come later: the workers create the groups on their first successful step.
            tracing::warn!(error = %e, "could not create the log's consumer groups yet");
        }
        let listener = match config.role {
            Role::Worker => None,
            _ => Some(TcpListener::bind(config.addr).await?),
        };
        Ok(Self {
            listener,
            state: AppState {
                store,
                config: Arc::new(config),
            },
        })
    }

    /// Where the receiver listens (None for a worker-only process).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Runs until `stop` is cancelled: the receiver drains in-flight requests, workers finish the batch in hand.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let config = self.state.config.clone();
        if config.role != Role::Receiver {
            let store = self.state.store.clone();
            while let Err(e) = store.ensure_log_groups().await {
                tracing::warn!(error = %e, "waiting for Redis to create the log's consumer groups");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return Ok(()),
                }
            }
            let consumer = config.consumer();
            tracing::info!(consumer = %consumer, partitions = config.redis.partitions, "workers starting");
            for p in store.keys().all_partitions() {
                tracker.spawn(worker::run_partition(
                    store.clone(),
                    p,
                    consumer.clone(),
                    config.worker_batch_entries,
                    config.claim_idle(),
                    stop.clone(),
                ));
            }
            tracker.spawn(retirer::run(
                store.clone(),
                config.retire_interval(),
                std::time::Duration::from_secs(config.log_retention_secs),
                stop.clone(),
            ));
        }
        if let Some(listener) = self.listener {
            tracing::info!(addr = %listener.local_addr()?, "receiver listening");
            let app = router(self.state.clone());
            let stop = stop.clone();
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await?;
        }
        tracker.close();
        tracker.wait().await;
        self.state.store.quit().await;
        tracing::info!("ingest stopped");
        Ok(())
    }
}
