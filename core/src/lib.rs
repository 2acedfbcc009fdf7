//! Shared core of topk: the domain, the Redis key schema, window arithmetic, the Lua scripts and the only
//! Redis and Postgres access the services use.
//!
//! # Layout
//! - [`domain`]: parsed types from the edge (`VideoId`, `Window`, `TopK`) and ranking order and merge.
//! - [`slices`]: pure slice and window arithmetic on injected times.
//! - [`keys`]: the Redis key schema and the partition hash: the only place that formats a key.
//! - [`batch`]: log entries, their codec, and aggregation of a batch per (slice, video).
//! - [`redis`]: [`redis::RedisStore`], every Redis call (fred lives only here) and the Lua scripts in `lua/`:
//!   window hashes with leader sets (`lua/leaders.lua`), apply, retire, refill and seal.
//! - [`sealed`]: the packed form of a closed minute, which the day window's tail keeps.
//! - [`db`]: the Postgres pool, the migrations (`MIGRATOR`) and every snapshot read and write.
//! - [`history`]: `video_stats` upkeep: daily partitions, roll-ups, retention.
//! - [`http`]: the JSON error type, health answers and bearer tokens both services share.
//! - [`serve`]: the HTTP server loop with limits against slow and hostile clients.
//! - [`config`], [`telemetry`], [`shutdown`]: settings, structured logs, signal handling.
//!
//! Data moves: receiver → [`redis::RedisStore::append`] (log) → worker [`redis::RedisStore::read_log`] →
//! [`batch::aggregate`] → [`redis::RedisStore::apply`] (counts + ack in one script) → retirer
//! [`redis::RedisStore::retire`] and [`redis::RedisStore::seal_minutes`] → API [`redis::RedisStore::top`].

pub mod batch;
pub mod config;
pub mod db;
pub mod domain;
pub mod history;
pub mod http;
pub mod keys;
pub mod redis;
pub mod sealed;
pub mod serve;
pub mod shutdown;
pub mod slices;
pub mod telemetry;
