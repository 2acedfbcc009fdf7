//! `video_stats` and `video_totals` written minute by minute, and the checkpoints that say what they cover:
//! the snapshotter's write path (`COPY`, with an upsert fallback) and the checkpoint a rebuild replays after.

use super::{minute_start, periods, SNAPSHOTTER_LOCK};
use crate::batch::EntryId;
use crate::domain::RankedVideo;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};

/// What Postgres covers for one partition: every minute up to `minute_through` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub minute_through: i64,
    /// The newest log entry the written minutes cover; a rebuild replays the log after it.
    pub last_entry_id: EntryId,
    /// The newest entry of the partition's late stream added to history.
    pub late_through: EntryId,
}

/// Every partition's checkpoint.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn checkpoints<'e>(
    db: impl sqlx::PgExecutor<'e>,
) -> Result<BTreeMap<u16, Checkpoint>, sqlx::Error> {
    let rows: Vec<(i32, String, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT partition, last_entry_id, minute_through, late_through FROM ingest_checkpoints",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(p, id, through, late)| {
            Some((
                u16::try_from(p).ok()?,
                Checkpoint {
                    minute_through: crate::slices::minute_of(through.timestamp_millis()),
                    last_entry_id: EntryId::parse(&id)?,
                    late_through: EntryId::parse(&late)?,
                },
            ))
        })
        .collect())
}

/// Writes one closed minute of one partition (see [`write_minutes`]). Returns whether it was written (false:
/// the checkpoint already covers it).
#[tracing::instrument(level = "debug", skip_all, fields(%partition, %minute))]
pub async fn write_minute(
    pool: &PgPool,
    partition: u16,
    minute: i64,
    rows: &[RankedVideo],
) -> Result<bool, sqlx::Error> {
    let written = write_minutes(pool, partition, &[(minute, rows.to_vec())], minute).await?;
    Ok(written.checkpoint_moved)
}

/// What one [`write_minutes`] call wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Minutes written (those past the checkpoint).
    pub minutes: u64,
    /// Rows of those minutes, each in `video_stats` once.
    pub rows: u64,
    /// Whether the checkpoint moved (false: another writer had already written everything).
    pub checkpoint_moved: bool,
    /// Whether the rows went through the upsert path because the bulk load met an existing row.
    pub upserted: bool,
}

/// How the minute rows go into `video_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatsPath {
    /// `COPY ... FROM STDIN (FORMAT binary)`: plain inserts, the fast path; fails on an existing row.
    Copy,
    /// `INSERT ... ON CONFLICT DO UPDATE`: replaces existing rows.
    Upsert,
}

/// Writes closed minutes of one partition, oldest first, and moves its checkpoint to `through` (at or after the
/// last minute: the closed minutes without views in between need no row), all in one transaction.
///
/// Idempotent: under the partition's lock, minutes at or before the checkpoint are skipped, so rows and totals
/// are added once however often, and by however many snapshotters, the same minutes are written. Each video's
/// views of these minutes are added to `video_totals` in one row (one update per video per call, not per
/// minute).
///
/// The rows go in by `COPY`: every snapshotter write moves the checkpoint in the same transaction, so rows of
/// this partition's videos past the checkpoint cannot exist, and a plain insert is safe. Should one exist anyway
/// (written by hand, or a restored backup whose checkpoints are older than its rows), the primary key rejects
/// the `COPY`, nothing is kept, and the call is redone with the upsert, which replaces such rows.
#[tracing::instrument(level = "debug", skip_all, fields(%partition, minutes = minutes.len(), %through))]
pub async fn write_minutes(
    pool: &PgPool,
    partition: u16,
    minutes: &[(i64, Vec<RankedVideo>)],
    through: i64,
) -> Result<Written, sqlx::Error> {
    match write_minutes_via(pool, partition, minutes, through, StatsPath::Copy).await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            tracing::warn!(
                partition,
                error = %e,
                "minute rows already in video_stats past the checkpoint; writing them by upsert"
            );
            let written =
                write_minutes_via(pool, partition, minutes, through, StatsPath::Upsert).await?;
            Ok(Written {
                upserted: true,
                ..written
            })
        }
        other => other,
    }
}

