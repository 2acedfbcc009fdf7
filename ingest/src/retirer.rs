//! The retirer: subtracts every slice that has left a sliding window, exactly once ([`RedisStore::retire`]),
//! seals closed minutes into packed blobs ([`RedisStore::seal_minutes`]), and trims acknowledged log entries
//! past their retention. Several retirers may run: each step is atomic and
//! guarded by the window's cursor.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::domain::Window;
use topk_core::redis::{RedisStore, StoreError};
use topk_core::slices::minute_of;

/// Retires, on every partition and sliding window, every slice that has left the window at `now_ms`.
pub async fn retire_once(store: &RedisStore, now_ms: i64) -> Result<u32, StoreError> {
    let mut retired = 0;
    for p in store.keys().all_partitions() {
        for w in Window::SLIDING {
            retired += store.retire(p, w, now_ms).await?;
        }
    }
    Ok(retired)
}

/// Seals, on every partition, the minutes that ended at least a minute before `now_ms`. A worker that lags
/// more than that only reopens the minute's open string: sealing again later merges it.
pub async fn seal_once(store: &RedisStore, now_ms: i64) -> Result<u32, StoreError> {
    let mut sealed = 0;
    for p in store.keys().all_partitions() {
        sealed += store.seal_minutes(p, minute_of(now_ms) - 1).await?;
    }
    Ok(sealed)
}

/// Removes acknowledged log entries older than `retention` before `now_ms` on every partition.
pub async fn trim_once(
    store: &RedisStore,
    now_ms: i64,
    retention: Duration,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for p in store.keys().all_partitions() {
        removed += store
            .trim_log(p, now_ms - retention.as_millis() as i64)
            .await?;
    }
    Ok(removed)
}

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
        match retire_once(&store, now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(slices = n, "retired"),
            Err(e) => tracing::warn!(error = %e, "retire failed; retrying"),
        }
        match seal_once(&store, now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(minutes = n, "sealed"),
            Err(e) => tracing::warn!(error = %e, "sealing failed; retrying"),
        }
        if last_trim.is_none_or(|t| now - t >= 60_000) {
            last_trim = Some(now);
            match trim_once(&store, now, retention).await {
                Ok(n) if n > 0 => tracing::info!(entries = n, "trimmed the log"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "log trim failed"),
            }
        }
    }
}
