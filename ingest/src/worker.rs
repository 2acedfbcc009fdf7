//! Workers: one loop per partition reads the log through the consumer group, aggregates the batch, and applies
//! it with its acknowledgement in one script call ([`RedisStore::apply`]), so each view counts exactly once.

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_core::batch::aggregate;
use topk_core::keys::Partition;
use topk_core::redis::{ApplyOutcome, LogRead, RedisStore, StoreError};

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    pub entries: usize,
    pub views: u64,
}

/// One step on partition `p`: take the oldest work this consumer should do (its own pending entries, then
/// entries a dead worker left, then new ones), aggregate it, and apply it atomically with the acknowledgement.
/// `claim` says whether to look for a dead worker's entries this time (XAUTOCLAIM scans the pending list).
pub async fn step(
    store: &RedisStore,
    p: Partition,
    consumer: &str,
    max_entries: usize,
    claim: Option<Duration>,
) -> Result<StepReport, StoreError> {
    let mut entries = store
        .read_log(p, consumer, LogRead::OwnPending, max_entries)
        .await?;
    if entries.is_empty() {
        if let Some(min_idle) = claim {
            entries = store
                .claim_stale(p, consumer, min_idle, max_entries)
                .await?;
        }
    }
    if entries.is_empty() {
        entries = store
            .read_log(p, consumer, LogRead::New, max_entries)
            .await?;
    }
    if entries.is_empty() {
        return Ok(StepReport::default());
    }
    let batch = aggregate(&entries);
    for (id, why) in &batch.rejected {
        tracing::error!(partition = p, entry = %id, reason = %why, "undecodable log entry acknowledged without effect");
    }
    match store.apply(p, consumer, &batch).await? {
        ApplyOutcome::Applied { views } => Ok(StepReport {
            entries: entries.len(),
            views,
        }),
        ApplyOutcome::NotOwned => {
            tracing::info!(
                partition = p,
                "entries were claimed by another worker; skipped"
            );
            Ok(StepReport::default())
        }
    }
}

/// Runs [`step`] on partition `p` until `stop` is cancelled; the batch in hand is always finished first.
pub async fn run_partition(
    store: RedisStore,
    p: Partition,
    consumer: String,
    max_entries: usize,
    claim_idle: Duration,
    stop: CancellationToken,
) {
    // Looking for abandoned entries twice per claim period is enough to take them over promptly.
    let claim_every = (claim_idle / 2).max(Duration::from_millis(100));
    let mut last_claim = Instant::now() - claim_every;
    let mut idle = Duration::from_millis(1);
    while !stop.is_cancelled() {
        let claim = (last_claim.elapsed() >= claim_every).then(|| {
            last_claim = Instant::now();
            claim_idle
        });
        match step(&store, p, &consumer, max_entries, claim).await {
            Ok(report) if report.entries > 0 => {
                idle = Duration::from_millis(1);
                tracing::debug!(
                    partition = p,
                    entries = report.entries,
                    views = report.views,
                    "applied"
                );
                continue;
            }
            Ok(_) => idle = (idle * 2).min(Duration::from_millis(50)),
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "worker step failed; retrying");
                idle = Duration::from_millis(500);
            }
        }
        // Polling with a short back-off instead of XREADGROUP BLOCK keeps one shared connection usable by all
        // partitions; an idle partition costs at most 20 reads a second.
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = stop.cancelled() => {}
        }
    }
}
