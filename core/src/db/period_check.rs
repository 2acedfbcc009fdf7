//! Whether the period totals agree with `video_stats` (for `verify`): every covered hour and day, each video's
//! total against the sum of its rows there, and no row past what the tables cover.

use super::periods::{self, Coverage};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A video's total in a period, and the sum of its rows there (`None`: no row, no rows).
type Compared = (String, DateTime<Utc>, Option<i64>, Option<i64>);

/// Most differences reported per table: enough to see what went wrong.
const REPORTED: i64 = 1000;

/// One disagreement between a table of totals and `video_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodDifference {
    /// `video_stats_hourly` or `video_stats_daily`.
    pub table: &'static str,
    pub period: DateTime<Utc>,
    pub video_id: String,
    /// The table's total (0: no row).
    pub total: i64,
    /// The sum of the video's `video_stats` rows in the period (0: none; -1: the period is not covered).
    pub rows: i64,
}

impl std::fmt::Display for PeriodDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (table, period, video) = (self.table, self.period.to_rfc3339(), &self.video_id);
        if self.rows < 0 {
            write!(
                f,
                "{table} {period} video {video}: total {} in a period the table does not cover yet",
                self.total
            )
        } else {
            write!(
                f,
                "{table} {period} video {video}: total {} but video_stats sums to {}",
                self.total, self.rows
            )
        }
    }
}

/// Every disagreement (up to [`REPORTED`] per table), read in one `REPEATABLE READ` transaction; and rows past
/// the coverage, reported with `rows` -1. Reads every covered period's rows: a pass over the history.
pub async fn period_differences(pool: &PgPool) -> Result<Vec<PeriodDifference>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let coverage: Coverage = periods::coverage(&mut tx).await?;
    let bound = |m: Option<i64>, otherwise: &str| {
        m.map_or(otherwise.to_owned(), |m| {
            format!("'{}'", super::minute_start(m).to_rfc3339())
        })
    };
    let mut out = Vec::new();
    for (table, column, unit, from, through) in [
        (
            "video_stats_hourly",
            "hour_start",
            "hour",
            bound(coverage.hours_from, "'-infinity'"),
            bound(coverage.hours_through, "'-infinity'"),
        ),
        (
            "video_stats_daily",
            "day_start",
            "day",
            "'-infinity'".to_owned(),
            bound(coverage.days_through, "'-infinity'"),
        ),
    ] {
        // Bounds are formatted from times read above and the names are constants: nothing from input.
        let rows: Vec<Compared> = sqlx::query_as(&format!(
            "SELECT coalesce(t.video_id, s.video_id), coalesce(t.{column}, s.period), t.views, s.views \
             FROM (SELECT video_id, {column}, views FROM {table} \
                   WHERE {column} >= timestamptz {from} AND {column} < timestamptz {through}) t \
             FULL JOIN (SELECT video_id, date_trunc('{unit}', bucket_start, 'UTC') AS period, \
                          sum(views)::bigint AS views FROM video_stats \
                        WHERE bucket_start >= timestamptz {from} AND bucket_start < timestamptz {through} \
                        GROUP BY 1, 2) s \
               ON t.video_id = s.video_id AND t.{column} = s.period \
             WHERE t.views IS DISTINCT FROM s.views LIMIT {REPORTED}"
        ))
        .fetch_all(&mut *tx)
        .await?;
        out.extend(
            rows.into_iter()
                .map(|(video_id, period, total, rows)| PeriodDifference {
                    table,
                    period,
                    video_id,
                    total: total.unwrap_or(0),
                    rows: rows.unwrap_or(0),
                }),
        );
        // Nothing past the coverage: periods are added whole, by the step that moves the mark.
        let past: Vec<(String, DateTime<Utc>, i64)> = sqlx::query_as(&format!(
            "SELECT video_id, {column}, views FROM {table} WHERE {column} >= timestamptz {through} \
             LIMIT {REPORTED}"
        ))
        .fetch_all(&mut *tx)
        .await?;
        out.extend(
            past.into_iter()
                .map(|(video_id, period, total)| PeriodDifference {
                    table,
                    period,
                    video_id,
                    total,
                    rows: -1,
                }),
        );
    }
    tx.commit().await?;
    Ok(out)
}
