//! Wiring: [`Application::build`] binds and connects, [`Application::run`] starts what the role asks for.

use crate::backpressure::Backlog;
use crate::config::{IngestConfig, Role};
use crate::worker::{self, WorkerOptions};
use crate::{kafka, log_watch, openapi, receiver, retirer};
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::group_commit::GroupCommit;
use topk_core::http::{
    with_json_errors, with_request_metrics, BearerTokens, Readiness, RefusalLog, Service,
    REFUSAL_LOG_INTERVAL,
};
use topk_core::metrics::Part;
use topk_core::redis::{LogState, RedisStore, StoreError, WindowApplier};
use topk_core::supervise::{Liveness, Supervisor};

/// What every handler shares.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Redis: the log the receiver appends to, batches grouped as they arrive (its only way to Redis).
    pub appender: GroupCommit,
    /// The settings, for the body and batch limits.
    pub config: Arc<IngestConfig>,
    /// The tokens that may write (None: no authentication), parsed once from the configuration.
    pub tokens: Option<Arc<BearerTokens>>,
    /// Refused writes, logged at most once per interval.
    pub refusals: Arc<RefusalLog>,
    /// The latest backlog measurement the receiver refuses on.
    pub backlog: Arc<Backlog>,
    /// What `/readyz` checks: every background loop runs, Redis answers; it reports the backlog's state.
    pub readiness: Readiness,
}

/// Every route of the receiver process, merged in this one place; the body limit covers them all.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let routes = Router::new()
        .merge(receiver::router(&state))
        .merge(openapi::router())
        .merge(topk_core::http::health_routes())
        // After every merge: it applies to the routes the router has when it is set.
        .method_not_allowed_fallback(topk_core::http::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit));
    with_request_metrics(with_json_errors(routes), Service::Ingest).with_state(state)
}

/// A built ingest process: its listener is bound (so tests can pass port 0 and read the port) but nothing
/// runs until [`Application::run`].
pub struct Application {
    listener: Option<TcpListener>,
    admin: Option<TcpListener>,
    state: AppState,
    liveness: Liveness,
    /// The connection, from which each role this process runs takes its own handle.
    redis: RedisStore,
}

impl Application {
    /// Parses the tokens, connects to Redis (creating the log's consumer groups if it answers) and, unless a
    /// worker-only process, binds the listener (port 0 picks a free one).
    pub async fn build(config: IngestConfig) -> anyhow::Result<Self> {
        let parts: &[Part] = match config.role {
            Role::All => &[Part::Receiver, Part::Workers],
            Role::Receiver => &[Part::Receiver],
            Role::Worker => &[Part::Workers],
            Role::Kafka => &[Part::Kafka],
        };
        config.check()?;
        // A kafka process without brokers is a configuration mistake: refused before anything starts.
        if config.role == Role::Kafka {
            config.kafka_options()?;
        }
        topk_core::metrics::install(parts);
        let tokens = config.tokens()?.map(Arc::new);
        // Addresses first: one in use is the quickest mistake to report, and needs no server.
        let listener = match config.role {
            Role::Worker | Role::Kafka => None,
            _ => Some(topk_core::serve::bind("TOPK_INGEST_ADDR", config.addr).await?),
        };
        let admin = match config.admin.admin_addr {
            Some(addr) => Some(topk_core::serve::bind("TOPK_ADMIN_ADDR", addr).await?),
            None => None,
        };
        let store = RedisStore::connect(&config.redis)
            .await?
            .with_generated_key_retention(std::time::Duration::from_secs(
                config.idempotency_retention_secs,
            ));
        match store.applier().ensure_log_groups().await {
            Ok(()) => {}
            Err(e @ (StoreError::Layout { .. } | StoreError::Config(_))) => return Err(e.into()),
            // Redis may come later: the workers create the groups on their first successful step.
            Err(e) => tracing::warn!(error = %e, "could not create the log's consumer groups yet"),
        }
        let backlog = Arc::new(Backlog::new(config.max_backlog));
        let liveness = Liveness::default();
        let reported = backlog.clone();
        let readiness = Readiness::new(liveness.clone())
            .with_redis(store.log_state())
            .with("backlog", move || {
                let report = reported.report();
                Box::pin(async move { Ok(report) })
            });
        let appender = GroupCommit::new(
            store.writer(),
            std::time::Duration::from_millis(config.linger_ms),
            std::time::Duration::from_secs(config.idempotency_retention_secs),
        );
        Ok(Self {
            listener,
            admin,
            state: AppState {
                appender,
                tokens,
                refusals: Arc::new(RefusalLog::new(REFUSAL_LOG_INTERVAL)),
                backlog,
                readiness,
                config: Arc::new(config),
            },
            liveness,
            redis: store,
        })
    }

    /// The routes with this process's state, for tests that call them without a socket (`oneshot`).
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Where the receiver listens (None for a worker-only or kafka process).
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
        let mut tasks = Supervisor::new(stop.clone(), self.liveness.clone());
        let config = self.state.config.clone();
        also(&mut tasks);
        if let Some(admin) = self.admin {
            topk_core::http::admin::spawn(&mut tasks, admin, self.state.readiness.clone(), &stop);
        }
        // Backpressure and the backlog and freshness metrics, in every role.
        let (backlog, log, watching) = (
            self.state.backlog.clone(),
            self.redis.log_state(),
            stop.clone(),
        );
        tasks.spawn("log watch", async move {
            log_watch::run(log, backlog, watching).await;
            Ok(())
        });
        if config.role == Role::Kafka {
            let (writer, backlog, stopping) = (
                self.redis.writer(),
                self.state.backlog.clone(),
                stop.clone(),
            );
            let options = config.kafka_options()?;
            tasks.spawn(
                "kafka source",
                kafka::run(writer, options, backlog, stopping),
            );
        } else if config.role != Role::Receiver {
            // The workers wait for Redis in a task of their own, so that the receiver (role `all`) serves
            // `/healthz` and a 503 `/readyz` meanwhile instead of answering nothing.
            let (applier, log, stopping, liveness) = (
                self.redis.applier(),
                self.redis.log_state(),
                stop.clone(),
                self.liveness.clone(),
            );
            tasks.spawn(
                "workers",
                run_workers(applier, log, config.clone(), stopping, liveness),
            );
        }
        let served = if let Some(listener) = self.listener {
            tracing::info!(addr = %listener.local_addr()?, "receiver listening");
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
        self.redis.quit().await;
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

/// Waits until Redis has the log's consumer groups (and no rebuild is half done), then runs a worker per
/// partition and the retirer under a supervisor of their own until `stop`: one of them dying ends this task
/// with its cause, which stops the process.
async fn run_workers(
    applier: WindowApplier,
    log: LogState,
    config: Arc<IngestConfig>,
    stop: CancellationToken,
    liveness: Liveness,
) -> anyhow::Result<()> {
    if !worker::wait_for_log_groups(&applier, &log, &stop).await? {
        return Ok(());
    }
    let options = WorkerOptions::from_config(&config);
    tracing::info!(consumer = %options.consumer, partitions = config.redis.partitions, "workers starting");
    let mut tasks = Supervisor::new(stop.clone(), liveness);
    worker::spawn(&mut tasks, &applier, &options, &stop);
    let (interval, retention) = (
        config.retire_interval(),
        std::time::Duration::from_secs(config.log_retention_secs),
    );
    retirer::spawn(&mut tasks, &applier, interval, retention, &stop);
    tasks.wait().await
}
