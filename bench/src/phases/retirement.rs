//! The `retire_redis_cpu` figure: Redis CPU per view to seal its minute and retire its slices, on injected
//! time and a private prefix, with the real worker and retirer steps.

use super::{progress, redis_quiet};
use crate::config::BenchConfig;
use crate::figures::{figure, Better, Figure};
use crate::workload::Workload;
use chrono::Utc;
use std::collections::HashMap;
use topk_core::domain::{VideoId, Window};
use topk_core::redis::RedisStore;
use topk_core::slices::MINUTE_MS;

/// `retire_redis_cpu`: Redis time per view spent after the views are counted, sealing their minute and
/// subtracting their slices from the minute, hour and day windows once they leave them (the ingest load is
/// too short for the hour and day windows to retire anything, and the naive baseline never subtracts).
/// Measured on a private key prefix with injected time: one minute of the workload's views is logged and
/// applied by the real worker step (every view, checked), then sealed and retired by the retirer's own steps at
/// a time past the day window, after which the sliding windows must be empty and the all-time one not.
pub async fn retirement(cfg: &BenchConfig, store: &RedisStore) -> anyhow::Result<Vec<Figure>> {
    const POST_VIEWS: usize = 1000;
    let posts = if cfg.quick { 100 } else { 2000 };
    let mut workload = Workload::new(cfg.videos, cfg.zipf_s, 7)?;
    store.applier().ensure_log_groups().await?;
    let now = Utc::now().timestamp_millis();
    // Each repeat moves on by a day and an hour: starting five days ago keeps every repeat's event time in the
    // past (no running retirer has this prefix, whatever the time).
    let mut minute_start = now - now.rem_euclid(MINUTE_MS) - 5 * 86_400_000;
    let mut per_view = Vec::new();
    for r in 0..cfg.repeats {
        let bar = progress(&format!(
            "retirement: logging and applying {} views, run {}/{}",
            posts * POST_VIEWS,
            r + 1,
            cfg.repeats
        ));
        let mut views = 0u64;
        for i in 0..posts {
            let mut post: HashMap<String, u64> = HashMap::new();
            for _ in 0..POST_VIEWS {
                *post.entry(workload.video()).or_default() += 1;
            }
            let post: Vec<(VideoId, u64)> = post
                .into_iter()
                .map(|(v, n)| Ok((VideoId::parse(&v).map_err(anyhow::Error::msg)?, n)))
                .collect::<anyhow::Result<_>>()?;
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
        // Past the day window (the hour a retired minute lingers is an EXPIRE on Redis's own clock).
        let after_everything = minute_start + 86_400_000 + 3_600_000 + 2 * MINUTE_MS;
        // As in a deployment, the snapshotter closed the minute long before the day window retires it (else
        // the retirer hands it to the late stream for history): closed here, outside the measurement.
        let mut closed = Vec::new();
        for p in store.keys().all_partitions() {
            closed.push((
                p,
                store
                    .history()
                    .close_minutes(p, i64::MIN / 2, minute_start / MINUTE_MS)
                    .await?,
            ));
        }
        redis_quiet(store).await?;
        let cpu_before = store.measures().server_cpu_seconds().await?;
        store.applier().seal_all(after_everything).await?;
        store.applier().retire_all(after_everything).await?;
        per_view
            .push((store.measures().server_cpu_seconds().await? - cpu_before) * 1e6 / views as f64);
        for (p, minutes) in closed {
            store.history().drop_frozen_minutes(p, &minutes).await?;
        }
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
