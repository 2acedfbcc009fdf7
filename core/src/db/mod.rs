//! Postgres: the pool, the migrations, and every statement the services run, one file per table or concern.
//!
//! - [`minutes`]: per-minute `video_stats`, `video_totals` and the checkpoints (the snapshotter's write path).
//! - [`snapshots`]: `global_topk_snapshots`, written and read by time.
//! - [`restore`]: what `rebuild-redis` reads back.
//! - [`late`]: views applied after their minute was written, added to its row and the totals.
//! - [`periods`]: per-hour and per-day totals of `video_stats`, added once every partition has written a period.
//! - [`period_check`]: whether those totals agree with `video_stats` (`verify`).
//! - [`range`]: the exact top K of any past range, from those totals and `video_stats`.
//! - [`lock`]: the advisory lock that lets one snapshotter write at a time.
//! - [`retention`]: `video_stats` upkeep: daily partitions, roll-ups, retention.
//! - [`video_history`]: one video's views per hour, for the API's per-video chart.
//! - [`migrations`]: whether the database has every migration of this build (readiness).
//! - [`mod@unreachable`]: a failed connection's error naming the server and the cause; [`HistoryError`].

pub mod late;
pub mod lock;
pub mod migrations;
pub mod minutes;
pub mod period_check;
pub mod periods;
pub mod range;
pub mod restore;
pub mod retention;
pub mod snapshots;
pub mod unreachable;
pub mod video_history;

pub use late::add_late_views;
pub use lock::{SnapshotterLock, SNAPSHOTTER_LOCK};
pub use migrations::pending_migrations;
pub use minutes::{checkpoints, write_minute, write_minutes, Checkpoint, Written};
pub use restore::{read_restore_source, totals, RestoreSource};
pub use snapshots::{topk_history, write_topk_snapshot};
pub use unreachable::HistoryError;

use crate::config::DatabaseConfig;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

/// The numbered migrations of `migrations/`, embedded at build time (no database needed to build).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a pool; connecting is lazy so a service starts while Postgres is down and reports it in `/readyz`.
/// TLS comes from the URL (sqlx, rustls): `sslmode=verify-full&sslrootcert=ca.pem` verifies the server's
/// certificate against that CA (without `sslrootcert`, against the bundled web roots) and its host name.
pub fn pool(cfg: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(&cfg.database_url)
}

/// Applies every pending migration.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// The start of minute `m` (minutes since the epoch).
pub fn minute_start(m: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(m * crate::slices::MINUTE_MS)
        .single()
        .expect("minute in range")
}
