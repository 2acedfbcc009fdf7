//! Wiring: the shared state, every route merged, and [`Application`] (build binds, run serves).

use crate::config::ApiConfig;
use crate::{cache, history, openapi, range, rankings, video_hourly, videos};
use axum::extract::FromRef;
use axum::Router;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use topk_core::http::{with_json_errors, with_request_metrics, OnFailure, Readiness, Service};
use topk_core::metrics::Part;
use topk_core::redis::{RankingReads, RedisStore};
use topk_core::supervise::{Liveness, Supervisor};
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// What every handler shares.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Redis, read only: the live windows and counts (the API's only handle on Redis).
    pub reads: RankingReads,
    /// Postgres: the ranking snapshots behind history (connected lazily).
    pub db: sqlx::PgPool,
    /// The merged top list of each window, shared by requests.
    pub rankings: std::sync::Arc<cache::RankingCache>,
    /// What `/readyz` checks: Redis, which the rankings need, and Postgres reachable and migrated, whose outage
    /// only degrades history (its routes answer 503; the API stays ready, so an outage of the history database
    /// does not pull every instance out of its load balancer). The API has no loop of its own but the admin
    /// server (each cache refresh is a task of one request).
    pub readiness: Readiness,
    /// Origins allowed to read from a browser (`TOPK_CORS_ORIGINS`; empty: none, `*`: any).
    pub cors_origins: std::sync::Arc<Vec<String>>,
}

/// Every route of the API: each module's own, merged in this one place.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .merge(rankings::router())
        .merge(history::router())
        .merge(range::router())
        .merge(videos::router())
        .merge(video_hourly::router())
        .merge(openapi::router())
        .merge(crate::page::router())
        .merge(topk_core::http::health_routes())
        // After every merge: it applies to the routes the router has when it is set.
        .method_not_allowed_fallback(topk_core::http::method_not_allowed);
    let cors = cors(&state.cors_origins);
    with_request_metrics(with_json_errors(routes), Service::Api)
        // A top 1000 is ~40 KB of JSON and shrinks about fivefold; small answers are not worth the CPU.
        .layer(
            CompressionLayer::new()
                .compress_when(DefaultPredicate::new().and(SizeAbove::new(1024))),
        )
        .layer(cors)
        .with_state(state)
}

/// CORS for the listed origins: reads only (`GET`), and the ranking's `Topk-As-Of` readable by the page.
fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([axum::http::Method::GET])
        .expose_headers([rankings::AS_OF])
        .max_age(std::time::Duration::from_secs(600))
}

/// A built API: bound, not yet serving.
pub struct Application {
    listener: TcpListener,
    admin: Option<TcpListener>,
    state: AppState,
    liveness: Liveness,
    http: topk_core::config::HttpConfig,
}

impl Application {
    /// Binds the listeners (port 0 picks a free one), connects to Redis and prepares the Postgres pool.
    pub async fn build(config: ApiConfig) -> anyhow::Result<Self> {
        topk_core::metrics::install(&[Part::Api]);
        // Addresses first: one in use is the quickest mistake to report, and needs no server.
        let listener = topk_core::serve::bind("TOPK_API_ADDR", config.addr).await?;
        let admin = match config.admin.admin_addr {
            Some(addr) => Some(topk_core::serve::bind("TOPK_ADMIN_ADDR", addr).await?),
            None => None,
        };
        let store = RedisStore::connect(&config.redis).await?;
        // Redis may come later (the rankings answer 503 meanwhile); another layout may not.
        store.check_layout_at_start().await?;
        let db = topk_core::db::pool(&config.database)?;
        let liveness = Liveness::default();
        Ok(Self {
            listener,
            admin,
            state: AppState {
                readiness: Readiness::new(liveness.clone())
                    .with_redis(store.rankings())
                    .with_postgres(db.clone(), OnFailure::Degrades("history")),
                reads: store.rankings(),
                db,
                rankings: std::sync::Arc::new(cache::RankingCache::new(
                    std::time::Duration::from_millis(config.ranking_cache_ms),
                )),
                cors_origins: std::sync::Arc::new(config.cors_origins.clone()),
            },
            liveness,
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
        let mut tasks = Supervisor::new(stop.clone(), self.liveness.clone());
        if let Some(admin) = self.admin {
            topk_core::http::admin::spawn(&mut tasks, admin, self.state.readiness.clone(), &stop);
        }
        let app = router(self.state.clone());
        let (serving, supervised) = tokio::join!(
            topk_core::serve::serve(self.listener, app, &self.http, stop.clone()),
            tasks.wait()
        );
        tracing::info!("api stopped");
        supervised.and(serving.map_err(anyhow::Error::from))
    }
}
