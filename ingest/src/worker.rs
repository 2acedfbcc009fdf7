//! Workers: one loop per partition reads the log through the consumer group, aggregates the batch, and applies
//! it with its acknowledgement in one script call ([`RedisStore::apply`]), so each view counts exactly once.

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_core::batch::aggregate;
use topk_core::keys::Partition;
use topk_core::redis::{ApplyOutcome, LogRead, RedisStore, StoreError};

/// Where a step's entries came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Delivered to this consumer earlier and not acknowledged (a restart under the same name, a failed call).
    OwnPending,
    /// Left pending by another consumer for longer than the claim idle time (a dead worker).
    Claimed,
    /// Never delivered before.
    New,
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    pub entries: usize,
    pub views: u64,
    /// Where the entries came from; `None` when there was nothing to do.
    pub source: Option<Source>,
    /// Another worker claimed the entries meanwhile: nothing was applied.
    pub not_owned: bool,
}

/// What a step should look at besides new entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Re-read this consumer's own pending entries first (needed only after a restart or a failed step, so the
    /// steady state costs one read per step).
    pub own_pending: bool,
    /// Look for a dead worker's entries idle at least this long (XAUTOCLAIM scans the pending list).
    pub claim: Option<Duration>,
}

/// One step on partition `p`: take the oldest work this consumer should do (per `plan`, its own pending
/// entries, then entries a dead worker left; then new ones), aggregate it, and apply it atomically with the
/// acknowledgement.
pub async fn step(
    store: &RedisStore,
    p: Partition,
    consumer: &str,
    max_entries: usize,
    plan: StepPlan,
) -> Result<StepReport, StoreError> {
    let mut found = Vec::new();
    let mut source = Source::OwnPending;
    if plan.own_pending {
        found = store
            .read_log(p, consumer, LogRead::OwnPending, max_entries)
            .await?;
    }
    if found.is_empty() {
        if let Some(min_idle) = plan.claim {
            source = Source::Claimed;
            found = store
                .claim_stale(p, consumer, min_idle, max_entries)
                .await?;
        }
    }
    if found.is_empty() {
        source = Source::New;
        found = store
            .read_log(p, consumer, LogRead::New, max_entries)
            .await?;
    }
    if found.is_empty() {
        return Ok(StepReport::default());
    }
    let batch = aggregate(&found);
    for (id, why) in &batch.rejected {
        tracing::error!(partition = p, entry = %id, reason = %why, "undecodable log entry acknowledged without effect");
    }
    let mut report = StepReport {
        entries: found.len(),
        source: Some(source),
        ..StepReport::default()
    };
    match store.apply(p, consumer, &batch).await? {
        ApplyOutcome::Applied { views } => report.views = views,
        ApplyOutcome::NotOwned => {
            tracing::info!(
                partition = p,
                "entries were claimed by another worker; skipped"
            );
            report.not_owned = true;
        }
    }
    Ok(report)
}

/// Runs [`step`] on partition `p` until `stop` is cancelled; the batch in hand is always finished first.
/// After a batch smaller than `max_entries` (the log is drained) it waits `batch_wait` so views accumulate.
pub async fn run_partition(
    store: RedisStore,
    p: Partition,
    consumer: String,
    max_entries: usize,
    batch_wait: Duration,
    claim_idle: Duration,
    stop: CancellationToken,
) {
    // Looking for abandoned entries twice per claim period is enough to take them over promptly.
    let claim_every = (claim_idle / 2).max(Duration::from_millis(100));
    let mut last_claim = Instant::now() - claim_every;
    let mut idle = Duration::from_millis(1);
    // A process restarted under the same consumer name finds its unfinished entries here first.
    let mut own_pending = true;
    while !stop.is_cancelled() {
        let claim = (last_claim.elapsed() >= claim_every).then(|| {
            last_claim = Instant::now();
            claim_idle
        });
        let result = step(
            &store,
            p,
            &consumer,
            max_entries,
            StepPlan { own_pending, claim },
        )
        .await;
        // Own pending entries are re-read until none are left, and again after any step that may have left
        // some behind (a lost race, or an error that may have come before the apply).
        own_pending = match &result {
            Ok(r) => r.not_owned || (own_pending && r.source == Some(Source::OwnPending)),
            Err(_) => true,
        };
        match result {
            Ok(report) if report.entries > 0 => {
                tracing::debug!(
                    partition = p,
                    entries = report.entries,
                    views = report.views,
                    "applied"
                );
                if report.entries >= max_entries {
                    idle = Duration::from_millis(1);
                    continue;
                }
                idle = batch_wait;
            }
            Ok(_) => idle = (idle * 2).clamp(Duration::from_millis(1), Duration::from_millis(50)),
            Err(e) if e.is_missing_group() => {
                tracing::warn!(
                    partition = p,
                    "the log's consumer group is gone (Redis lost its data): recreating it"
                );
                if let Err(e) = store.ensure_log_groups().await {
                    tracing::warn!(error = %e, "could not recreate the consumer groups");
                }
                idle = Duration::from_millis(100);
            }
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
