//! The jobs, each one step that takes the time as an argument: [`snapshot_minutes`] and [`snapshot_rankings`].

use chrono::{TimeZone, Utc};
use futures::StreamExt;
use sqlx::PgPool;
use topk_core::db::{self, retention};
use topk_core::domain::{RankedVideo, TopK, Window, MAX_K};
use topk_core::redis::RedisStore;
use topk_core::slices;

/// Partitions written at once by the minute job.
const WRITERS: usize = 4;

/// A partition's minutes go to Postgres in transactions of about this many rows: few commits and one
/// `video_totals` update per video per chunk during a catch-up, with bounded memory and transaction size.
const CHUNK_ROWS: usize = 100_000;

/// And of at most this many minutes, so a catch-up over quiet minutes still commits as it goes.
const CHUNK_MINUTES: usize = 60;

/// What the minute job wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteReport {
    /// Minutes written, counted once per partition.
    pub minutes: u64,
    /// `video_stats` rows written.
    pub rows: u64,
    /// Late views added to the rows of minutes written before (see `add_late_views`).
    pub late_views: u64,
    /// Hours and days added to the period totals (`db::periods::close_periods`).
    pub periods: db::periods::PeriodsClosed,
}

/// How long one minute job may go on adding periods to the totals: a first run over an existing history, or
/// after an outage, adds them over several runs instead of holding up the next minutes.
const PERIODS_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

/// Minutes closed for writing: per partition, its checkpoint and the closed minutes that have a frozen copy,
/// and the last closed minute.
#[derive(Debug)]
pub struct Closed {
    work: Vec<(u16, i64, Vec<i64>)>,
    open_minute: i64,
}

/// Writes every closed minute not yet in Postgres, per partition, from the partition's checkpoint on:
/// [`close_minutes`], then [`write_closed`].
///
/// A minute is closed once every partition has applied its log past the minute's end. Catch-up is by design:
/// after a missed tick, a stopped snapshotter or a Postgres outage, the next run writes every minute since
/// the checkpoint (as long as Redis still holds its bucket: a day).
pub async fn snapshot_minutes(
    store: &RedisStore,
    pool: &PgPool,
    now_ms: i64,
) -> anyhow::Result<MinuteReport> {
    let closed = close_minutes(store, pool, now_ms).await?;
    write_closed(store, pool, closed, now_ms).await
}

/// The first half of the minute job: closes, on every partition, the minutes after its checkpoint that every
/// partition has applied past (each bucket frozen as it is now; views for those minutes applied from then on
/// go to the late stream too). A job that stops after this (a crash, Postgres down) is redone from the same
/// frozen copies by the next run.
pub async fn close_minutes(
    store: &RedisStore,
    pool: &PgPool,
    now_ms: i64,
) -> anyhow::Result<Closed> {
    // A half-restored partition would be written as it is, and the rerun of the rebuild would then trust it.
    let interrupted = store.log_state().interrupted_rebuilds().await?;
    anyhow::ensure!(
        interrupted.is_empty(),
        "rebuild-redis was interrupted on partitions {interrupted:?}: no minute is written until it is run \
         again to the end"
    );
    let mut applied_through = now_ms;
    for p in store.keys().all_partitions() {
        if let Some(ms) = store.log_state().applied_through_ms(p).await? {
            applied_through = applied_through.min(ms);
        }
    }
    // Minutes strictly before this one are closed.
    let open_minute = slices::minute_of(applied_through);
    let checkpoints = db::checkpoints(pool).await?;
    let mut work = Vec::new();
    for p in store.keys().all_partitions() {
        let after = checkpoints
            .get(&p)
            .map_or(i64::MIN / 2, |c| c.minute_through);
        // Closing freezes each minute's bucket as it is now: what is written below. Views for these minutes
        // applied from now on go to the late stream too, and reach history through it.
        work.push((
            p,
            after,
            store
                .history()
                .close_minutes(p, after, open_minute - 1)
                .await?,
        ));
    }
    Ok(Closed { work, open_minute })
}

