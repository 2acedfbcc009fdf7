//! Typed settings shared by the binaries: each is a flag and a `TOPK_*` environment variable
//! (documented in `.env.example`).

use crate::redis::RedisUrl;
use std::time::Duration;

/// Where Redis is and how the deployment's keys are laid out.
#[derive(clap::Args, Debug, Clone)]
pub struct RedisConfig {
    /// Redis URL: `redis://[user:password@]host:port` for one node,
    /// `redis-cluster://[user:password@]host:port?node=host:port&node=...` for Redis Cluster (any reachable
    /// nodes; the rest are discovered; the credentials apply to every node). `rediss://` and
    /// `rediss-cluster://` connect with TLS and verify the server's certificate (against
    /// `TOPK_REDIS_CA_FILE`, else the system's roots) and that it names the URL's host. Parsed here, once;
    /// it prints with its password as `***`.
    #[arg(long, env = "TOPK_REDIS_URL", default_value = "redis://127.0.0.1:6379", value_parser = RedisUrl::parse)]
    pub redis_url: RedisUrl,
    /// CA certificate (PEM) that signs the Redis server's certificate, for rediss:// ; unset: the system's
    /// roots. Set with a URL that is not `rediss://` or `rediss-cluster://`, the process refuses to start
    /// (the operator meant TLS and would not get it).
    #[arg(long, env = "TOPK_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Number of partitions, fixed per deployment: videos hash to one of them.
    #[arg(long, env = "TOPK_PARTITIONS", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub partitions: u16,
    /// Prefix of every Redis key, so deployments (or tests) can share one Redis.
    #[arg(long, env = "TOPK_KEY_PREFIX", default_value = "topk")]
    pub key_prefix: String,
    /// Timeout of every Redis command and of connecting, in milliseconds (the client's default is none).
    #[arg(long, env = "TOPK_REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
    /// Replicas that must confirm a batch's log entries (WAIT) before it is answered 202; 0 answers once the
    /// primary has them (a failover right after can lose them).
    #[arg(long, env = "TOPK_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub wait_replicas: u32,
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
        default_value = "postgres://postgres@127.0.0.1:5432/topk",
        value_parser = postgres_url
    )]
    pub database_url: String,
}

/// A Postgres URL, checked when the settings are read (sqlx would only say so on the first query).
fn postgres_url(raw: &str) -> Result<String, String> {
    let scheme = raw.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("postgres" | "postgresql") => Ok(raw.to_owned()),
        _ => Err(format!(
            "TOPK_DATABASE_URL must be a postgres:// (or postgresql://) URL, like \
             postgres://user@host:5432/topk?sslmode=verify-full&sslrootcert=ca.pem; got scheme {:?}",
            scheme.unwrap_or("(none)")
        )),
    }
}

/// Limits of an HTTP server against slow, hostile or simply too many clients (SECURITY.md lists them).
#[derive(clap::Args, Debug, Clone)]
pub struct HttpConfig {
    /// How long a client may take to send a request's headers, and how long an idle keep-alive connection
    /// stays open, in milliseconds: the connection is closed after it (a slowloris client cannot hold it).
    #[arg(long, env = "TOPK_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,
    /// How long one request may take from its headers to its answer, body included, in milliseconds
    /// (408 and the connection closed after it).
    #[arg(long, env = "TOPK_REQUEST_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// Largest request head (request line and headers), in bytes (431 above).
    #[arg(long, env = "TOPK_MAX_HEADER_BYTES", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_header_bytes: u32,
    /// Most headers one request may have (431 above).
    #[arg(long, env = "TOPK_MAX_HEADERS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_headers: u32,
    /// Most client connections open at once; further ones wait in the listen queue until one closes.
    #[arg(long, env = "TOPK_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Most requests handled at once; any more are answered 503 with `Retry-After` straight away, so memory
    /// stays bounded when clients outpace the service. `/healthz` and `/metrics` are not counted: they answer
    /// whatever the load.
    #[arg(long, env = "TOPK_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
}

impl HttpConfig {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

impl Default for HttpConfig {
    /// The flags' defaults, or their `TOPK_*` variables where set (for tests and tools that build a server
    /// without a command line).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            http: HttpConfig,
        }
        <Only as clap::Parser>::parse_from(["topk"]).http
    }
}

/// Where a process serves its health, readiness and metrics on an address of their own.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AdminConfig {
    /// Address for `/healthz`, `/readyz` and `/metrics` alone: how a process that serves no other HTTP (an
    /// ingest worker, `topk-snapshotter run`) is probed and scraped. The API and the ingest receiver serve
    /// them on their own address too. Unset: no admin address.
    #[arg(long, env = "TOPK_ADMIN_ADDR")]
    pub admin_addr: Option<std::net::SocketAddr>,
}
