//! One function per group of figures; each measures topk and, where the issue names one, its baseline on the
//! same data, `repeats` times.
//!
//! One file per phase: `retirement`, `ingest`, `freshness`, `kafka`, `queries` (with [`prefill_windows`]),
//! `memory`, `postgres`, `range`, `refill` and `profile`, in the order [`crate::run`] calls them. Here: what they share, the workload's bodies
//! ([`workload`]), the progress spinner ([`progress`]), the wait for Redis's background saves to end, and on a
//! cluster which primary owns how many partitions ([`layout`]).

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
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::time::{Duration, Instant};
use topk_core::redis::RedisStore;

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

/// The workload's pre-built request bodies and a pool of ids for the naive baseline.
pub fn workload(cfg: &BenchConfig) -> anyhow::Result<(Bodies, Arc<Vec<String>>)> {
    let mut w = Workload::new(cfg.videos, cfg.zipf_s, 42)?;
    let bodies = w.batches(256, cfg.batch);
    let videos = (0..200_000).map(|_| w.video()).collect();
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
