//! Wiring: the shared state, every route merged, and [`Application`] (build binds, run serves).

use crate::config::ApiConfig;
use crate::{cache, history, openapi, rankings, videos};
use axum::extract::FromRef;
use axum::Router;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use topk_core::redis::RedisStore;
use topk_core::supervise::Liveness;

/// What every handler shares.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Redis: the live windows and counts.
    pub store: RedisStore,
    /// Postgres: the ranking snapshots behind history (connected lazily).
    pub db: sqlx::PgPool,
    /// The merged top list of each window, shared by requests.
    pub rankings: std::sync::Arc<cache::RankingCache>,
    /// Whether every background loop runs (`/readyz`). The API has none of its own (each cache refresh is a
    /// task of one request), so this only fails if one is added and dies.
    pub liveness: Liveness,
}

/// Every route of the API: each module's own, merged in this one place.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(rankings::router())
        .merge(history::router())
        .merge(videos::router())
        .merge(openapi::router())
        .merge(topk_core::http::health_routes())
        .with_state(state)
}

/// A built API: bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    http: topk_core::config::HttpConfig,
}

impl Application {
    /// Connects to Redis, prepares the Postgres pool and binds the listener (port 0 picks a free one).
    pub async fn build(config: ApiConfig) -> anyhow::Result<Self> {
        let store = RedisStore::connect(&config.redis).await?;
        // Redis may come later (the rankings answer 503 meanwhile); another layout may not.
        store.check_layout_at_start().await?;
        let db = topk_core::db::pool(&config.database)?;
        let listener = TcpListener::bind(config.addr).await?;
        Ok(Self {
            listener,
            state: AppState {
                store,
                db,
                rankings: std::sync::Arc::new(cache::RankingCache::new(
                    std::time::Duration::from_millis(config.ranking_cache_ms),
                )),
                liveness: Liveness::default(),
            },
            http: config.http,
        })
    }

    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Serves until `stop` is cancelled, then drains in-flight requests.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "api listening");
        let app = router(self.state.clone());
        topk_core::serve::serve(self.listener, app, &self.http, stop).await?;
        self.state.store.quit().await;
        tracing::info!("api stopped");
        Ok(())
    }
}
