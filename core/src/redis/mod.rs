//! Every use of the Redis client (redis-rs) lives in this folder, so the client can be swapped without
//! touching the services.
//!
//! [`RedisStore`] speaks the domain. Its methods are split by concern, one file each:
//! - `append`: a batch into the per-partition log (one script on a node, one per partition on a cluster).
//! - `source`: a source's records (Kafka's) into the log exactly once, by source offset, with event times.
//! - `log`: the per-partition log (read, claim, trim).
//! - `group`: where the consumer group stands (backlog, applied-through time, active workers).
//! - `windows`: the window scripts (apply with the acknowledgement, retire, refill, seal).
//! - `rankings`: the global top K and one video's counts, for the API.
//! - `buckets`: slice and minute buckets read back (closed minutes, reference sums).
//! - `closed`: minutes closed and frozen for the snapshotter, and the late views that reach history after.
//! - `inspect`: window hashes and leader sets as they are, for tests and `verify`.
//! - `restore`: `rebuild-redis`'s restore and seeding of window state.
//! - `clock`: Redis's clock and the append deadline on it.
//! - `scripts`: the Lua scripts in `lua/`.
//! - `client`: the connection to one node or to a Redis Cluster, and where each command goes.
//! - `url`: the Redis URL, parsed once into one typed value (nodes, cluster, TLS, credentials, redacted).
//! - `tls`: the CA file a TLS server is verified against.
//! - `unreachable`: a failed connection's error, naming the server and the cause (refused, timed out, TLS).
//! - `route`: commands about a partition, and which failures are retried.
//! - `measure` (feature `bench`): the benchmark's baselines and measurements.

mod append;
mod buckets;
mod client;
mod clock;
mod closed;
mod group;
mod inspect;
mod log;
#[cfg(feature = "bench")]
mod measure;
mod rankings;
mod restore;
mod route;
mod scripts;
mod source;
mod tls;
mod unreachable;
mod url;
mod windows;

pub use append::AppendOutcome;
pub use closed::LateViews;
pub use group::LogPosition;
pub use log::LogRead;
pub use source::{
    DeadLetter, SourceAppended, SourcePartition, SourceRecord, DEAD_LETTERS_KEPT,
    DEAD_LETTER_VALUE_BYTES,
};
pub use url::RedisUrl;
pub use windows::{ApplyOutcome, LeaderCaps};

use crate::config::RedisConfig;
use crate::domain::IdempotencyKey;
use crate::keys::KeySchema;
use std::time::Duration;

/// A Redis failure, as the services need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
    /// The Redis settings cannot work (a malformed URL, an unusable CA file): the process must not start.
    #[error("{0}")]
    Config(String),
    /// The append reached Redis after its caller's deadline (Redis was frozen or slow) and wrote nothing.
    #[error("redis ran the append after its deadline; nothing was written")]
    TooLate,
    /// This process's partition count or key layout differs from the one the deployment recorded in Redis.
    #[error(
        "this deployment's Redis records {recorded}, but this process is configured with {configured}: \
         TOPK_PARTITIONS is fixed per deployment (a new count needs a new TOPK_KEY_PREFIX and a rebuild), and \
         every process must run a build with the same key layout"
    )]
    Layout {
        recorded: String,
        configured: String,
    },
    /// The append's `Idempotency-Key` was recorded for a different batch; nothing was written.
    #[error("the Idempotency-Key was used for a different batch")]
    KeyReused,
    /// Fewer replicas than `TOPK_REDIS_WAIT_REPLICAS` confirmed the entries in time (or a partition changed
    /// owner meanwhile): they are stored, but a failover now could lose them.
    #[error("only {acked} of {wanted} replicas confirmed the entries in time")]
    NotReplicated { acked: u32, wanted: u32 },
    /// A batch that may be stored in part (on Redis Cluster, where each partition's part is its own append)
    /// or whole but unconfirmed (replicas awaited): sending it again under `key` stores exactly what is
    /// missing and waits for the replicas again.
    #[error("the batch may be stored in part or whole ({cause}); send it again with Idempotency-Key {}", key.as_str())]
    Incomplete {
        key: IdempotencyKey,
        cause: Box<StoreError>,
    },
}

impl StoreError {
    /// The log's consumer group is missing: Redis lost its data (restarted empty) since the group was created.
    pub fn is_missing_group(&self) -> bool {
        matches!(self, StoreError::Redis(e) if e.code() == Some("NOGROUP"))
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The domain's view of Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: client::Connection,
    keys: KeySchema,
    caps: LeaderCaps,
    timeout: Duration,
    clock: std::sync::Arc<clock::ClockOffset>,
    scripts: scripts::Scripts,
    /// The URL names a Redis Cluster: no command may touch two partitions.
    cluster: bool,
    /// How errors name the server.
    server: String,
    /// Replicas that must confirm an append before it returns (WAIT).
    wait_replicas: u32,
    /// How long a partition remembers the key an append without one was given on a cluster.
    generated_key_retention: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .finish()
    }
}

