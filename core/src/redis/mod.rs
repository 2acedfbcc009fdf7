//! Every use of the Redis client (redis-rs) lives in this folder, so the client can be swapped without
//! touching the services.
//!
//! One connection serves several roles, and each role gets a narrow handle over it, so a caller holds only
//! what it may use (a line of the API cannot reach the rebuild) and a reader sees from the type what a module
//! does. [`RedisStore::connect`] opens the connection; its accessors hand out the handles:
//!
//! | handle | held by | what it does |
//! |---|---|---|
//! | [`LogWriter`] (`writer/`) | the receiver, the Kafka role | appends batches and a source's records to the log, dead letters |
//! | [`WindowApplier`] (`applier/`) | workers, the retirer | reads the log and applies it with its acknowledgement ([`WindowApplier::step`]), retires and seals |
//! | [`LogState`] (`log_state.rs`) | backpressure, metrics, the snapshotter | where the log and its consumer group stand |
//! | [`RankingReads`] (`rankings.rs`) | the API, the snapshotter | the global top K and one video's counts |
//! | [`HistoryFeed`] (`history/`) | the snapshotter | minutes closed and frozen, late views, buckets read back |
//! | [`Recovery`] (`recovery/`) | `rebuild-redis`, `verify`, seeding | restore, seed and inspect window state |
//! | `Measures` (`measure.rs`, feature `bench`) | the benchmark | baselines and measurements |
//!
//! Every handle reaches the few things all roles share through [`Shared`] (the key schema, Redis's clock, a
//! ping). `info.rs` parses Redis's `INFO` text, for every place that reads it. Underneath, `connection/` holds the client (one node or a Redis Cluster), where each command goes
//! and which failures are retried, the parsed URL, TLS, connection errors, Redis's clock and the Lua
//! scripts of `lua/`.

mod applier;
mod connection;
mod history;
mod info;
mod log_state;
#[cfg(feature = "bench")]
mod measure;
mod rankings;
mod recovery;
mod store;
mod writer;

pub use applier::{
    ApplyOutcome, LeaderCaps, LogRead, StepPlan, StepReport, StepSource, WindowApplier,
    LATE_RETENTION,
};
pub use connection::url::RedisUrl;
pub use history::{HistoryFeed, LateViews};
pub use info::{Info, ReplicaInfo};
pub use log_state::{LogPosition, LogState};
#[cfg(feature = "bench")]
pub use measure::Measures;
pub use rankings::{RankingReads, TopRead};
pub use recovery::Recovery;
pub use store::{RedisStore, Shared};
pub use writer::{
    AppendOutcome, AppendRequest, DeadLetter, LogWriter, SourceAppended, SourceBatchAppended,
    SourcePartition, SourceRecord, SourceViews, DEAD_LETTERS_KEPT, DEAD_LETTER_VALUE_BYTES,
};

use crate::domain::IdempotencyKey;

/// A Redis failure, as the services need to tell them apart.
#[derive(Debug, Clone, thiserror::Error)]
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
