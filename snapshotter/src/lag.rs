//! `topk_snapshot_lag_seconds`: how far the history in Postgres trails now. Read from the checkpoints, by
//! every snapshotter (a standby too), so the figure keeps growing while no one writes or Postgres cannot be
//! read: exactly when the alert should fire.

use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::slices::MINUTE_MS;

/// How often the checkpoints are read.
const EVERY: Duration = Duration::from_secs(10);

/// Seconds from the end of the newest minute every partition has written (the oldest checkpoint) to `now_ms`;
/// `None` before any partition wrote one (a new deployment trails nothing yet).
pub fn lag_seconds(minutes_through: impl IntoIterator<Item = i64>, now_ms: i64) -> Option<f64> {
    let oldest = minutes_through.into_iter().min()?;
    Some(((now_ms - (oldest + 1) * MINUTE_MS) as f64 / 1000.0).max(0.0))
}

/// Updates the gauge every `EVERY` until `stop`.
pub async fn watch(pool: PgPool, stop: CancellationToken) -> anyhow::Result<()> {
    let gauge = metrics::gauge!("topk_snapshot_lag_seconds");
    let mut through: Option<i64> = None;
    let mut failing = false;
    loop {
        match topk_core::db::checkpoints(&pool).await {
            Ok(checkpoints) => {
                through = checkpoints
                    .values()
                    .map(|c| c.minute_through)
                    .min()
                    .or(through);
                failing = false;
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot read the snapshot checkpoints; the lag keeps growing");
            }
            Err(_) => {}
        }
        if let Some(lag) = lag_seconds(through, chrono::Utc::now().timestamp_millis()) {
            gauge.set(lag);
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_runs_from_the_end_of_the_oldest_partition_minute() {
        let now = 100 * MINUTE_MS + 30_000;
        assert_eq!(lag_seconds([98, 97, 99], now), Some(150.0));
        assert_eq!(lag_seconds([99], now), Some(30.0));
        assert_eq!(lag_seconds([100], now), Some(0.0), "never negative");
        assert_eq!(lag_seconds([], now), None);
    }
}
