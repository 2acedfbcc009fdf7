//! Keeping `video_stats` in shape: daily partitions, roll-ups and retention.
//!
//! Rows live in one partition per day (`video_stats_pYYYYMMDD`), created ahead of the writes; anything outside
//! them lands in the default partition. Minute rows older than a month are folded into hourly rows and hourly
//! rows older than a year into daily rows (the row keeps the hour's or day's start as `bucket_start`), and
//! partitions older than the retention are dropped whole. The period totals follow (`periods`): a day folded
//! loses its hourly totals, and a day dropped its hourly and daily ones.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use sqlx::PgPool;

/// How long rows keep each resolution, and how long they are kept at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Minute rows older than this become hourly rows.
    pub hourly_after_days: u32,
    /// Hourly rows older than this become daily rows.
    pub daily_after_days: u32,
    /// Partitions (days) older than this are dropped; 0 keeps everything.
    pub drop_after_days: u32,
}

/// What one maintenance run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub rows_rolled_up: u64,
    pub partitions_dropped: u64,
}

fn partition_name(day: NaiveDate) -> String {
    format!("video_stats_p{}", day.format("%Y%m%d"))
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
}

/// Creates the daily partition of every day in `first..=last` that is missing. Rows of such a day that already
/// sit in the default partition are moved into the new one, in the same transaction.
#[tracing::instrument(level = "debug", skip_all, fields(%first, %last))]
pub async fn ensure_day_partitions(
    pool: &PgPool,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<u32, sqlx::Error> {
    let mut created = 0;
    let mut day = first;
    while day <= last {
        let name = partition_name(day);
        let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_class WHERE relname = $1")
            .bind(&name)
            .fetch_optional(pool)
            .await?;
        if exists.is_none() {
            let (from, to) = (day_start(day), day_start(day + Duration::days(1)));
            let mut tx = pool.begin().await?;
            // Serializes concurrent creators (two snapshotters, or the snapshot and the maintenance job).
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('video_stats partitions'))")
                .execute(&mut *tx)
                .await?;
            sqlx::query("CREATE TEMP TABLE moving (LIKE video_stats) ON COMMIT DROP")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "WITH d AS (DELETE FROM video_stats_default WHERE bucket_start >= $1 AND bucket_start < $2 RETURNING *) \
                 INSERT INTO moving SELECT * FROM d",
            )
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
            // Names and bounds come from a date, never from input: formatting them into DDL is safe.
            sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF video_stats FOR VALUES FROM ('{}') TO ('{}')",
                from.to_rfc3339(),
                to.to_rfc3339()
            ))
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO video_stats SELECT * FROM moving")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            created += 1;
        }
        day += Duration::days(1);
    }
    Ok(created)
}

/// Folds rows older than each cutoff of `policy` into coarser ones and drops partitions past the retention.
/// Idempotent, and resumable: progress is kept in `rollup_progress`, one day per transaction.
#[tracing::instrument(level = "debug", skip_all, fields(%now))]
pub async fn maintain(
    pool: &PgPool,
    now: DateTime<Utc>,
    policy: RetentionPolicy,
) -> Result<MaintenanceReport, sqlx::Error> {
    let mut report = MaintenanceReport::default();
    for (level, unit, after_days) in [
        ("hour", "hour", policy.hourly_after_days),
        ("day", "day", policy.daily_after_days),
    ] {
        let cutoff = day_start((now - Duration::days(i64::from(after_days))).date_naive());
        let done: Option<(DateTime<Utc>,)> =
            sqlx::query_as("SELECT done_through FROM rollup_progress WHERE level = $1")
                .bind(level)
                .fetch_optional(pool)
                .await?;
        let start = match done {
            Some((t,)) => t,
            None => {
                let oldest: (Option<DateTime<Utc>>,) =
                    sqlx::query_as("SELECT min(bucket_start) FROM video_stats")
                        .fetch_one(pool)
                        .await?;
                match oldest.0 {
                    Some(t) => day_start(t.date_naive()),
                    None => continue,
                }
            }
        };
        let mut day = start;
        while day < cutoff {
            let next = day + Duration::days(1);
            let mut tx = pool.begin().await?;
            if level == "day" {
                // No hour of this day may be added to the hourly totals while it is folded (below).
                super::periods::lock_out_closing(&mut tx).await?;
            }
            // Rows not aligned to the unit are moved into the aligned row of their hour (or day), which may
            // itself already exist (the minute at :00, or an earlier roll-up): views are added to it.
            let moved = sqlx::query(&format!(
                "WITH moved AS (DELETE FROM video_stats WHERE bucket_start >= $1 AND bucket_start < $2 \
                   AND date_trunc('{unit}', bucket_start, 'UTC') <> bucket_start \
                   RETURNING video_id, date_trunc('{unit}', bucket_start, 'UTC') AS aligned, views) \
                 INSERT INTO video_stats (video_id, bucket_start, views) \
                 SELECT video_id, aligned, sum(views) FROM moved GROUP BY 1, 2 \
                 ON CONFLICT (video_id, bucket_start) DO UPDATE SET views = video_stats.views + EXCLUDED.views"
            ))
            .bind(day)
            .bind(next)
            .execute(&mut *tx)
            .await?;
            if level == "day" {
                // Hours are kept while video_stats keeps them. After the fold: rows of video_stats are locked
                // before those of the totals, in the order a late view's transaction locks them.
                super::periods::forget_hours(&mut tx, day, next).await?;
            }
            sqlx::query(
                "INSERT INTO rollup_progress (level, done_through) VALUES ($1, $2) \
                 ON CONFLICT (level) DO UPDATE SET done_through = EXCLUDED.done_through",
            )
            .bind(level)
            .bind(next)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            report.rows_rolled_up += moved.rows_affected();
            day = next;
        }
    }
    let drop_before = (policy.drop_after_days > 0)
        .then(|| day_start((now - Duration::days(i64::from(policy.drop_after_days))).date_naive()));
    super::periods::sweep(pool, drop_before).await?;
    if policy.drop_after_days > 0 {
        let cutoff = (now - Duration::days(i64::from(policy.drop_after_days))).date_naive();
        let children: Vec<(String,)> = sqlx::query_as(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'video_stats'",
        )
        .fetch_all(pool)
        .await?;
        for (name,) in children {
            let Some(day) = name
                .strip_prefix("video_stats_p")
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            else {
                continue;
            };
            if day < cutoff {
                sqlx::query(&format!("DROP TABLE IF EXISTS {}", partition_name(day)))
                    .execute(pool)
                    .await?;
                report.partitions_dropped += 1;
            }
        }
        sqlx::query("DELETE FROM video_stats_default WHERE bucket_start < $1")
            .bind(day_start(cutoff))
            .execute(pool)
            .await?;
    }
    Ok(report)
}
