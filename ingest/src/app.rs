//! Wiring: [`Application::build`] binds and connects, [`Application::run`] starts what the role asks for.

use crate::backpressure::Backlog;
use crate::config::{IngestConfig, Role};
use crate::worker::{self, WorkerOptions};
use crate::{openapi, receiver, retirer};
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use topk_core::http::BearerTokens;
use topk_core::redis::RedisStore;

/// What every handler shares.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Redis: the log the receiver appends to.
    pub store: RedisStore,
    /// The settings, for the body and batch limits.
    pub config: Arc<IngestConfig>,
    /// The tokens that may write (None: no authentication), parsed once from the configuration.
    pub tokens: Option<Arc<BearerTokens>>,
    /// The latest backlog measurement the receiver refuses on.
    pub backlog: Arc<Backlog>,
}

/// Every route of the receiver process, merged in this one place; the body limit covers them all.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .merge(receiver::router(&state))
        .merge(openapi::router())
        .merge(topk_core::http::health_routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A built ingest process: its listener is bound (so tests can pass port 0 and read the port) but nothing
/// runs until [`Application::run`].
pub struct Application {
    listener: Option<TcpListener>,
    state: AppState,
}

impl Application {
    /// Parses the tokens, connects to Redis (creating the log's consumer groups if it answers) and, unless a
    /// worker-only process, binds the listener (port 0 picks a free one).
    pub async fn build(config: IngestConfig) -> anyhow::Result<Self> {
        let tokens = config.tokens()?.map(Arc::new);
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
                tokens,
                backlog: Arc::new(Backlog::new(config.max_backlog)),
                config: Arc::new(config),
            },
        })
    }

    /// The routes with this process's state, for tests that call them without a socket (`oneshot`).
    pub fn router(&self) -> Router {
        router(self.state.clone())
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
            if !worker::wait_for_log_groups(&store, &stop).await {
                return Ok(());
            }
            let options = WorkerOptions::from_config(&config);
            tracing::info!(consumer = %options.consumer, partitions = config.redis.partitions, "workers starting");
            worker::spawn(&tracker, &store, &options, &stop);
            tracker.spawn(retirer::run(
                store.clone(),
                config.retire_interval(),
                std::time::Duration::from_secs(config.log_retention_secs),
                stop.clone(),
            ));
        }
        if let Some(listener) = self.listener {
            tracing::info!(addr = %listener.local_addr()?, "receiver listening");
            if self.state.backlog.limit() > 0 {
                tracker.spawn(
                    self.state
                        .backlog
                        .clone()
                        .run(self.state.store.clone(), stop.clone()),
                );
            }
            let app = router(self.state.clone());
            topk_core::serve::serve(listener, app, &config.http, stop.clone()).await?;
        }
        tracker.close();
        tracker.wait().await;
        self.state.store.quit().await;
        tracing::info!("ingest stopped");
        Ok(())
    }
}
