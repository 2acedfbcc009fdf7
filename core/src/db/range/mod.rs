//! The exact top K of the views in any past range `[from, to)`, from history (`GET /v1/topk/range`).
//!
//! - [`plan`]: the range's ends rounded to the resolution history keeps there, and the range cut into whole days
//!   and hours the period totals hold and the rest (pure);
//! - [`threshold`]: the threshold algorithm over those periods' rankings.
//!
//! Everything is read in one `REPEATABLE READ` transaction, so the roll-ups' progress, the totals' coverage
//! and every row summed are of one moment of the database.

pub mod plan;
mod threshold;

pub use plan::{MinuteRange, Plan, Resolution, Rollups};
pub use threshold::Effort;

use super::{minute_start, periods, HistoryError};
use crate::domain::{rank, RankedVideo, TopK};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::ops::Range;
use threshold::{Table, DAILY, HOURLY};

/// Most periods read by the threshold algorithm; a range of more (over a year of whole days) is summed whole.
const MAX_LISTS: usize = 400;

/// Rows read from each list, in multiples of K, before the threshold algorithm leaves the range to a plain sum
/// (the data is too flat for it to stop early).
const GIVE_UP_AFTER: usize = 16;

/// How a range's top K was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// By the threshold algorithm over the periods' rankings.
    Threshold(Effort),
    /// By summing every row of the range's pieces (few or no periods, too many, or data too flat).
    Sum,
}

/// The top K of a range, as history holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeTop {
    /// The range summed (the one asked for, rounded outwards where history is coarser) and how.
    pub plan: Plan,
    /// The newest minute every partition has written (its start); `None` before the first minute job.
    pub history_through: Option<DateTime<Utc>>,
    /// Views descending, ties by video id descending.
    pub videos: Vec<RankedVideo>,
    pub method: Method,
}

/// The exact top `k` of the views history holds for `asked`: each end rounded outwards to the resolution
/// history keeps there.
pub async fn top_in_range(
    pool: &PgPool,
    asked: MinuteRange,
    k: TopK,
) -> Result<RangeTop, HistoryError> {
    HistoryError::naming(pool, read_top_in_range(pool, asked, k)).await
}

async fn read_top_in_range(
    pool: &PgPool,
    asked: MinuteRange,
    k: TopK,
) -> Result<RangeTop, sqlx::Error> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let (rollups, coverage, history_through) = marks(&mut tx).await?;
    let plan = plan::plan(asked, rollups, coverage);
    let days = periods_with_rows(&mut tx, DAILY, &plan.days, periods::DAY).await?;
    let mut hours = Vec::new();
    for run in &plan.hours {
        hours.extend(periods_with_rows(&mut tx, HOURLY, run, periods::HOUR).await?);
    }
    let lists = days.len() + hours.len();
    // No whole period (a range inside hours), or too many: one aggregate that sorts and cuts in Postgres
    // rather than every video of the range shipped here.
    let (videos, method) = if lists == 0 || lists > MAX_LISTS {
        (sum_whole(&mut tx, &plan, k).await?, Method::Sum)
    } else {
        let rest = sum_rest(&mut tx, &plan.rest).await?;
        let give_up = GIVE_UP_AFTER * (k.get() + 16);
        match threshold::top_k(&mut tx, &plan, &days, &hours, &rest, k, give_up).await? {
            (Some(top), effort) => (top, Method::Threshold(effort)),
            (None, effort) => {
                tracing::debug!(?effort, "range data too flat for the threshold algorithm");
                (sum_whole(&mut tx, &plan, k).await?, Method::Sum)
            }
        }
    };
    tx.commit().await?;
    Ok(RangeTop {
        plan,
        history_through,
        videos,
        method,
    })
}

