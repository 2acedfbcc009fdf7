//! Settings of `topk-api` (flags or `TOPK_*` environment variables).

use clap::Parser;
use std::net::SocketAddr;
use topk_core::config::{AdminConfig, DatabaseConfig, HttpConfig, RedisConfig};
use topk_core::telemetry::LogConfig;

/// topk-api: the most viewed videos of the last minute, hour, day and of all time.
#[derive(Parser, Debug, Clone)]
#[command(name = "topk-api", version, about)]
pub struct ApiConfig {
    #[command(flatten)]
    pub redis: RedisConfig,
    /// Postgres, for history (connected lazily: rankings work without it).
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub admin: AdminConfig,
    #[command(flatten)]
    pub log: LogConfig,
    /// Where the API listens.
    #[arg(long, env = "TOPK_API_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// How long a window's merged top list is shared by requests, in milliseconds (0: read Redis every time).
    #[arg(long, env = "TOPK_RANKING_CACHE_MS", default_value_t = 200)]
    pub ranking_cache_ms: u64,
    /// Origins whose pages may read the API from a browser (CORS), comma-separated, e.g.
    /// `https://dash.example.com,http://localhost:3000`; `*` for any. Unset: none (same-origin only, as the
    /// leaderboard page at `/` is).
    #[arg(long, env = "TOPK_CORS_ORIGINS", value_delimiter = ',', value_parser = cors_origin)]
    pub cors_origins: Vec<String>,
}

/// One CORS origin: `*`, or `scheme://host[:port]` with no path (what a browser sends in `Origin`).
fn cors_origin(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let valid = raw == "*"
        || raw.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https")
                && !rest.is_empty()
                && !rest.contains(['/', '?', '#', ' ', '*'])
        });
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "TOPK_CORS_ORIGINS: {raw:?} is not an origin: use scheme://host[:port] without a path (e.g. \
             https://dash.example.com), or *"
        ))
    }
}
