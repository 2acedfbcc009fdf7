//! One function per group of figures; each measures topk and, where the issue names one, its baseline on the
//! same data, `repeats` times.
//!
//! One file per phase: `retirement`, `ingest`, `freshness`, `kafka`, `queries` (with [`prefill_windows`]),
//! `memory`, `postgres`, `range`, `refill` and `profile`, in the order [`crate::run`] calls them. Here: what
//! they share, the workload's bodies ([`workload`]), the progress spinner ([`progress`], [`progress_of_run`]),
//! the wait for Redis's background saves to end, on a cluster which primary owns how many partitions
//! ([`layout`]), and the steps of a minute logged on injected time that `retirement` and `profile` both take.

mod freshness;
mod ingest;
mod kafka;
mod memory;
mod postgres;
mod profile;
mod queries;
mod range;
mod refill;
mod retirement;

pub use freshness::freshness;
pub use ingest::ingest;
pub use kafka::kafka;
pub use memory::memory;
pub use postgres::postgres;
pub use profile::profile;
pub use queries::prefill_windows;
pub use queries::queries;
pub use range::range;
pub use refill::refill;
pub use retirement::retirement;

use crate::config::BenchConfig;
use crate::workload::Workload;
use bytes::Bytes;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::time::{Duration, Instant};
use topk_core::keys::Partition;
use topk_core::redis::RedisStore;
use topk_core::slices::MINUTE_MS;

/// Pre-built POST bodies with their number of views, shared by the clients.
pub type Bodies = Arc<Vec<(Bytes, u64)>>;

/// A spinner on stderr naming the step in progress.
pub fn progress(what: &str) -> ProgressBar {
    // Without a terminal the spinner does not draw: say each step on its own line instead.
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("topk-bench: {what}");
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("template"));
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The spinner of repeat `r` (from 0) of a measurement: `<what>, run <r + 1>/<repeats>`.
pub fn progress_of_run(what: &str, r: usize, cfg: &BenchConfig) -> ProgressBar {
    progress(&format!("{what}, run {}/{}", r + 1, cfg.repeats))
}

/// Waits (at most 5 minutes) until Redis runs no background save or append-only-file rewrite: its fork's page
/// copying is counted in Redis's own CPU time and slows the next measurement, whichever load started it. On a
/// cluster, also until every replica has replayed its primary's writes: a replica replays the baselines' work
/// (a ZUNIONSTORE of a million members takes seconds) on the same cores while the next figure is measured.
async fn redis_quiet(store: &RedisStore) -> anyhow::Result<()> {
    let started = Instant::now();
    while store.measures().persistence_busy().await? || store.measures().replicas_behind().await? {
        if started.elapsed() > Duration::from_secs(300) {
            tracing::warn!("Redis still saving or replicating after 5 minutes; measuring anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// On Redis Cluster, `partitions.node.<host:port>`: how many partitions each primary owns (from the slot of
/// each partition's keys, by the cluster's current slot map). Nothing on one node.
pub async fn layout(store: &RedisStore) -> anyhow::Result<Vec<crate::figures::Figure>> {
    if !store.is_cluster() {
        return Ok(Vec::new());
    }
    let mut owned = std::collections::BTreeMap::<String, f64>::new();
    for (node, _) in store.measures().server_cpu_seconds_per_node().await? {
        owned.insert(node, 0.0);
    }
    for node in store.measures().partition_nodes().await? {
        *owned.entry(node).or_default() += 1.0;
    }
    Ok(owned
        .into_iter()
        .map(|(node, n)| {
            crate::figures::figure(
                format!("partitions.node.{node}"),
                "partitions",
                crate::figures::Better::Higher,
                &[n],
                None,
            )
        })
        .collect())
}

/// The workload's pre-built request bodies and a pool of ids for the naive baseline, `--load-views` each.
pub fn workload(cfg: &BenchConfig) -> anyhow::Result<(Bodies, Arc<Vec<String>>)> {
    let mut w = Workload::new(cfg.videos, cfg.zipf_s, 42)?;
    // At least one POST, and one of the naive baseline's 1,000-id calls.
    let views = cfg.load_views.max(cfg.batch).max(1000);
    let bodies = w.batches(views.div_ceil(cfg.batch.max(1)), cfg.batch);
    let videos = (0..views).map(|_| w.video()).collect();
    Ok((Arc::new(bodies), Arc::new(videos)))
}

/// Empties history (rows, totals, checkpoints, snapshots, the roll-ups' and the totals' progress), so that a
/// phase writes or seeds it from scratch.
pub async fn reset_history(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "TRUNCATE video_stats, video_stats_hourly, video_stats_daily, video_totals, ingest_checkpoints, \
         global_topk_snapshots, rollup_progress",
    )
    .execute(pool)
    .await?;
    sqlx::query("UPDATE period_totals_progress SET done_through = NULL")
        .execute(pool)
        .await?;
    Ok(())
}

/// Views per batch logged by the phases on injected time (`retirement`, `profile`).
const POST_VIEWS: usize = 1000;

/// The start of the minute five days ago, where the phases on injected time log their first minute: each
/// repeat moves on by a day and an hour, and starting this far back keeps every repeat's event time in the
/// past (no running retirer has their private prefix, whatever the time).
fn five_days_ago_minute() -> i64 {
    let now = Utc::now().timestamp_millis();
    now - now.rem_euclid(MINUTE_MS) - 5 * 86_400_000
}

/// A time past the day window of the minute starting at `minute_start`, when all its slices are retired (the
/// hour a retired minute lingers is an EXPIRE on Redis's own clock).
fn past_the_day_window(minute_start: i64) -> i64 {
    minute_start + 86_400_000 + 3_600_000 + 2 * MINUTE_MS
}

/// Closes every partition's minutes through the one starting at `minute_start`, as the snapshotter does in a
/// deployment long before the day window retires them (else the retirer hands them to the late stream for
/// history); [`drop_closed`] drops them once retired.
async fn close_minutes(
    store: &RedisStore,
    minute_start: i64,
) -> anyhow::Result<Vec<(Partition, Vec<i64>)>> {
    let history = store.history();
    let mut closed = Vec::new();
    for p in store.keys().all_partitions() {
        closed.push((
            p,
            history
                .close_minutes(p, i64::MIN / 2, minute_start / MINUTE_MS)
                .await?,
        ));
    }
    Ok(closed)
}

/// Drops the frozen minutes [`close_minutes`] closed.
async fn drop_closed(store: &RedisStore, closed: Vec<(Partition, Vec<i64>)>) -> anyhow::Result<()> {
    for (p, minutes) in closed {
        store.history().drop_frozen_minutes(p, &minutes).await?;
    }
    Ok(())
}
