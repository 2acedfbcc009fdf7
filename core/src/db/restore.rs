//! What `rebuild-redis` reads back from Postgres: the checkpoints, the minutes of the day window's span and the
//! all-time totals, as one consistent picture.

use super::minutes::{checkpoints, Checkpoint};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;

/// Everything a rebuild restores, read at one moment of the database.
#[derive(Debug, Default)]
pub struct RestoreSource {
    /// Every partition's checkpoint: what the minutes and totals cover.
    pub checkpoints: BTreeMap<u16, Checkpoint>,
    /// `(video, minute start, views)` rows in `(since, through]`.
    pub minutes: Vec<(String, DateTime<Utc>, i64)>,
    /// Every video's all-time total.
    pub totals: Vec<(String, i64)>,
}

/// Reads the checkpoints, the minute rows in `(since, through]` and the totals in one `REPEATABLE READ`
/// transaction: a minute job committing meanwhile is either wholly in all three or in none, so the totals
/// never count a minute that the checkpoints say the log must replay.
#[tracing::instrument(level = "debug", skip_all, fields(%since, %through))]
pub async fn read_restore_source(
    pool: &PgPool,
    since: DateTime<Utc>,
    through: DateTime<Utc>,
) -> Result<RestoreSource, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let checkpoints = checkpoints(&mut *tx).await?;
    let minutes = sqlx::query_as(
        "SELECT video_id, bucket_start, views FROM video_stats WHERE bucket_start > $1 AND bucket_start <= $2",
    )
    .bind(since)
    .bind(through)
    .fetch_all(&mut *tx)
    .await?;
    let totals = sqlx::query_as("SELECT video_id, total_views FROM video_totals")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(RestoreSource {
        checkpoints,
        minutes,
        totals,
    })
}

/// Every video's all-time total (`verify` compares them with the all-time window).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn totals(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT video_id, total_views FROM video_totals")
        .fetch_all(pool)
        .await
}
