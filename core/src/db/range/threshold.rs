//! The exact top K of a sum of lists, read from the top: Fagin's threshold algorithm over each day's and each
//! hour's videos in the rankings' order (their totals' ranking indexes) and the rest of the range, summed and
//! sorted in memory.
//!
//! Each round reads the next rows of every list (sorted access), sums every video seen for the first time over
//! all of the range's pieces (random access: the totals' primary keys), and stops once the K-th best sum beats
//! the threshold, the sum of the last views read from each list: a video not seen yet has at most that many,
//! so none can enter the top K. On skewed data the top of each list is the same few videos and a few rounds
//! suffice; on flat data the lists would be read almost whole, so past a depth the caller sums the whole range
//! instead.

use super::plan::Plan;
use crate::db::minute_start;
use crate::domain::{RankedVideo, TopK};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::HashMap;
use std::ops::Range;

/// A table of totals per period, as the queries name it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Table {
    pub name: &'static str,
    pub column: &'static str,
}

pub(super) const DAILY: Table = Table {
    name: "video_stats_daily",
    column: "day_start",
};
pub(super) const HOURLY: Table = Table {
    name: "video_stats_hourly",
    column: "hour_start",
};

/// One period's list, read from the top.
#[derive(Debug)]
struct Cursor {
    period: i64,
    /// The last row read (views, video), or `None` before the first read.
    after: Option<(i64, String)>,
    /// No row left.
    done: bool,
}

impl Cursor {
    /// The most views an unread row of this list can have.
    fn bound(&self) -> i64 {
        match (&self.after, self.done) {
            (_, true) => 0,
            (Some((views, _)), false) => *views,
            (None, false) => i64::MAX,
        }
    }
}

/// How a top K was found, for the benchmark and the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effort {
    /// Rounds of reads.
    pub rounds: u32,
    /// Rows read from the top of the lists.
    pub rows_read: u64,
    /// Videos summed over the whole range.
    pub candidates: u64,
}

/// The exact top `k` of `plan`'s days and hours plus `rest` (each video's views in the rest of the range,
/// sorted in [`crate::domain::ranking_order`]), or `None` when the lists are read past `give_up` rows each without an answer.
pub(super) async fn top_k(
    db: &mut PgConnection,
    plan: &Plan,
    days: &[i64],
    hours: &[i64],
    rest: &[RankedVideo],
    k: TopK,
    give_up: usize,
) -> Result<(Option<Vec<RankedVideo>>, Effort), sqlx::Error> {
    let k = k.get();
    let mut lists: Vec<(Table, Vec<Cursor>)> = [(DAILY, days), (HOURLY, hours)]
        .into_iter()
        .map(|(table, periods)| {
            let cursors = periods
                .iter()
                .map(|&period| Cursor {
                    period,
                    after: None,
                    done: false,
                })
                .collect();
            (table, cursors)
        })
        .collect();
    let rest_views: HashMap<&str, i64> = rest
        .iter()
        .map(|r| (r.video_id.as_str(), r.views as i64))
        .collect();
    let single_list = days.len() + hours.len() + usize::from(!rest.is_empty()) == 1;
    let mut rest_read = 0;
    let mut sums: HashMap<String, i64> = HashMap::new();
    let mut effort = Effort::default();
    // A little more than k at first: ties at the K-th place need one more row to be settled.
    let mut batch = k + 16;
    let mut depth = 0;
    loop {
        effort.rounds += 1;
        let mut seen: HashMap<String, i64> = HashMap::new();
        for (table, cursors) in &mut lists {
            for (id, views) in read_next(db, *table, cursors, batch).await? {
                effort.rows_read += 1;
                seen.insert(id, views);
            }
        }
        let rest_next = (rest_read + batch).min(rest.len());
        for r in &rest[rest_read..rest_next] {
            seen.insert(r.video_id.clone(), r.views as i64);
        }
        effort.rows_read += (rest_next - rest_read) as u64;
        rest_read = rest_next;
        let fresh: Vec<String> = seen
            .keys()
            .filter(|id| !sums.contains_key(*id))
            .cloned()
            .collect();
        if single_list {
            // The one list's views are the sums, and it is read in the rankings' order (views, then id,
            // descending), so its first k rows are the answer: a video not read yet comes after them, ties
            // included, and no threshold is needed (with one, ties at the k-th place read on to the end).
            sums.extend(seen);
            let mut top = super::ranked(sums);
            top.truncate(k);
            return Ok((Some(top), effort));
        } else {
            effort.candidates += fresh.len() as u64;
            let mut fresh_sums = sum_over_range(db, plan, &fresh).await?;
            for id in &fresh {
                let total = fresh_sums.remove(id.as_str()).unwrap_or(0)
                    + rest_views.get(id.as_str()).copied().unwrap_or(0);
                sums.insert(id.clone(), total);
            }
        }
        let threshold = lists
            .iter()
            .flat_map(|(_, cursors)| cursors.iter().map(Cursor::bound))
            .chain(rest.get(rest_read).map(|r| r.views as i64))
            .fold(0i64, i64::saturating_add);
        let exhausted = threshold == 0;
        let kth = kth_views(&sums, k);
        if exhausted || kth.is_some_and(|v| v > threshold) {
            let mut top = super::ranked(sums);
            top.truncate(k);
            return Ok((Some(top), effort));
        }
        depth += batch;
        if depth >= give_up {
            return Ok((None, effort));
        }
        // Each round reads as far again as all before it: a few rounds, whatever the depth needed.
        batch = depth;
    }
}

