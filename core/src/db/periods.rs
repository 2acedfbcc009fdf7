//! Per-hour and per-day totals of `video_stats` (`video_stats_hourly`, `video_stats_daily`), which let a range
//! query read a period's ranking from the top instead of summing its minute rows.
//!
//! A period is added whole once every partition's checkpoint has passed its end ([`close_periods`], the minute
//! job's last step), and the progress mark moves in the same transaction, so what a table covers always equals
//! `video_stats` there. A view written into a covered period afterwards (a late view) is added to both in one
//! transaction ([`add_covered`]). The minute writes themselves only ever write minutes past every covered
//! period, and adding each minute to the totals as it is written would cost several times the minute rows
//! themselves: they take the shared lock and add nothing in practice.
//!
//! Hours are kept while `video_stats` keeps them: the day roll-up removes a day's hours here as it folds it
//! (`retention`), and retention drops both tables' rows with the partitions.

use super::minute_start;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Minutes in an hour and in a day (UTC days: multiples of a day from the epoch).
pub const HOUR: i64 = 60;
pub const DAY: i64 = 1440;

/// Serializes adding periods with the day roll-up, which folds hours into days and removes them here.
const PERIODS_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('video_stats period totals'))";

/// What the period tables cover, in minutes since the epoch (exclusive ends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Hours before this are folded into days (the day roll-up's progress); `None`: none are.
    pub hours_from: Option<i64>,
    /// `video_stats_hourly` holds every hour from `hours_from` up to this; `None`: none yet.
    pub hours_through: Option<i64>,
    /// `video_stats_daily` holds every day before this; `None`: none yet.
    pub days_through: Option<i64>,
}

impl Coverage {
    /// Whether the hour starting at minute `hour` is in `video_stats_hourly`.
    pub fn hour_covered(&self, hour: i64) -> bool {
        self.hours_through.is_some_and(|t| hour + HOUR <= t)
            && self.hours_from.is_none_or(|f| hour >= f)
    }

    /// Whether a view at `minute` belongs to a period either table covers.
    pub fn covers_minute(&self, minute: i64) -> bool {
        self.hour_covered(minute.div_euclid(HOUR) * HOUR)
            || self.day_covered(minute.div_euclid(DAY) * DAY)
    }

    /// Whether the day starting at minute `day` is in `video_stats_daily`.
    pub fn day_covered(&self, day: i64) -> bool {
        self.days_through.is_some_and(|t| day + DAY <= t)
    }
}

fn minutes(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| crate::slices::minute_of(t.timestamp_millis()))
}

/// The coverage as the database holds it now (in a `REPEATABLE READ` transaction: as of its snapshot).
pub async fn coverage(db: &mut PgConnection) -> Result<Coverage, sqlx::Error> {
    read_coverage(db, "").await
}

/// The coverage, with the marks locked against [`close_periods`] until the transaction ends: a writer of
/// `video_stats` rows holds it while it adds them, so a period is either added with its rows or not yet added.
pub(super) async fn lock_coverage(tx: &mut PgConnection) -> Result<Coverage, sqlx::Error> {
    read_coverage(tx, " FOR SHARE").await
}

async fn read_coverage(db: &mut PgConnection, lock: &str) -> Result<Coverage, sqlx::Error> {
    let marks: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(&format!(
        "SELECT level, done_through FROM period_totals_progress{lock}"
    ))
    .fetch_all(&mut *db)
    .await?;
    let mark = |level: &str| {
        marks
            .iter()
            .find(|(l, _)| l == level)
            .and_then(|(_, t)| minutes(*t))
    };
    let rolled: Option<(DateTime<Utc>,)> =
        sqlx::query_as("SELECT done_through FROM rollup_progress WHERE level = 'day'")
            .fetch_optional(&mut *db)
            .await?;
    Ok(Coverage {
        hours_from: minutes(rolled.map(|(t,)| t)),
        hours_through: mark("hour"),
        days_through: mark("day"),
    })
}

