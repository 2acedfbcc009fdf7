//! Typed settings shared by the binaries: each is a flag and a `TOPK_*` environment variable
//! (documented in `.env.example`).

use std::time::Duration;

/// Where Redis is and how the deployment's keys are laid out.
#[derive(clap::Args, Debug, Clone)]
pub struct RedisConfig {
    /// Redis (single node) URL.
    #[arg(long, env = "TOPK_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Number of partitions, fixed per deployment: videos hash to one of them.
    #[arg(long, env = "TOPK_PARTITIONS", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub partitions: u16,
    /// Prefix of every Redis key, so deployments (or tests) can share one Redis.
    #[arg(long, env = "TOPK_KEY_PREFIX", default_value = "topk")]
    pub key_prefix: String,
    /// Timeout of every Redis command and of connecting, in milliseconds (the client's default is none).
    #[arg(long, env = "TOPK_REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
}

impl RedisConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

/// Where Postgres is.
#[derive(clap::Args, Debug, Clone)]
pub struct DatabaseConfig {
    /// Postgres URL.
    #[arg(
        long,
        env = "TOPK_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/topk"
    )]
    pub database_url: String,
}
