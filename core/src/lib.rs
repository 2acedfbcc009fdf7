//! Shared core of topk: the domain, the Redis key schema, window arithmetic, the Lua scripts and the only
//! Redis and Postgres access the services use.
//!
//! # Layout
//! - [`domain`]: parsed types from the edge (`VideoId`, `Window`, `TopK`) and the ranking order.
//! - [`ranking`]: the exact merge of the partitions' rankings, and how far to read each partition for it.
//! - [`slices`]: pure slice and window arithmetic on injected times.
//! - [`keys`]: the Redis key schema and the partition hash: the only place that formats a key.
//! - [`lines`]: the `<video id> <count>` line format of log entries, minute buckets and sealed minutes.
//! - [`batch`]: log entries, their codec, and aggregation of a batch per (slice, video).
//! - [`sealed`]: the packed form of a closed minute, which the day window's tail keeps.
//! - [`wire`]: the view wire format (a batch's JSON elements) that HTTP and Kafka both parse.
//! - [`redis`]: every Redis call (the Redis client, redis-rs, lives only here), behind one handle per role:
//!   [`redis::LogWriter`], [`redis::WindowApplier`], [`redis::LogState`], [`redis::RankingReads`],
//!   [`redis::HistoryFeed`], [`redis::Recovery`], handed out by [`redis::RedisStore`]; the Lua scripts in
//!   `redis/lua/`.
//! - [`db`]: Postgres: the pool, the migrations (`MIGRATOR`), minutes and checkpoints, ranking snapshots,
//!   restore reads and `video_stats` retention, one file each.
//! - [`http`]: the JSON error type, health routes, bearer tokens and the server loop both services share.
//! - [`supervise`]: background loops supervised: one that dies stops its process with a non-zero exit.
//! - [`metrics`]: every Prometheus metric topk exports (the catalog), the recorder and `/metrics`'s text.
//! - [`config`], [`telemetry`], [`shutdown`]: settings, structured logs, signal handling.
//!
//! Data moves: receiver ([`wire::parse_batch`]) → [`redis::LogWriter::append`] (log) → worker
//! [`redis::WindowApplier::step`] (read, [`aggregate::aggregate`], apply with the acknowledgement in one script)
//! → retirer [`redis::WindowApplier::retire_window`] and [`redis::WindowApplier::seal_all`] → API
//! [`redis::RankingReads::top`]; snapshotter [`redis::HistoryFeed::close_minutes`] → [`db::write_minutes`].

pub mod aggregate;
pub mod batch;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod keys;
pub mod lines;
pub mod metrics;
pub mod ranking;
pub mod redis;
pub mod sealed;
pub mod shutdown;
pub mod slices;
pub mod supervise;
pub mod telemetry;
pub mod wire;

// The server loop is used by both services by this short path.
pub use http::serve;