/// Adds changes of `video_stats` (`(video, minute, views)`, views possibly negative for a row replaced) to the
/// periods `coverage` covers, in the writer's transaction (which holds [`lock_coverage`]).
pub(super) async fn add_covered<'a>(
    tx: &mut PgConnection,
    coverage: &Coverage,
    changes: impl IntoIterator<Item = (&'a str, i64, i64)>,
) -> Result<(), sqlx::Error> {
    let mut hours: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    let mut days: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    for (video, minute, views) in changes {
        let hour = minute.div_euclid(HOUR) * HOUR;
        if coverage.hour_covered(hour) {
            *hours.entry((video, hour)).or_default() += views;
        }
        let day = minute.div_euclid(DAY) * DAY;
        if coverage.day_covered(day) {
            *days.entry((video, day)).or_default() += views;
        }
    }
    upsert(tx, "video_stats_hourly", "hour_start", &hours).await?;
    upsert(tx, "video_stats_daily", "day_start", &days).await
}

/// Adds `changes` to `table`'s rows; a row brought to 0 (its views replaced by none) is removed.
async fn upsert(
    tx: &mut PgConnection,
    table: &str,
    column: &str,
    changes: &BTreeMap<(&str, i64), i64>,
) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = changes.keys().map(|(v, _)| *v).collect();
    let starts: Vec<DateTime<Utc>> = changes.keys().map(|(_, p)| minute_start(*p)).collect();
    let views: Vec<i64> = changes.values().copied().collect();
    // Table and column names are constants of this file, never input.
    sqlx::query(&format!(
        "INSERT INTO {table} (video_id, {column}, views) \
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[]) \
         ON CONFLICT (video_id, {column}) DO UPDATE SET views = {table}.views + EXCLUDED.views"
    ))
    .bind(&ids)
    .bind(&starts)
    .bind(&views)
    .execute(&mut *tx)
    .await?;
    if views.iter().any(|v| *v < 0) {
        sqlx::query(&format!(
            "DELETE FROM {table} t USING UNNEST($1::text[], $2::timestamptz[]) AS c(v, p) \
             WHERE t.video_id = c.v AND t.{column} = c.p AND t.views = 0"
        ))
        .bind(&ids)
        .bind(&starts)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// What one [`close_periods`] call added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodsClosed {
    /// Hours added to `video_stats_hourly` (empty hours skipped over included).
    pub hours: u64,
    /// Days added to `video_stats_daily`.
    pub days: u64,
}

/// Adds every hour and day that all `partitions` have written past (their checkpoints) and the tables do not
/// cover yet, oldest first, each in one transaction with its mark; the first call on an existing history starts
/// at its oldest row. Starts no new period once `budget` has passed, so a catch-up spreads over several runs.
pub async fn close_periods(
    pool: &PgPool,
    partitions: u16,
    budget: Duration,
) -> Result<PeriodsClosed, sqlx::Error> {
    let started = Instant::now();
    let mut closed = PeriodsClosed::default();
    let (count, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT count(*), min(minute_through) FROM ingest_checkpoints WHERE partition >= 0 AND partition < $1",
    )
    .bind(i32::from(partitions))
    .fetch_one(pool)
    .await?;
    // Minutes before this are written by every partition.
    let Some(written) = minutes(oldest).filter(|_| count == i64::from(partitions)) else {
        return Ok(closed);
    };
    let written = written + 1;
    for (level, unit) in [("hour", HOUR), ("day", DAY)] {
        let limit = written.div_euclid(unit) * unit;
        while started.elapsed() < budget {
            let Some(periods) = close_next(pool, level, unit, limit).await? else {
                break;
            };
            match level {
                "hour" => closed.hours += periods,
                _ => closed.days += periods,
            }
        }
    }
    Ok(closed)
}

