//! Late views into history: views applied after the snapshotter wrote their minute are added to the minute's
//! `video_stats` row, to the period totals that cover it and to `video_totals`, idempotently, under the
//! partition's `late_through` mark.

use super::minutes::{add_to_totals, lock_partition};
use super::{minute_start, periods};
use crate::batch::EntryId;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};

/// Adds `views` (`(video, minute, views)`, from late entries up to `through`) to `video_stats` and
/// `video_totals`, and moves the partition's `late_through` to `through`, in one transaction. Entries at or
/// before the mark are added already: the call then changes nothing and returns false.
#[tracing::instrument(level = "debug", skip_all, fields(%partition, views = views.len(), %through))]
pub async fn add_late_views(
    pool: &PgPool,
    partition: u16,
    views: &[(String, i64, u64)],
    through: EntryId,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The same lock as the minute writes of this partition: the mark and the rows move together.
    lock_partition(&mut tx, partition).await?;
    // Late views land in periods the totals may cover already: they are added there too, under this mark.
    let coverage = periods::lock_coverage(&mut tx).await?;
    let mark: Option<(String,)> = sqlx::query_as(
        "SELECT late_through FROM ingest_checkpoints WHERE partition = $1 FOR UPDATE",
    )
    .bind(i32::from(partition))
    .fetch_optional(&mut *tx)
    .await?;
    // Late views are added to minutes the snapshotter wrote, so the checkpoint row exists.
    let Some(mark) = mark.and_then(|(m,)| EntryId::parse(&m)) else {
        return Ok(false);
    };
    if mark >= through {
        return Ok(false);
    }
    let mut rows: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    let mut totals: HashMap<&str, i64> = HashMap::new();
    for (video, minute, n) in views {
        let n = i64::try_from(*n).unwrap_or(i64::MAX);
        *rows.entry((video.as_str(), *minute)).or_default() += n;
        *totals.entry(video.as_str()).or_default() += n;
    }
    let ids: Vec<&str> = rows.keys().map(|(v, _)| *v).collect();
    let starts: Vec<DateTime<Utc>> = rows.keys().map(|(_, m)| minute_start(*m)).collect();
    let counts: Vec<i64> = rows.values().copied().collect();
    sqlx::query(
        "INSERT INTO video_stats (video_id, bucket_start, views) \
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[]) \
         ON CONFLICT (video_id, bucket_start) DO UPDATE SET views = video_stats.views + EXCLUDED.views",
    )
    .bind(&ids)
    .bind(&starts)
    .bind(&counts)
    .execute(&mut *tx)
    .await?;
    let changes = rows.iter().map(|(&(video, minute), &n)| (video, minute, n));
    periods::add_covered(&mut tx, &coverage, changes).await?;
    add_to_totals(&mut tx, totals).await?;
    sqlx::query(
        "UPDATE ingest_checkpoints SET late_through = $2, updated_at = now() WHERE partition = $1",
    )
    .bind(i32::from(partition))
    .bind(through.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
