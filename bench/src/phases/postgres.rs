//! The `snapshot` and `rebuild` figures: rows/s through the snapshotter's own steps, Redis to Postgres and
//! back.

use super::{progress, progress_of_run};
use crate::config::BenchConfig;
use crate::figures::{figure, Better, Figure};
use chrono::Utc;
use sqlx::PgPool;
use std::time::Instant;
use topk_core::redis::RedisStore;
use topk_core::slices;

/// `snapshot` and `rebuild`: rows/s from Redis minute buckets into Postgres, and back.
pub async fn postgres(
    cfg: &BenchConfig,
    store: &RedisStore,
    pool: &PgPool,
) -> anyhow::Result<Vec<Figure>> {
    let keys = store.keys().clone();
    let start_ms = store.now_ms().await?;
    let (mut snap, mut rebuild) = (Vec::new(), Vec::new());
    for r in 0..cfg.repeats {
        // Each run snapshots minutes of its own, later than the last run's: a written minute is closed for
        // good (its snapshot cursor moved past it, and the rebuild marks what it restored as closed), so a
        // run over the same minutes would write nothing.
        let now_ms = start_ms + (r as i64) * (cfg.seed_minutes as i64 + 3) * slices::MINUTE_MS;
        let bar = progress("seeding minute buckets for the snapshot");
        let newest = slices::minute_of(now_ms) - 2;
        for p in keys.all_partitions() {
            for m in 0..cfg.seed_minutes as i64 {
                let minute = newest - m;
                let members: Vec<(String, u64)> = (0..cfg.seed_videos)
                    .map(|j| (format!("s{p}_{j}"), j % 97 + 1))
                    .collect();
                store
                    .recovery()
                    .seed_sealed_minute(p, minute, &members)
                    .await?;
            }
        }
        bar.finish_and_clear();
        let bar = progress_of_run("snapshot and rebuild-redis", r, cfg);
        super::reset_history(pool).await?;
        let t = Instant::now();
        let report = topk_snapshotter::jobs::snapshot_minutes(store, pool, now_ms).await?;
        anyhow::ensure!(
            report.rows > 0,
            "the snapshot of run {} wrote no rows: the benchmark would measure nothing",
            r + 1
        );
        snap.push(report.rows as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let restored = topk_snapshotter::rebuild::rebuild(store, pool, now_ms, false).await?;
        rebuild
            .push((restored.minute_rows + restored.total_rows) as f64 / t.elapsed().as_secs_f64());
        bar.finish_and_clear();
    }
    tracing::debug!(at = %Utc::now(), "postgres figures done");
    Ok(vec![
        figure("snapshot", "rows/s", Better::Higher, &snap, None),
        figure("rebuild", "rows/s", Better::Higher, &rebuild, None),
    ])
}
