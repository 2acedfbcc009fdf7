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

use topk_core::http::BearerTokens;
use topk_core::redis::{RedisStore, StoreError};
use topk_core::supervise::{Liveness, Supervisor};

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
    /// Whether every background loop of the process still runs (`/readyz`).
    pub liveness: Liveness,
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
        let store = RedisStore::connect(&config.redis)
            .await?
            .with_generated_key_retention(std::time::Duration::from_secs(
                config.idempotency_retention_secs,
            ));
        match store.ensure_log_groups().await {
            Ok(()) => {}
            Err(e @ StoreError::Layout { .. }) => return Err(e.into()),
            // Redis may come later: the workers create the groups on their first successful step.
            Err(e) => tracing::warn!(error = %e, "could not create the log's consumer groups yet"),
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
                liveness: Liveness::default(),
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
    /// Every loop is supervised: one that dies stops the others and the receiver, and `run` returns its cause
    /// (the binary then exits non-zero for its supervisor to restart it).
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        self.run_with(stop, |_| {}).await
    }

    /// [`Self::run`], with `also` adding tasks of its own to the process's supervisor first: tests inject a
    /// failing loop this way.
    pub async fn run_with(
        self,
        stop: CancellationToken,
        also: impl FnOnce(&mut Supervisor),
    ) -> anyhow::Result<()> {
        let mut tasks = Supervisor::new(stop.clone(), self.state.liveness.clone());
        let config = self.state.config.clone();
        also(&mut tasks);
        if config.role != Role::Receiver {
            let store = self.state.store.clone();
            if !worker::wait_for_log_groups(&store, &stop).await? {
                return Ok(());
            }
            let options = WorkerOptions::from_config(&config);
            tracing::info!(consumer = %options.consumer, partitions = config.redis.partitions, "workers starting");
            worker::spawn(&mut tasks, &store, &options, &stop);
            let (interval, retention) = (
                config.retire_interval(),
                std::time::Duration::from_secs(config.log_retention_secs),
            );
            retirer::spawn(&mut tasks, &store, interval, retention, &stop);
        }
        let served = if let Some(listener) = self.listener {
            tracing::info!(addr = %listener.local_addr()?, "receiver listening");
            if self.state.backlog.limit() > 0 {
                let (backlog, store, stop) = (
                    self.state.backlog.clone(),
                    self.state.store.clone(),
                    stop.clone(),
                );
                tasks.spawn("backlog measurement", async move {
                    backlog.run(store, stop).await;
                    Ok(())
                });
            }
            let app = router(self.state.clone());
            // The server and the loops run side by side: a dead loop cancels `stop`, which drains the server.
            let (serving, supervised) = tokio::join!(
                topk_core::serve::serve(listener, app, &config.http, stop.clone()),
                tasks.wait()
            );
            supervised.and(serving.map_err(anyhow::Error::from))
        } else {
            tasks.wait().await
        };
        self.state.store.quit().await;
        match &served {
            Ok(()) => tracing::info!("ingest stopped"),
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "ingest stopped: a background task died"
            ),
        }
        served
    }
}
