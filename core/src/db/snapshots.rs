//! `global_topk_snapshots`: each window's ranking stored every few minutes, and read back by time; and
//! `ranking_snapshots`, one row per snapshot taken, so an empty window's snapshot is recorded too.

use super::HistoryError;
use crate::domain::{RankedVideo, Window};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Stores one window's ranking at `at`, and that a snapshot was taken then, in one transaction (idempotent:
/// the same snapshot time is written once). An empty ranking writes no rank rows but is recorded, so history
/// answers it as empty rather than with an older ranking.
#[tracing::instrument(level = "debug", skip_all, fields(window = window.as_str(), %at, videos = ranking.len()))]
pub async fn write_topk_snapshot(
    pool: &PgPool,
    window: Window,
    at: DateTime<Utc>,
    window_start: Option<DateTime<Utc>>,
    ranking: &[RankedVideo],
) -> Result<u64, sqlx::Error> {
    let ranks: Vec<i32> = (1..=ranking.len() as i32).collect();
    let ids: Vec<&str> = ranking.iter().map(|r| r.video_id.as_str()).collect();
    let views: Vec<i64> = ranking.iter().map(|r| r.views as i64).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO ranking_snapshots (time_window, snapshot_time, videos, window_start, window_end) \
         VALUES ($1, $2, $3, $4, $2) ON CONFLICT DO NOTHING",
    )
    .bind(window.as_str())
    .bind(at)
    .bind(ranks.len() as i32)
    .bind(window_start)
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query(
        "INSERT INTO global_topk_snapshots (time_window, snapshot_time, rank, video_id, views, window_start, window_end) \
         SELECT $1, $2, r, v, n, $3, $2 FROM UNNEST($4::int[], $5::text[], $6::bigint[]) AS t(r, v, n) \
         ON CONFLICT DO NOTHING",
    )
    .bind(window.as_str())
    .bind(at)
    .bind(window_start)
    .bind(&ranks)
    .bind(&ids)
    .bind(&views)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// A snapshot read back: when it was taken, and its ranking.
pub type Snapshot = (DateTime<Utc>, Vec<RankedVideo>);

/// The latest snapshot of `window` at or before `at`: its time and its top `k`. `None` before the first one.
#[tracing::instrument(level = "debug", skip_all, fields(window = window.as_str(), %at, %k))]
pub async fn topk_history(
    pool: &PgPool,
    window: Window,
    at: DateTime<Utc>,
    k: usize,
) -> Result<Option<Snapshot>, HistoryError> {
    HistoryError::naming(pool, read_topk_history(pool, window, at, k)).await
}

async fn read_topk_history(
    pool: &PgPool,
    window: Window,
    at: DateTime<Utc>,
    k: usize,
) -> Result<Option<Snapshot>, sqlx::Error> {
    let latest: Option<(DateTime<Utc>,)> = sqlx::query_as(
        "SELECT snapshot_time FROM ranking_snapshots WHERE time_window = $1 AND snapshot_time <= $2 \
         ORDER BY snapshot_time DESC LIMIT 1",
    )
    .bind(window.as_str())
    .bind(at)
    .fetch_optional(pool)
    .await?;
    let Some((time,)) = latest else {
        return Ok(None);
    };
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT video_id, views FROM global_topk_snapshots WHERE time_window = $1 AND snapshot_time = $2 \
         ORDER BY rank LIMIT $3",
    )
    .bind(window.as_str())
    .bind(time)
    .bind(k as i64)
    .fetch_all(pool)
    .await?;
    Ok(Some((
        time,
        rows.into_iter()
            .map(|(video_id, views)| RankedVideo {
                video_id,
                views: views.max(0) as u64,
            })
            .collect(),
    )))
}
