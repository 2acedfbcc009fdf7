//! One video's history: its views per hour from `video_stats` (minute rows, and the hourly rows they are
//! rolled up into after `TOPK_HOURLY_AFTER_DAYS`), for the API's per-video chart.

use super::HistoryError;
use chrono::{DateTime, Duration, DurationRound, Utc};
use sqlx::PgPool;

/// `video`'s views in each of the `hours` whole hours (UTC) that end at the hour containing `until`, oldest
/// first, 0 for an hour without views. The current hour holds only the minutes written so far (history trails
/// now by the snapshot lag, a minute or two).
#[tracing::instrument(level = "debug", skip_all, fields(%video, %hours))]
pub async fn hourly_views(
    pool: &PgPool,
    video: &str,
    until: DateTime<Utc>,
    hours: u32,
) -> Result<Vec<(DateTime<Utc>, u64)>, HistoryError> {
    HistoryError::naming(pool, read_hourly_views(pool, video, until, hours)).await
}

async fn read_hourly_views(
    pool: &PgPool,
    video: &str,
    until: DateTime<Utc>,
    hours: u32,
) -> Result<Vec<(DateTime<Utc>, u64)>, sqlx::Error> {
    let last = until
        .duration_trunc(Duration::hours(1))
        .expect("an hour divides any time");
    let first = last - Duration::hours(i64::from(hours.max(1)) - 1);
    let rows: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT date_trunc('hour', bucket_start, 'UTC') AS hour, SUM(views)::bigint \
         FROM video_stats WHERE video_id = $1 AND bucket_start >= $2 AND bucket_start < $3 \
         GROUP BY 1",
    )
    .bind(video)
    .bind(first)
    .bind(last + Duration::hours(1))
    .fetch_all(pool)
    .await?;
    Ok((0..i64::from(hours.max(1)))
        .map(|i| {
            let hour = first + Duration::hours(i);
            let views = rows
                .iter()
                .find(|(h, _)| *h == hour)
                .map_or(0, |(_, v)| *v as u64);
            (hour, views)
        })
        .collect())
}