async fn write_minutes_via(
    pool: &PgPool,
    partition: u16,
    minutes: &[(i64, Vec<RankedVideo>)],
    through: i64,
    path: StatsPath,
) -> Result<Written, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_partition(&mut tx, partition).await?;
    let coverage = periods::lock_coverage(&mut tx).await?;
    let done: Option<(DateTime<Utc>,)> = sqlx::query_as(
        "SELECT minute_through FROM ingest_checkpoints WHERE partition = $1 FOR UPDATE",
    )
    .bind(i32::from(partition))
    .fetch_optional(&mut *tx)
    .await?;
    let done = done.map(|(t,)| crate::slices::minute_of(t.timestamp_millis()));
    if done.is_some_and(|d| d >= through) {
        return Ok(Written::default());
    }
    let fresh: Vec<&(i64, Vec<RankedVideo>)> = minutes
        .iter()
        .filter(|(m, _)| done.is_none_or(|d| *m > d) && *m <= through)
        .collect();
    let mut written = Written {
        checkpoint_moved: true,
        ..Written::default()
    };
    let mut totals: HashMap<&str, i64> = HashMap::new();
    // Rows in key order: each index insert or lookup then lands next to the previous one.
    let mut rows: Vec<(&str, i64, i64)> = Vec::new();
    for (minute, minute_rows) in &fresh {
        written.minutes += 1;
        for r in minute_rows {
            let views = i64::try_from(r.views).unwrap_or(i64::MAX);
            rows.push((r.video_id.as_str(), *minute, views));
            *totals.entry(r.video_id.as_str()).or_default() += views;
        }
    }
    rows.sort_unstable();
    written.rows = rows.len() as u64;
    // Rows of periods the totals cover already: none, since a period is covered only once every partition's
    // checkpoint has passed it, unless checkpoints were moved back by hand. Their change goes there too.
    let covered: Vec<(&str, i64, i64)> = rows
        .iter()
        .filter(|(_, minute, _)| coverage.covers_minute(*minute))
        .copied()
        .collect();
    let replaced = match path {
        StatsPath::Upsert if !covered.is_empty() => stored_views(&mut tx, &covered).await?,
        _ => HashMap::new(),
    };
    if !rows.is_empty() {
        match path {
            StatsPath::Copy => {
                let mut copy = tx
                    .copy_in_raw(
                        "COPY video_stats (video_id, bucket_start, views) FROM STDIN (FORMAT binary)",
                    )
                    .await?;
                copy.send(copy_binary(&rows)).await?;
                copy.finish().await?;
            }
            StatsPath::Upsert => {
                let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
                let starts: Vec<DateTime<Utc>> = rows.iter().map(|r| minute_start(r.1)).collect();
                let views: Vec<i64> = rows.iter().map(|r| r.2).collect();
                sqlx::query(
                    "INSERT INTO video_stats (video_id, bucket_start, views) \
                     SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[]) \
                     ON CONFLICT (video_id, bucket_start) DO UPDATE SET views = EXCLUDED.views",
                )
                .bind(&ids)
                .bind(&starts)
                .bind(&views)
                .execute(&mut *tx)
                .await?;
            }
        }
        let changes = covered.iter().map(|&(video, minute, views)| {
            let before = replaced.get(&(video, minute)).copied().unwrap_or(0);
            (video, minute, views - before)
        });
        periods::add_covered(&mut tx, &coverage, changes).await?;
        add_to_totals(&mut tx, totals).await?;
    }
    let last_ms = (through + 1) * crate::slices::MINUTE_MS - 1;
    sqlx::query(
        "INSERT INTO ingest_checkpoints (partition, last_entry_id, minute_through, updated_at) \
         VALUES ($1, $2, $3, now()) ON CONFLICT (partition) DO UPDATE \
         SET last_entry_id = EXCLUDED.last_entry_id, minute_through = EXCLUDED.minute_through, updated_at = now()",
    )
    .bind(i32::from(partition))
    .bind(format!("{last_ms}-{}", u64::MAX))
    .bind(minute_start(through))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(written)
}

