//! `rebuild-redis`: restores every window from Postgres after Redis lost its data.
//!
//! Per partition: the minute buckets still inside the day window, the hour and day windows as their sums, the
//! all-time window from `video_totals`, cursors at now; then the log's consumer group restarts right after the
//! partition's checkpoint, so the workers replay whatever the log still holds beyond what Postgres covers.
//! Idempotent: it replaces the partition's state each time.

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use std::collections::BTreeMap;
use topk_core::db;
use topk_core::redis::RedisStore;
use topk_core::slices::{self, MINUTE_MS};

/// What a rebuild restored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// `video_stats` rows replayed into the minute buckets.
    pub minute_rows: u64,
    /// `video_totals` rows restored into the all-time window.
    pub total_rows: u64,
}

/// Rebuilds every partition as of `now_ms`, showing progress on stderr when `progress` is set.
pub async fn rebuild(
    store: &RedisStore,
    pool: &PgPool,
    now_ms: i64,
    progress: bool,
) -> anyhow::Result<RebuildReport> {
    let keys = store.keys().clone();
    let day = slices::spec(topk_core::domain::Window::Day).expect("day slices");
    let since = db::minute_start(slices::retire_target(day, now_ms));
    let through = db::minute_start(slices::minute_of(now_ms));
    let bar = if progress {
        ProgressBar::new(u64::from(keys.partitions()))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} partitions, {elapsed}")
            .expect("template"),
    );
    bar.set_message("reading Postgres");
    let source = db::read_restore_source(pool, since, through).await?;

    let mut minutes: Vec<BTreeMap<i64, Vec<(String, u64)>>> =
        vec![BTreeMap::new(); usize::from(keys.partitions())];
    let mut totals: Vec<Vec<(String, u64)>> = vec![Vec::new(); usize::from(keys.partitions())];
    let mut report = RebuildReport::default();
    for (video, start, views) in source.minutes {
        let Ok(id) = topk_core::domain::VideoId::parse_stored(&video) else {
            continue;
        };
        let p = usize::from(keys.partition_of(&id));
        minutes[p]
            .entry(start.timestamp_millis().div_euclid(MINUTE_MS))
            .or_default()
            .push((video, views.max(0) as u64));
        report.minute_rows += 1;
    }
    for (video, views) in source.totals {
        let Ok(id) = topk_core::domain::VideoId::parse_stored(&video) else {
            continue;
        };
        totals[usize::from(keys.partition_of(&id))].push((video, views.max(0) as u64));
        report.total_rows += 1;
    }
    bar.set_message("writing Redis");
    for p in keys.all_partitions() {
        let checkpoint = source.checkpoints.get(&p);
        let i = usize::from(p);
        store
            .recovery()
            .restore_partition(
                p,
                &minutes[i],
                &totals[i],
                now_ms,
                checkpoint.map(|c| c.last_entry_id),
                checkpoint.map(|c| c.late_through),
            )
            .await?;
        bar.inc(1);
    }
    bar.finish_with_message("rebuilt");
    tracing::info!(minute_rows = report.minute_rows, total_rows = report.total_rows, at = %Utc::now(), "redis rebuilt from postgres");
    Ok(report)
}