impl RedisStore {
    /// Builds the client and starts connecting. Returns at once: while Redis is unreachable every command
    /// fails within the configured timeout, and the client keeps reconnecting in the background.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self> {
        let timeout = cfg.timeout();
        let conn = client::Connection::open(&cfg.redis_url, cfg.redis_ca_file.as_deref(), timeout)?;
        let cluster = conn.is_cluster();
        let store = Self {
            conn,
            keys: KeySchema::new(cfg.key_prefix.clone(), cfg.partitions),
            caps: LeaderCaps::default(),
            timeout,
            clock: Default::default(),
            scripts: scripts::Scripts::load(),
            cluster,
            server: cfg.redis_url.server_name(),
            wait_replicas: cfg.wait_replicas,
            generated_key_retention: Duration::from_secs(300),
        };
        // Give the first connection a moment so a healthy start is ready at once; not fatal when Redis is down.
        let _ = store.ping().await;
        Ok(store)
    }

    /// The same store remembering the keys it generates for appends without one (on a cluster) for
    /// `retention`, like producers' keys.
    pub fn with_generated_key_retention(mut self, retention: Duration) -> Self {
        self.generated_key_retention = retention;
        self
    }

    /// How errors name the Redis server (`Redis at host:port`, `Redis Cluster at ...`), without credentials.
    pub fn server_name(&self) -> String {
        self.server.clone()
    }

    /// Whether this store runs on Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The same store with other leader caps: tests use tiny ones so that trims and refills happen often.
    pub fn with_leader_caps(mut self, caps: LeaderCaps) -> Self {
        assert!(
            0 < caps.min && caps.min <= caps.keep && caps.keep < caps.max,
            "leader caps must satisfy 0 < min <= keep < max"
        );
        self.caps = caps;
        self
    }

    pub fn keys(&self) -> &KeySchema {
        &self.keys
    }

    /// Lets the connection go: it closes once the last command in flight has its answer and the last clone
    /// of the store is dropped.
    pub async fn quit(&self) {}

    /// Records this process's layout (partition count, key layout version) if the deployment has none yet,
    /// and refuses one that differs ([`StoreError::Layout`]): a process with another partition count would
    /// look for videos in the wrong partitions and drop them from the rankings, or write them there.
    pub async fn check_layout(&self) -> Result<()> {
        self.check_server_kind().await?;
        let configured = self.keys.layout_value();
        let layout = self.keys.layout();
        let _: Option<String> = self
            .on_key("SET", &layout, vec![layout.as_str(), &configured, "NX"])
            .await?;
        let recorded: Option<String> = self.on_key("GET", &layout, vec![&layout]).await?;
        match recorded {
            Some(recorded) if recorded != configured => Err(StoreError::Layout {
                recorded,
                configured,
            }),
            _ => Ok(()),
        }
    }

    /// A single-node URL that names a Redis Cluster node would reach the partitions of that node only (the
    /// others answer MOVED): refused, saying which URL to use.
    async fn check_server_kind(&self) -> Result<()> {
        if self.cluster {
            return Ok(());
        }
        // A server that refuses INFO (some managed services rename it) is taken at its URL's word.
        let Ok(info) = self
            .on_key::<String, _>("INFO", &self.keys.layout(), vec!["cluster"])
            .await
        else {
            return Ok(());
        };
        if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
            return Err(StoreError::Config(format!(
                "{} is a Redis Cluster node: set TOPK_REDIS_URL to redis-cluster://host:port?node=host:port&... \
                 (rediss-cluster:// with TLS) to use the cluster",
                self.server_name()
            )));
        }
        Ok(())
    }

    /// [`Self::check_layout`] at a process's start: a layout that differs, or settings that cannot work (a
    /// cluster node behind a single-node URL, credentials refused), are errors (the process must not
    /// start); Redis not answering yet is only logged, since a service may start before its Redis.
    pub async fn check_layout_at_start(&self) -> Result<()> {
        match self.check_layout().await {
            Err(e @ (StoreError::Layout { .. } | StoreError::Config(_))) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "could not check the deployment's layout in Redis yet");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Round trip to Redis (readiness).
    pub async fn ping(&self) -> Result<()> {
        let _: String = self
            .on_key("PING", &self.keys.log(0), Vec::<String>::new())
            .await?;
        Ok(())
    }
}