/// The views `video_stats` holds now for the `(video, minute)` of `rows`, before an upsert replaces them.
async fn stored_views<'a>(
    tx: &mut sqlx::PgConnection,
    rows: &[(&'a str, i64, i64)],
) -> Result<HashMap<(&'a str, i64), i64>, sqlx::Error> {
    let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let starts: Vec<DateTime<Utc>> = rows.iter().map(|r| minute_start(r.1)).collect();
    let stored: Vec<(String, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT s.video_id, s.bucket_start, s.views FROM video_stats s \
         JOIN UNNEST($1::text[], $2::timestamptz[]) AS k(v, b) ON s.video_id = k.v AND s.bucket_start = k.b",
    )
    .bind(&ids)
    .bind(&starts)
    .fetch_all(tx)
    .await?;
    let mut out = HashMap::new();
    for (video, start, views) in stored {
        let minute = crate::slices::minute_of(start.timestamp_millis());
        if let Some(&(id, _, _)) = rows.iter().find(|r| r.0 == video && r.1 == minute) {
            out.insert((id, minute), views);
        }
    }
    Ok(out)
}

/// Serializes the writers of one partition's history (minutes and late views) until the transaction ends, even
/// before its checkpoint row exists (FOR UPDATE locks nothing then).
pub(super) async fn lock_partition(
    tx: &mut sqlx::PgConnection,
    partition: u16,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind((SNAPSHOTTER_LOCK >> 32) as i32)
        .bind(i32::from(partition))
        .execute(tx)
        .await?;
    Ok(())
}

/// Adds each video's views to `video_totals`, one row per video, in id order (each index lookup lands next to
/// the previous one).
pub(super) async fn add_to_totals(
    tx: &mut sqlx::PgConnection,
    totals: HashMap<&str, i64>,
) -> Result<(), sqlx::Error> {
    let mut totals: Vec<(&str, i64)> = totals.into_iter().collect();
    totals.sort_unstable();
    let ids: Vec<&str> = totals.iter().map(|t| t.0).collect();
    let views: Vec<i64> = totals.iter().map(|t| t.1).collect();
    sqlx::query(
        "INSERT INTO video_totals (video_id, total_views, last_updated) \
         SELECT v, n, now() FROM UNNEST($1::text[], $2::bigint[]) AS t(v, n) \
         ON CONFLICT (video_id) DO UPDATE \
         SET total_views = video_totals.total_views + EXCLUDED.total_views, last_updated = now()",
    )
    .bind(&ids)
    .bind(&views)
    .execute(tx)
    .await?;
    Ok(())
}

/// Microseconds from the Unix epoch to Postgres's (2000-01-01), the origin of a binary `timestamptz`.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// `(video_id, minute, views)` rows in `COPY`'s binary format: no text escaping or parsing on either side.
fn copy_binary(rows: &[(&str, i64, i64)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(19 + rows.iter().map(|r| 30 + r.0.len()).sum::<usize>() + 2);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes()); // flags
    buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for (id, minute, views) in rows {
        buf.extend_from_slice(&3i16.to_be_bytes());
        buf.extend_from_slice(&(id.len() as i32).to_be_bytes());
        buf.extend_from_slice(id.as_bytes());
        buf.extend_from_slice(&8i32.to_be_bytes());
        let us = minute * crate::slices::MINUTE_MS * 1000 - PG_EPOCH_US;
        buf.extend_from_slice(&us.to_be_bytes());
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&views.to_be_bytes());
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    buf
}
