//! Subcommands and settings of `topk-snapshotter` (flags or `TOPK_*` environment variables).

use clap::{Args, Parser, Subcommand};
use topk_core::config::{AdminConfig, DatabaseConfig, RedisConfig};
use topk_core::telemetry::LogConfig;

/// topk-snapshotter: writes per-minute history and window rankings to Postgres, and rebuilds Redis from it.
#[derive(Parser, Debug)]
#[command(name = "topk-snapshotter", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: LogConfig,
}

/// The subcommands; `run` is the service, the others run once and exit.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
    /// Run the jobs on their schedules (one writer at a time; others stand by).
    Run(RunArgs),
    /// Run every job once and exit.
    Snapshot(SnapshotArgs),
    /// Rebuild Redis's windows from Postgres after a loss (stop the ingest workers first).
    RebuildRedis(RebuildArgs),
    /// Compare Redis windows with the sum of their slices and with Postgres; exit non-zero on any difference.
    Verify(StoreArgs),
}

/// Settings of `migrate`: Postgres only.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The database to migrate.
    #[command(flatten)]
    pub database: DatabaseConfig,
}

/// Settings of the commands that use Redis and Postgres.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Redis, whose windows and minute buckets are read or restored.
    #[command(flatten)]
    pub redis: RedisConfig,
    /// Postgres, the history.
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Cron schedule (with seconds) of the minute job: closed minutes to `video_stats` and `video_totals`.
    #[arg(long, env = "TOPK_MINUTE_SCHEDULE", value_parser = cron_schedule, default_value = "5 * * * * *")]
    pub minute_schedule: String,
    /// Cron schedule of the ranking snapshots (top 1000 of each window).
    #[arg(long, env = "TOPK_TOPK_SCHEDULE", value_parser = cron_schedule, default_value = "10 */5 * * * *")]
    pub topk_schedule: String,
    /// Cron schedule of the history upkeep: roll-ups and retention.
    #[arg(
        long,
        env = "TOPK_MAINTENANCE_SCHEDULE",
        value_parser = cron_schedule,
        default_value = "30 17 * * * *"
    )]
    pub maintenance_schedule: String,
    /// Minute rows older than this many days are rolled up into hourly rows.
    #[arg(long, env = "TOPK_HOURLY_AFTER_DAYS", default_value_t = 30)]
    pub hourly_after_days: u32,
    /// Hourly rows older than this many days are rolled up into daily rows.
    #[arg(long, env = "TOPK_DAILY_AFTER_DAYS", default_value_t = 365)]
    pub daily_after_days: u32,
    /// Days of `video_stats` kept; older daily partitions are dropped (0 keeps everything).
    #[arg(long, env = "TOPK_RETENTION_DAYS", default_value_t = 1095)]
    pub retention_days: u32,
}

impl StoreArgs {
    /// The history upkeep's policy, from the three age settings.
    pub fn retention(&self) -> topk_core::db::retention::RetentionPolicy {
        topk_core::db::retention::RetentionPolicy {
            hourly_after_days: self.hourly_after_days,
            daily_after_days: self.daily_after_days,
            drop_after_days: self.retention_days,
        }
    }
}

/// Settings of `run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Redis, Postgres and the schedules.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Health, readiness and metrics (a standby is ready too: it takes over when the writer stops).
    #[command(flatten)]
    pub admin: AdminConfig,
}

/// Settings of `snapshot`.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// Redis, Postgres and the schedules (only the stores are used).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Run every job once and exit (the only mode so far).
    #[arg(long, default_value_t = true)]
    pub once: bool,
    /// How long to wait for the snapshotter lock while a running snapshotter holds it, before failing.
    #[arg(long, env = "TOPK_LOCK_WAIT_SECS", default_value_t = 30)]
    pub lock_wait_secs: u64,
}

/// Settings of `rebuild-redis`.
#[derive(Args, Debug)]
pub struct RebuildArgs {
    /// Redis and Postgres (the schedules are not used).
    #[command(flatten)]
    pub store: StoreArgs,
    /// How long to wait for the snapshotter lock while a running snapshotter holds it, before failing.
    #[arg(long, env = "TOPK_LOCK_WAIT_SECS", default_value_t = 30)]
    pub lock_wait_secs: u64,
    /// Rebuild even though ingest workers read the log within the last 30 s (they would apply entries
    /// while the windows are replaced, and count them twice).
    #[arg(long)]
    pub force: bool,
}

/// A cron schedule with seconds, checked with the scheduler's own parser when the command line is read, so a
/// bad one stops the process at start instead of a standby at failover.
fn cron_schedule(raw: &str) -> Result<String, String> {
    tokio_cron_scheduler::Job::new(raw, |_, _| {})
        .map(|_| raw.to_owned())
        .map_err(|_| {
            "not a cron schedule with seconds: six fields, sec min hour day-of-month month day-of-week, \
             e.g. \"5 * * * * *\""
                .to_owned()
        })
}
