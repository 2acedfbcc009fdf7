//! The retirer: subtracts every slice that has left a sliding window, exactly once
//! ([`WindowApplier::retire_window`]), seals closed minutes into packed blobs ([`WindowApplier::seal_all`]), and
//! trims acknowledged log entries past their retention ([`WindowApplier::trim_all`]). Several retirers may run:
//! each step is atomic and guarded by the window's cursor.
//!
//! Each sliding window retires in a loop of its own, and sealing and trimming in another: a long step of one
//! window (the day window's leader refill reads every video of its hash, millions at full scale) must not hold
//! back the minute window, whose slices are due every 5 seconds. The loops touch different keys but for the
//! minute index the hour and day windows share, and every step is one script, so they may interleave freely.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_core::domain::Window;
use topk_core::redis::WindowApplier;
use topk_core::supervise::Supervisor;

/// Starts the retirer's loops in the process's supervisor: one per sliding window, and the sealer (which also
/// trims the log once a minute), each every `interval` on Redis's clock.
pub fn spawn(
    tasks: &mut Supervisor,
    applier: &WindowApplier,
    interval: Duration,
    retention: Duration,
    stop: &CancellationToken,
) {
    for window in Window::SLIDING {
        let name = match window {
            Window::Minute => "retirer (minute window)",
            Window::Hour => "retirer (hour window)",
            _ => "retirer (day window)",
        };
        let (applier, stop) = (applier.clone(), stop.clone());
        tasks.spawn(name, async move {
            let lag = metrics::gauge!("topk_retire_lag_seconds", "window" => window.as_str());
            let retired = metrics::counter!("topk_slices_retired_total", "window" => window.as_str());
            // When the window was last retired up to date on every partition (from the start: not yet). The
            // lag grows from there while retiring fails, the Redis clock included.
            let up_to_date = std::sync::Mutex::new(Instant::now());
            every(interval, &applier, &stop, |now| {
                let (applier, lag, retired, up_to_date) = (applier.clone(), &lag, &retired, &up_to_date);
                async move {
                    if let Some(now) = now {
                        match applier.retire_window(window, now).await {
                            Ok(n) => {
                                *up_to_date.lock().expect("lag lock") = Instant::now();
                                retired.increment(u64::from(n));
                                if n > 0 {
                                    tracing::debug!(window = %window, slices = n, "retired");
                                }
                            }
                            Err(e) => {
                                tracing::warn!(window = %window, error = %e, "retire failed; retrying")
                            }
                        }
                    }
                    lag.set(up_to_date.lock().expect("lag lock").elapsed().as_secs_f64());
                }
            })
            .await;
            Ok(())
        });
    }
    let (applier, stop) = (applier.clone(), stop.clone());
    tasks.spawn("sealer", async move {
        // When the log was last trimmed (Redis ms): once a minute is enough.
        let last_trim = AtomicI64::new(i64::MIN);
        every(interval, &applier, &stop, |now| {
            let (applier, last_trim) = (applier.clone(), &last_trim);
            async move {
                let Some(now) = now else { return };
                match applier.seal_all(now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(minutes = n, "sealed"),
                    Err(e) => tracing::warn!(error = %e, "sealing failed; retrying"),
                }
                if now.saturating_sub(last_trim.load(Ordering::Relaxed)) >= 60_000 {
                    last_trim.store(now, Ordering::Relaxed);
                    match applier.trim_all(now, retention).await {
                        Ok(n) if n > 0 => {
                            metrics::counter!("topk_log_entries_trimmed_total").increment(n);
                            tracing::info!(entries = n, "trimmed the log")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "log trim failed"),
                    }
                }
            }
        })
        .await;
        Ok(())
    });
}

/// Runs `step` with Redis's time (the clock that stamps the log) every `interval` until `stop`, or with `None`
/// when that clock cannot be read (the step then only updates its metrics); a step that takes longer delays
/// the next instead of piling up.
async fn every<F, Fut>(
    interval: Duration,
    applier: &WindowApplier,
    stop: &CancellationToken,
    mut step: F,
) where
    F: FnMut(Option<i64>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        match applier.now_ms().await {
            Ok(now) => step(Some(now)).await,
            Err(e) => {
                tracing::warn!(error = %e, "retirer cannot read the Redis clock");
                step(None).await
            }
        }
    }
}
