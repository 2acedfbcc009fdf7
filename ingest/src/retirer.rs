//! The retirer: subtracts every slice that has left a sliding window, exactly once
//! ([`RedisStore::retire_all`]), seals closed minutes into packed blobs ([`RedisStore::seal_all`]), and trims
//! acknowledged log entries past their retention ([`RedisStore::trim_all`]). Several retirers may run: each step is atomic and
//! guarded by the window's cursor.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::redis::RedisStore;

/// Retires and seals every `interval` on Redis's clock (the clock that stamps the log), trims the log once a
/// minute.
pub async fn run(
    store: RedisStore,
    interval: Duration,
    retention: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_trim = None::<i64>;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = match store.now_ms().await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(error = %e, "retirer cannot read the Redis clock");
                continue;
            }
        };
        match store.retire_all(now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(slices = n, "retired"),
            Err(e) => tracing::warn!(error = %e, "retire failed; retrying"),
        }
        match store.seal_all(now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(minutes = n, "sealed"),
            Err(e) => tracing::warn!(error = %e, "sealing failed; retrying"),
        }
        if last_trim.is_none_or(|t| now - t >= 60_000) {
            last_trim = Some(now);
            match store.trim_all(now, retention).await {
                Ok(n) if n > 0 => tracing::info!(entries = n, "trimmed the log"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "log trim failed"),
            }
        }
    }
}
