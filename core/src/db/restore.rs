//! What `rebuild-redis` reads back from Postgres: the minutes of the day window's span and the all-time totals.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Minute rows of the given videos' partition since `since` (for rebuilding Redis), grouped by minute.
pub async fn minutes_since(
    pool: &PgPool,
    since: DateTime<Utc>,
    through: DateTime<Utc>,
) -> Result<Vec<(String, DateTime<Utc>, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT video_id, bucket_start, views FROM video_stats WHERE bucket_start > $1 AND bucket_start <= $2")
        .bind(since)
        .bind(through)
        .fetch_all(pool)
        .await
}

/// Every video's all-time total.
pub async fn totals(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT video_id, total_views FROM video_totals")
        .fetch_all(pool)
        .await
}
