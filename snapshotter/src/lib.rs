//! topk-snapshotter: Postgres as the system of record for history and recovery.
//!
//! # Layout
//! - [`cli`]: subcommands and settings; [`run`] (in `commands.rs`) runs one subcommand and prints its report.
//! - [`jobs`]: the steps, on injected time: closed minutes to `video_stats`/`video_totals`
//!   ([`jobs::snapshot_minutes`]), window rankings to `global_topk_snapshots` ([`jobs::snapshot_rankings`]),
//!   roll-ups and retention of `video_stats` ([`jobs::maintain_history`]).
//! - [`leader`]: the advisory lock that makes one snapshotter the writer.
//! - [`lag`]: `topk_snapshot_lag_seconds`, how far history in Postgres trails now (every snapshotter).
//! - `run` (in `commands.rs`) supervises the schedule, the lag watch and the admin address (health, metrics).
//! - [`run_scheduled`] (in `schedule.rs`): the jobs on tokio-cron-scheduler while the lock is held,
//!   with a watchdog that runs the minute job itself when the schedule stalls (missed ticks are dropped by the
//!   scheduler; catch-up makes that harmless).
//! - [`rebuild`] restores Redis from Postgres (`rebuild-redis`).
//! - [`verify`] reports every difference between Redis windows, their slices and Postgres.
//!
//! Data moves Redis → [`jobs`] → Postgres on the schedule, and Postgres → [`rebuild`] → Redis after a loss.

pub mod cli;
mod commands;
pub mod jobs;
pub mod lag;
pub mod leader;
pub mod rebuild;
mod schedule;
pub mod verify;

pub use commands::run;
pub use schedule::run_scheduled;
