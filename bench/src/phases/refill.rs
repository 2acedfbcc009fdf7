//! The `minute_retire_overdue_during_refill` figure: how late the minute window's retirement runs while the
//! day window's leader set is refilled over every video of its hash (the longest step of retirement: a read of
//! the whole hash, in short script calls). Measured with the retirer's loops as ingest runs them, one per
//! window, against the single sequential loop they replaced (the baseline: retire every window, then seal),
//! on the same data, with Redis's real clock (the retirer reads it as in production) and a private prefix.

use super::progress_of_run;
use crate::config::BenchConfig;
use crate::figures::{figure, Better, Figure};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_core::domain::Window;
use topk_core::redis::RedisStore;
use topk_core::slices::{self, minute_of, retire_target};
use topk_core::supervise::{Liveness, Supervisor};

/// How often the retirer runs, as ingest's default.
const INTERVAL: Duration = Duration::from_millis(250);

/// Per repeat and mode: one partition whose day window holds `videos` videos; a tenth of them, every leader,
/// are in the one minute due for retirement as the retirer starts. Retiring it would leave no leader above the
/// threshold, so the day window's leader set is refilled first, over the whole hash. Meanwhile the minute window's cursor is sampled every 10 ms:
/// how long its oldest slice not yet retired has been due. The figure is the worst of a run.
pub async fn refill(cfg: &BenchConfig, store: &RedisStore) -> anyhow::Result<Vec<Figure>> {
    let (mut ours, mut baseline, mut durations) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..cfg.repeats {
        for sequential in [true, false] {
            let mode = if sequential {
                "one sequential loop"
            } else {
                "a loop per window"
            };
            let bar = progress_of_run(
                &format!("refill: day window of {} videos, {mode}", cfg.videos),
                r,
                cfg,
            );
            let (overdue, took) = run_once(store, cfg.videos, sequential).await?;
            bar.finish_and_clear();
            if sequential {
                baseline.push(overdue);
            } else {
                ours.push(overdue);
                durations.push(took);
            }
            store.measures().delete_all_keys().await?;
        }
    }
    Ok(vec![
        figure(
            "minute_retire_overdue_during_refill",
            "ms",
            Better::Lower,
            &ours,
            Some(&baseline),
        ),
        figure(
            "day_refill_and_retire",
            "s",
            Better::Lower,
            &durations,
            None,
        ),
    ])
}

/// Seeds the partition, runs the retirer in the given mode until the day window has retired the seeded
/// minute, and returns the minute window's worst overdue time (ms) and how long the day's step took (s).
async fn run_once(store: &RedisStore, videos: u64, sequential: bool) -> anyhow::Result<(f64, f64)> {
    let t0 = store.now_ms().await?;
    // Restored as of a minute ago, the day window's oldest minute is due now.
    let day = slices::spec(Window::Day).expect("day slices");
    let seeded_at = t0 - slices::MINUTE_MS;
    let minute = retire_target(day, seeded_at) + 1;
    // A tenth of the videos, the most viewed (every leader), in the minute due; the rest in the next minute.
    // Retiring the first leaves no leader above the threshold, so the whole hash is read to refill first.
    let due = videos / 10;
    let rows = |range: std::ops::Range<u64>, base: u64| -> Vec<(String, u64)> {
        range.map(|i| (format!("v{i}"), base + i % 999)).collect()
    };
    let minutes = BTreeMap::from([
        (minute, rows(0..due, 1_000)),
        (minute + 1, rows(due..videos, 1)),
    ]);
    store
        .recovery()
        .restore_partition(0, &minutes, &[], seeded_at, None, None)
        .await?;
    // The minute window starts caught up, so that what is measured is what the day window's step holds back.
    let t0 = store.now_ms().await?;
    store.applier().retire(0, Window::Minute, t0).await?;

    let stop = CancellationToken::new();
    let mut tasks = Supervisor::new(stop.clone(), Liveness::default());
    if sequential {
        let (store, stop) = (store.clone(), stop.clone());
        tasks.spawn("sequential retirer", async move {
            while !stop.is_cancelled() {
                let now = store.now_ms().await?;
                store.applier().retire_all(now).await?;
                store.applier().seal_all(now).await?;
                tokio::time::sleep(INTERVAL).await;
            }
            Ok(())
        });
    } else {
        topk_ingest::retirer::spawn(
            &mut tasks,
            &store.applier(),
            INTERVAL,
            Duration::from_secs(300),
            &stop,
        );
    }

    let minute_spec = slices::spec(Window::Minute).expect("minute slices");
    let started = Instant::now();
    let mut worst = 0i64;
    loop {
        let now = store.now_ms().await?;
        let cursor = store
            .recovery()
            .cursor(0, Window::Minute)
            .await?
            .unwrap_or(i64::MIN);
        // The oldest slice not yet retired became due when the window's retire target reached it.
        if cursor < retire_target(minute_spec, now) {
            let due_at = (cursor + 1 + minute_spec.slices) * minute_spec.slice_ms;
            worst = worst.max(now - due_at);
        }
        let day_done = store
            .recovery()
            .cursor(0, Window::Day)
            .await?
            .is_some_and(|c| c >= minute);
        if day_done {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the day window did not retire minute {minute} within 10 minutes"
        );
        anyhow::ensure!(
            minute_of(now) < minute + day.slices + 10,
            "the clock ran past the test"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed().as_secs_f64();
    stop.cancel();
    tasks.wait().await?;
    Ok((worst.max(0) as f64, took))
}