/// Adds the next periods of `level` before `limit` in one transaction: the rest of a day of hours, or one day.
/// Returns how many periods the mark moved over, or `None` when there is nothing to add.
async fn close_next(
    pool: &PgPool,
    level: &str,
    unit: i64,
    limit: i64,
) -> Result<Option<u64>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(PERIODS_LOCK).execute(&mut *tx).await?;
    // Taken after the shared marks of the writers in flight are released: rows they added are all visible to
    // the statements below (each sees what was committed when it started).
    sqlx::query("SELECT done_through FROM period_totals_progress WHERE level = $1 FOR UPDATE")
        .bind(level)
        .execute(&mut *tx)
        .await?;
    let coverage = coverage(&mut tx).await?;
    let mark = if unit == HOUR {
        coverage.hours_through
    } else {
        coverage.days_through
    };
    let mut start = match mark {
        Some(m) => m,
        None => match first_row_at_or_after(&mut tx, None).await? {
            Some(m) => m.div_euclid(unit) * unit,
            None => return Ok(None),
        },
    };
    if unit == HOUR {
        // Hours folded into days are not kept.
        start = start.max(coverage.hours_from.unwrap_or(i64::MIN));
    }
    if start >= limit {
        return Ok(None);
    }
    let end = if unit == HOUR {
        (start.div_euclid(DAY) * DAY + DAY).min(limit)
    } else {
        start + DAY
    };
    let rows = if unit == HOUR {
        sqlx::query(
            "INSERT INTO video_stats_hourly (video_id, hour_start, views) \
             SELECT video_id, date_trunc('hour', bucket_start, 'UTC'), sum(views) FROM video_stats \
             WHERE bucket_start >= $1 AND bucket_start < $2 GROUP BY 1, 2",
        )
    } else if coverage.hour_covered(start) && coverage.hour_covered(end - HOUR) {
        // The day's hours are summed already: a twenty-fourth of the rows of its minutes.
        sqlx::query(
            "INSERT INTO video_stats_daily (video_id, day_start, views) \
             SELECT video_id, $1, sum(views) FROM video_stats_hourly \
             WHERE hour_start >= $1 AND hour_start < $2 GROUP BY 1",
        )
    } else {
        sqlx::query(
            "INSERT INTO video_stats_daily (video_id, day_start, views) \
             SELECT video_id, $1, sum(views) FROM video_stats \
             WHERE bucket_start >= $1 AND bucket_start < $2 GROUP BY 1",
        )
    }
    .bind(minute_start(start))
    .bind(minute_start(end))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Nothing there: skip to the period of the next row (a quiet stretch, or a history with gaps).
    let through = if rows == 0 {
        first_row_at_or_after(&mut tx, Some(end))
            .await?
            .map_or(limit, |m| (m.div_euclid(unit) * unit).clamp(end, limit))
    } else {
        end
    };
    sqlx::query("UPDATE period_totals_progress SET done_through = $2 WHERE level = $1")
        .bind(level)
        .bind(minute_start(through))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(((through - start) / unit) as u64))
}

/// The minute of the oldest `video_stats` row at or after `from` (any row when `None`).
async fn first_row_at_or_after(
    tx: &mut PgConnection,
    from: Option<i64>,
) -> Result<Option<i64>, sqlx::Error> {
    let (first,): (Option<DateTime<Utc>>,) = match from {
        // A bound of its own in each query: a time range lets Postgres skip the older daily partitions.
        Some(from) => {
            sqlx::query_as("SELECT min(bucket_start) FROM video_stats WHERE bucket_start >= $1")
                .bind(minute_start(from))
                .fetch_one(&mut *tx)
                .await?
        }
        None => {
            sqlx::query_as("SELECT min(bucket_start) FROM video_stats")
                .fetch_one(&mut *tx)
                .await?
        }
    };
    Ok(minutes(first))
}

/// Takes the lock that keeps [`close_periods`] out, for the day roll-up's transaction (which removes the hours
/// of the day it folds).
pub(super) async fn lock_out_closing(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(PERIODS_LOCK).execute(tx).await?;
    Ok(())
}

/// Removes the hours of `[from, to)` (a day folded into a daily row of `video_stats`).
pub(super) async fn forget_hours(
    tx: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM video_stats_hourly WHERE hour_start >= $1 AND hour_start < $2")
            .bind(from)
            .bind(to)
            .execute(tx)
            .await?
            .rows_affected(),
    )
}

/// Removes hours older than the day roll-up's progress (left by a late view or a close that ran beside the
/// roll-up: never read, since hours there are not covered) and, with `drop_before`, every row older than it.
pub(super) async fn sweep(
    pool: &PgPool,
    drop_before: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM video_stats_hourly WHERE hour_start < \
         (SELECT done_through FROM rollup_progress WHERE level = 'day')",
    )
    .execute(pool)
    .await?;
    if let Some(cutoff) = drop_before {
        for table in [
            "DELETE FROM video_stats_hourly WHERE hour_start < $1",
            "DELETE FROM video_stats_daily WHERE day_start < $1",
        ] {
            sqlx::query(table).bind(cutoff).execute(pool).await?;
        }
    }
    Ok(())
}
