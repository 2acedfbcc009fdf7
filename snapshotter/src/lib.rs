//! topk-snapshotter: Postgres as the system of record for history and recovery.
//!
//! # Layout
//! - [`cli`]: subcommands and settings.
//! - [`jobs`]: the steps, on injected time: closed minutes to `video_stats`/`video_totals`
//!   ([`jobs::snapshot_minutes`]), window rankings to `global_topk_snapshots` ([`jobs::snapshot_rankings`]).
//! - [`leader`]: the advisory lock that makes one snapshotter the writer.
//! - [`rebuild`] restores Redis from Postgres (`rebuild-redis`).
//! - [`jobs::maintain_history`]: roll-ups and retention of `video_stats` (hourly).
//! - [`verify`] reports every difference between Redis windows, their slices and Postgres.
//! - [`run_scheduled`]: the jobs on tokio-cron-scheduler, with a watchdog that runs them itself when the
//!   schedule stalls (missed ticks are dropped by the scheduler; catch-up makes that harmless).

pub mod cli;
mod commands;
pub mod jobs;
pub mod leader;
pub mod rebuild;
mod schedule;
pub mod verify;

pub use commands::run;
pub use schedule::run_scheduled;