/// Where history stands, in one round trip: the roll-ups' progress (`rollup_progress`), what the period
/// totals cover (`period_totals_progress`, as [`periods::coverage`] reads it) and the newest minute every
/// partition has written.
async fn marks(
    db: &mut PgConnection,
) -> Result<(Rollups, periods::Coverage, Option<DateTime<Utc>>), sqlx::Error> {
    type Marks = (
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let (hours_before, days_before, hours_through, days_through, written): Marks = sqlx::query_as(
        "SELECT (SELECT done_through FROM rollup_progress WHERE level = 'hour'), \
                (SELECT done_through FROM rollup_progress WHERE level = 'day'), \
                (SELECT done_through FROM period_totals_progress WHERE level = 'hour'), \
                (SELECT done_through FROM period_totals_progress WHERE level = 'day'), \
                (SELECT min(minute_through) FROM ingest_checkpoints)",
    )
    .fetch_one(db)
    .await?;
    let minute =
        |t: Option<DateTime<Utc>>| t.map(|t| crate::slices::minute_of(t.timestamp_millis()));
    let rollups = Rollups {
        hours_before: minute(hours_before),
        days_before: minute(days_before),
    };
    let coverage = periods::Coverage {
        hours_from: rollups.days_before,
        hours_through: minute(hours_through),
        days_through: minute(days_through),
    };
    Ok((rollups, coverage, written))
}

/// The periods of `run` (starts, `unit` apart) from the first to the last that `table` has rows for: a range
/// reaching past the history reads no empty lists.
async fn periods_with_rows(
    db: &mut PgConnection,
    table: Table,
    run: &Range<i64>,
    unit: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    if run.is_empty() {
        return Ok(Vec::new());
    }
    let (name, column) = (table.name, table.column);
    // min and max of the ranking index's leading column: two index probes.
    let (first, last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(&format!(
        "SELECT min({column}), max({column}) FROM {name} WHERE {column} >= $1 AND {column} < $2"
    ))
    .bind(minute_start(run.start))
    .bind(minute_start(run.end))
    .fetch_one(db)
    .await?;
    let minute = |t: DateTime<Utc>| crate::slices::minute_of(t.timestamp_millis());
    Ok(match (first, last) {
        (Some(first), Some(last)) => (minute(first)..=minute(last))
            .step_by(unit as usize)
            .collect(),
        _ => Vec::new(),
    })
}

/// Each video's views in the spans summed from `video_stats`, in [`crate::domain::ranking_order`].
async fn sum_rest(
    db: &mut PgConnection,
    spans: &[Range<i64>],
) -> Result<Vec<RankedVideo>, sqlx::Error> {
    let mut sums: HashMap<String, i64> = HashMap::new();
    // One query per span: each is a time range that skips the other days' partitions.
    for span in spans {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT video_id, sum(views)::bigint FROM video_stats \
             WHERE bucket_start >= $1 AND bucket_start < $2 GROUP BY video_id",
        )
        .bind(minute_start(span.start))
        .bind(minute_start(span.end))
        .fetch_all(&mut *db)
        .await?;
        for (id, views) in rows {
            *sums.entry(id).or_default() += views;
        }
    }
    Ok(ranked(sums))
}

/// Sums per video as a ranking: the videos with views, in the rankings' order.
fn ranked(sums: HashMap<String, i64>) -> Vec<RankedVideo> {
    rank(
        sums.into_iter()
            .filter(|(_, views)| *views > 0)
            .map(|(video, views)| (video, views as u64)),
    )
}

/// The top `k` of the plan summed whole in one aggregate over its pieces (days and hours from the totals, the
/// rest from `video_stats`): already far fewer rows than the range's minutes.
async fn sum_whole(
    db: &mut PgConnection,
    plan: &Plan,
    k: TopK,
) -> Result<Vec<RankedVideo>, sqlx::Error> {
    let mut parts = Vec::new();
    let mut bounds = Vec::new();
    let pieces = std::iter::once((DAILY.name, DAILY.column, &plan.days))
        .chain(plan.hours.iter().map(|r| (HOURLY.name, HOURLY.column, r)))
        .chain(plan.rest.iter().map(|r| ("video_stats", "bucket_start", r)));
    for (name, column, run) in pieces {
        if run.is_empty() {
            continue;
        }
        let (a, b) = (bounds.len() + 2, bounds.len() + 3);
        parts.push(format!(
            "SELECT video_id, views FROM {name} WHERE {column} >= ${a} AND {column} < ${b}"
        ));
        bounds.push(minute_start(run.start));
        bounds.push(minute_start(run.end));
    }
    let mut query = format!(
        "SELECT video_id, sum(views)::bigint AS total FROM ({}) AS pieces \
         GROUP BY video_id ORDER BY total DESC, video_id DESC LIMIT $1",
        parts.join(" UNION ALL ")
    );
    if parts.is_empty() {
        query = "SELECT ''::text, 0::bigint WHERE $1 < 0".into();
    }
    let mut q = sqlx::query_as::<_, (String, i64)>(&query).bind(k.get() as i64);
    for bound in bounds {
        q = q.bind(bound);
    }
    Ok(q.fetch_all(db)
        .await?
        .into_iter()
        .map(|(video_id, views)| RankedVideo {
            video_id,
            views: views.max(0) as u64,
        })
        .collect())
}
