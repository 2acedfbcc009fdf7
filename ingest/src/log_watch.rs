//! The log watch: every [`REFRESH`] it measures where the workers stand on each partition's log, for the
//! receiver's backpressure ([`Backlog`]) and for the metrics `topk_log_backlog_entries{partition}` and
//! `topk_freshness_seconds` (the age of the oldest entry not yet applied, over every partition: how far the
//! rankings trail the views).

use crate::backpressure::{Backlog, REFRESH};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use topk_core::redis::{LogPosition, LogState, StoreError};

/// Where the workers stand on every partition (concurrently: one round trip's time, not P).
pub async fn measure(log: &LogState) -> Result<Vec<LogPosition>, StoreError> {
    futures::future::try_join_all(log.keys().all_partitions().map(|p| log.log_position(p))).await
}

/// Seconds from the oldest entry not yet applied to `now_ms` (0 when every partition is caught up).
pub fn freshness_seconds(positions: &[LogPosition], now_ms: i64) -> f64 {
    positions
        .iter()
        .filter_map(|p| p.oldest_waiting_ms)
        .min()
        .map_or(0.0, |oldest| (now_ms - oldest).max(0) as f64 / 1000.0)
}

/// Measures every [`REFRESH`] until `stop`; failures are logged (once per outage) and leave the figures to go
/// stale (the receiver then stops refusing on them, see [`Backlog::over_limit`]).
pub async fn run(log: LogState, backlog: Arc<Backlog>, stop: CancellationToken) {
    let mut failing_since: Option<Instant> = None;
    loop {
        let measured = async { Ok::<_, StoreError>((measure(&log).await?, log.now_ms().await?)) };
        match measured.await {
            Ok((positions, now_ms)) => {
                backlog.record(positions.iter().map(|p| p.backlog).sum());
                for (p, position) in log.keys().all_partitions().zip(&positions) {
                    metrics::gauge!("topk_log_backlog_entries", "partition" => p.to_string())
                        .set(position.backlog as f64);
                }
                metrics::gauge!("topk_freshness_seconds")
                    .set(freshness_seconds(&positions, now_ms));
                failing_since = None;
            }
            Err(e) => {
                if failing_since.is_none() {
                    tracing::warn!(error = %e, "could not measure the log's backlog");
                    failing_since = Some(Instant::now());
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_is_the_age_of_the_oldest_waiting_entry() {
        let at = |backlog, oldest| LogPosition {
            backlog,
            oldest_waiting_ms: oldest,
        };
        assert_eq!(freshness_seconds(&[at(0, None), at(0, None)], 10_000), 0.0);
        assert_eq!(
            freshness_seconds(
                &[at(3, Some(7_000)), at(1, Some(9_500)), at(0, None)],
                10_000
            ),
            3.0
        );
        assert_eq!(
            freshness_seconds(&[at(1, Some(10_200))], 10_000),
            0.0,
            "never negative"
        );
    }
}
