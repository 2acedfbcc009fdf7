//! The `retire_redis_cpu` figure: Redis CPU per view to seal its minute and retire its slices, on injected
//! time and a private prefix, with the real worker and retirer steps.

use super::{
    close_minutes, drop_closed, five_days_ago_minute, past_the_day_window, progress_of_run,
    redis_quiet, POST_VIEWS,
};
use crate::config::BenchConfig;
use crate::figures::{figure, Better, Figure};
use crate::workload::Workload;
use topk_core::domain::Window;
use topk_core::redis::RedisStore;
use topk_core::slices::MINUTE_MS;

/// `retire_redis_cpu`: Redis time per view spent after the views are counted, sealing their minute and
/// subtracting their slices from the minute, hour and day windows once they leave them (the ingest load is
/// too short for the hour and day windows to retire anything, and the naive baseline never subtracts).
/// Measured on a private key prefix with injected time: one minute of the workload's views is logged and
/// applied by the real worker step (every view, checked), then sealed and retired by the retirer's own steps at
/// a time past the day window, after which the sliding windows must be empty and the all-time one not.
pub async fn retirement(cfg: &BenchConfig, store: &RedisStore) -> anyhow::Result<Vec<Figure>> {
    let posts = if cfg.quick { 100 } else { 2000 };
    let mut workload = Workload::new(cfg.videos, cfg.zipf_s, 7)?;
    store.applier().ensure_log_groups().await?;
    let mut minute_start = five_days_ago_minute();
    let mut per_view = Vec::new();
    let label = format!(
        "retirement: logging and applying {} views",
        posts * POST_VIEWS
    );
    for r in 0..cfg.repeats {
        let bar = progress_of_run(&label, r, cfg);
        let mut views = 0u64;
        for i in 0..posts {
            let post = workload.counted(POST_VIEWS)?;
            // Spread over the minute, as a minute of traffic is: every 5-second slice gets its share.
            let at = minute_start + (i as i64 * MINUTE_MS) / posts as i64;
            store.writer().append_at(&post, at).await?;
            views += POST_VIEWS as u64;
        }
        let mut applied = 0;
        for p in store.keys().all_partitions() {
            loop {
                let step = store
                    .applier()
                    .step(p, "bench", 256, Default::default())
                    .await?;
                if step.entries == 0 {
                    break;
                }
                applied += step.views;
            }
        }
        anyhow::ensure!(
            applied == views,
            "the workers applied {applied} of the {views} views logged"
        );
        bar.set_message("sealing and retiring");
        let after_everything = past_the_day_window(minute_start);
        // Closed outside the measurement, as the snapshotter's work is not the retirer's.
        let closed = close_minutes(store, minute_start).await?;
        redis_quiet(store).await?;
        let cpu_before = store.measures().server_cpu_seconds().await?;
        store.applier().seal_all(after_everything).await?;
        store.applier().retire_all(after_everything).await?;
        per_view
            .push((store.measures().server_cpu_seconds().await? - cpu_before) * 1e6 / views as f64);
        drop_closed(store, closed).await?;
        // Every count left the sliding windows (their hashes, not just the leader sets), none left all-time.
        for w in Window::ALL {
            let mut left = 0;
            for p in store.keys().all_partitions() {
                left += store.recovery().window_counts(p, w).await?.len();
            }
            anyhow::ensure!(
                (left == 0) == (w != Window::All),
                "after retirement the {w} window holds {left} videos"
            );
        }
        minute_start = after_everything + MINUTE_MS;
        bar.finish_and_clear();
    }
    Ok(vec![figure(
        "retire_redis_cpu",
        "us/view",
        Better::Lower,
        &per_view,
        None,
    )])
}