/// The views of the `k`-th best sum, if there are `k`.
fn kth_views(sums: &HashMap<String, i64>, k: usize) -> Option<i64> {
    if sums.len() < k {
        return None;
    }
    let mut views: Vec<i64> = sums.values().copied().collect();
    let (_, kth, _) = views.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    Some(*kth)
}

/// The next `batch` rows of each unfinished cursor of `table`, in one query (a lateral read of each period's
/// ranking index, from after its last row); moves the cursors.
async fn read_next(
    db: &mut PgConnection,
    table: Table,
    cursors: &mut [Cursor],
    batch: usize,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let open: Vec<usize> = (0..cursors.len()).filter(|&i| !cursors[i].done).collect();
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let periods: Vec<DateTime<Utc>> = open
        .iter()
        .map(|&i| minute_start(cursors[i].period))
        .collect();
    // Before the first read: after a row no list can hold.
    let after_views: Vec<i64> = open
        .iter()
        .map(|&i| cursors[i].after.as_ref().map_or(i64::MAX, |a| a.0))
        .collect();
    let after_ids: Vec<&str> = open
        .iter()
        .map(|&i| cursors[i].after.as_ref().map_or("", |a| a.1.as_str()))
        .collect();
    let (name, column) = (table.name, table.column);
    let rows: Vec<(DateTime<Utc>, String, i64)> = sqlx::query_as(&format!(
        "SELECT c.p, t.video_id, t.views \
         FROM UNNEST($1::timestamptz[], $2::bigint[], $3::text[]) AS c(p, v, id) \
         CROSS JOIN LATERAL (SELECT video_id, views FROM {name} \
           WHERE {column} = c.p AND (views, video_id) < (c.v, c.id COLLATE \"C\") \
           ORDER BY views DESC, video_id DESC LIMIT $4) t"
    ))
    .bind(&periods)
    .bind(&after_views)
    .bind(&after_ids)
    .bind(batch as i64)
    .fetch_all(&mut *db)
    .await?;
    let index: HashMap<DateTime<Utc>, usize> = open
        .iter()
        .zip(&periods)
        .map(|(&i, &period)| (period, i))
        .collect();
    let mut read = vec![0usize; cursors.len()];
    let mut last: Vec<Option<(i64, String)>> = vec![None; cursors.len()];
    let mut out = Vec::with_capacity(rows.len());
    for (period, id, views) in rows {
        if let Some(&i) = index.get(&period) {
            read[i] += 1;
            // The cursor stands at the period's last row in the rankings' order (byte order of ids, as the
            // "C" collation compares them), whatever order the rows came in.
            let row = (views, id.clone());
            if last[i].as_ref().is_none_or(|l| row < *l) {
                last[i] = Some(row);
            }
        }
        out.push((id, views));
    }
    for (i, row) in last.into_iter().enumerate() {
        if row.is_some() {
            cursors[i].after = row;
        }
    }
    for &i in &open {
        cursors[i].done = read[i] < batch;
    }
    Ok(out)
}

/// Each of `ids`' views over the plan's days and hours (the rest is the caller's).
async fn sum_over_range(
    db: &mut PgConnection,
    plan: &Plan,
    ids: &[String],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut sums: HashMap<String, i64> = HashMap::new();
    if ids.is_empty() {
        return Ok(sums);
    }
    let runs = std::iter::once((DAILY, &plan.days)).chain(plan.hours.iter().map(|r| (HOURLY, r)));
    for (table, run) in runs {
        if run.is_empty() {
            continue;
        }
        for (id, views) in run_sums(db, table, run, ids).await? {
            *sums.entry(id).or_default() += views;
        }
    }
    Ok(sums)
}

/// `ids`' views over a run of periods of `table`: one index range per video (the primary key leads with it).
async fn run_sums(
    db: &mut PgConnection,
    table: Table,
    run: &Range<i64>,
    ids: &[String],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let (name, column) = (table.name, table.column);
    sqlx::query_as(&format!(
        "SELECT video_id, sum(views)::bigint FROM {name} \
         WHERE video_id = ANY($1) AND {column} >= $2 AND {column} < $3 GROUP BY video_id"
    ))
    .bind(ids)
    .bind(minute_start(run.start))
    .bind(minute_start(run.end))
    .fetch_all(db)
    .await
}