/// The second half of the minute job: writes the closed minutes' frozen copies to Postgres with each
/// partition's checkpoint, then the late views, then adds the hours and days every partition has now written
/// to the period totals.
pub async fn write_closed(
    store: &RedisStore,
    pool: &PgPool,
    closed: Closed,
    now_ms: i64,
) -> anyhow::Result<MinuteReport> {
    let Closed { work, open_minute } = closed;
    let mut report = MinuteReport::default();
    // Every day written to, today and tomorrow get their partition before rows arrive.
    let today = db::minute_start(slices::minute_of(now_ms)).date_naive();
    let days: std::collections::BTreeSet<chrono::NaiveDate> = work
        .iter()
        .flat_map(|(_, _, minutes)| minutes.iter())
        .map(|&m| db::minute_start(m).date_naive())
        .chain([today, today + chrono::Duration::days(1)])
        .collect();
    for day in days {
        retention::ensure_day_partitions(pool, day, day).await?;
    }
    // Partitions are independent (each has its own checkpoint), so several are written at once: Postgres then
    // works on more than one core. Within a partition minutes go in order, as the checkpoint requires, a chunk
    // of them per transaction.
    let written = futures::stream::iter(work)
        .map(|(p, after, minutes)| async move {
            let mut part = MinuteReport::default();
            let last_closed = open_minute - 1;
            let mut chunk: Vec<(i64, Vec<RankedVideo>)> = Vec::new();
            let mut chunk_rows = 0;
            let count = minutes.len();
            for (i, &minute) in minutes.iter().enumerate() {
                let rows = store.history().frozen_minute_counts(p, minute).await?;
                chunk_rows += rows.len();
                chunk.push((minute, rows));
                if chunk_rows >= CHUNK_ROWS || chunk.len() >= CHUNK_MINUTES || i + 1 == count {
                    // The last chunk also moves the checkpoint over the closed minutes that had no views, so a
                    // rebuild replays little.
                    let through = if i + 1 == count { last_closed } else { minute };
                    let w = db::write_minutes(pool, p, &chunk, through).await?;
                    part.minutes += w.minutes;
                    part.rows += w.rows;
                    chunk.clear();
                    chunk_rows = 0;
                }
            }
            if count == 0 && after < last_closed {
                db::write_minutes(pool, p, &[], last_closed).await?;
            }
            // Written (by this run or, for a minute at or before the checkpoint, an earlier one).
            store.history().drop_frozen_minutes(p, &minutes).await?;
            part.late_views = add_late_views(store, pool, p).await?;
            anyhow::Ok(part)
        })
        .buffer_unordered(WRITERS)
        .collect::<Vec<_>>()
        .await;
    for part in written {
        let part = part?;
        report.minutes += part.minutes;
        report.rows += part.rows;
        report.late_views += part.late_views;
    }
    report.periods =
        db::periods::close_periods(pool, store.keys().partitions(), PERIODS_BUDGET).await?;
    Ok(report)
}

/// Adds partition `p`'s late views (applied after their minute was closed) to the rows of their minutes and to
/// the totals, once each: in stream order, up to the first whose minute Postgres does not hold yet, in one
/// transaction with the partition's `late_through` mark; then trims them from the stream. Returns the views
/// added.
async fn add_late_views(store: &RedisStore, pool: &PgPool, p: u16) -> anyhow::Result<u64> {
    const BATCH: usize = 10_000;
    let mut added = 0;
    loop {
        let Some(checkpoint) = db::checkpoints(pool).await?.get(&p).copied() else {
            return Ok(added);
        };
        let entries = store
            .history()
            .read_late(p, checkpoint.late_through, BATCH)
            .await?;
        let ready: Vec<_> = entries
            .iter()
            .take_while(|e| e.minute <= checkpoint.minute_through)
            .collect();
        let Some(last) = ready.last().map(|e| e.id) else {
            return Ok(added);
        };
        let views: Vec<(String, i64, u64)> = ready
            .iter()
            .flat_map(|e| {
                e.views
                    .iter()
                    .map(|(v, n)| (v.as_str().to_owned(), e.minute, *n))
            })
            .collect();
        let count: u64 = views.iter().map(|(_, _, n)| n).sum();
        if db::add_late_views(pool, p, &views, last).await? {
            added += count;
        }
        store.history().trim_late(p, last).await?;
        if ready.len() < entries.len() || entries.len() < BATCH {
            return Ok(added);
        }
    }
}

/// Stores the top 1000 of each window at `now_ms`. Returns the rows written.
pub async fn snapshot_rankings(
    store: &RedisStore,
    pool: &PgPool,
    now_ms: i64,
) -> anyhow::Result<u64> {
    let at = Utc
        .timestamp_millis_opt(now_ms - now_ms.rem_euclid(1000))
        .single()
        .expect("time in range");
    let mut rows = 0;
    for window in Window::ALL {
        let ranking = store
            .rankings()
            .top(window, TopK::new(MAX_K).expect("max k"))
            .await?;
        let start = slices::spec(window).and_then(|s| {
            let first = *slices::window_slices(s, now_ms).start();
            Utc.timestamp_millis_opt(first * s.slice_ms).single()
        });
        rows += db::write_topk_snapshot(pool, window, at, start, &ranking).await?;
    }
    Ok(rows)
}

/// Rolls up and prunes `video_stats` as of `now_ms` (the hourly job).
pub async fn maintain_history(
    pool: &PgPool,
    now_ms: i64,
    policy: retention::RetentionPolicy,
) -> anyhow::Result<retention::MaintenanceReport> {
    let now = Utc
        .timestamp_millis_opt(now_ms)
        .single()
        .expect("time in range");
    Ok(retention::maintain(pool, now, policy).await?)
}
