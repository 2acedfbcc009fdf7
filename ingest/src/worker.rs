//! Workers: one loop per partition runs core's apply step ([`WindowApplier::step`]: read the log through the
//! consumer group, aggregate the batch, apply it with its acknowledgement in one script call), so each view
//! counts exactly once.

use crate::config::IngestConfig;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_core::keys::Partition;
use topk_core::redis::{LogState, StepPlan, StepReport, StepSource, StoreError, WindowApplier};
use topk_core::supervise::Supervisor;

/// How every partition's loop ([`run_partition`]) reads and applies the log.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// This process's name in the log's consumer group.
    pub consumer: String,
    /// Log entries applied in one atomic step.
    pub max_entries: usize,
    /// Views a step aims for: entries are read as many as carry about this many, up to `max_entries`.
    pub batch_views: u64,
    /// The pause after a batch that drained the partition, so that views accumulate.
    pub batch_wait: Duration,
    /// How long an entry may stay pending with another consumer before it is claimed.
    pub claim_idle: Duration,
}

impl WorkerOptions {
    /// The options a configuration asks for. The consumer name is drawn here, once: without a configured
    /// name every call gives a new one, and all partitions of a process must share it.
    pub fn from_config(config: &IngestConfig) -> Self {
        Self {
            consumer: config.consumer(),
            max_entries: config.worker_batch_entries,
            batch_views: config.worker_batch_views,
            batch_wait: config.worker_batch_wait(),
            claim_idle: config.claim_idle(),
        }
    }
}

/// Creates the log's consumer groups, retrying every second while Redis cannot, and waits while a
/// `rebuild-redis` is unfinished; false when `stop` came first, an error when the deployment's recorded
/// layout is not this process's (retrying cannot fix that).
pub async fn wait_for_log_groups(
    applier: &WindowApplier,
    log: &LogState,
    stop: &CancellationToken,
) -> Result<bool, StoreError> {
    let mut told: Option<tokio::time::Instant> = None;
    loop {
        match applier.ensure_log_groups().await {
            Ok(()) => match log.interrupted_rebuilds().await {
                Ok(partitions) if partitions.is_empty() => return Ok(true),
                Ok(partitions) => {
                    if told.is_none_or(|at| at.elapsed() >= Duration::from_secs(30)) {
                        tracing::warn!(
                            ?partitions,
                            "rebuild-redis was interrupted on these partitions: the workers wait until it is \
                             run again to the end (topk-snapshotter rebuild-redis)"
                        );
                        told = Some(tokio::time::Instant::now());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "waiting for Redis"),
            },
            Err(e @ (StoreError::Layout { .. } | StoreError::Config(_))) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "waiting for Redis to create the log's consumer groups")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => return Ok(false),
        }
    }
}

/// Spawns one [`run_partition`] loop per partition into the process's supervisor.
pub fn spawn(
    tasks: &mut Supervisor,
    applier: &WindowApplier,
    options: &WorkerOptions,
    stop: &CancellationToken,
) {
    for p in applier.keys().all_partitions() {
        let (applier, options, stop) = (applier.clone(), options.clone(), stop.clone());
        tasks.spawn("worker", async move {
            run_partition(applier, p, options, stop).await;
            Ok(())
        });
    }
}

/// Counts a step that took entries: `topk_apply_batch_seconds`, and what it applied.
fn record_step(report: &StepReport, started: Instant) {
    metrics::histogram!("topk_apply_batch_seconds").record(started.elapsed().as_secs_f64());
    if !report.not_owned {
        metrics::counter!("topk_views_applied_total").increment(report.views);
        metrics::counter!("topk_log_entries_applied_total").increment(report.entries as u64);
    }
}

/// Runs [`WindowApplier::step`] on partition `p` until `stop` is cancelled; the batch in hand is always
/// finished first. After a batch smaller than asked (the log is drained) it waits until `options.batch_wait`
/// after that step's start, so views accumulate.
pub async fn run_partition(
    applier: WindowApplier,
    p: Partition,
    options: WorkerOptions,
    stop: CancellationToken,
) {
    let WorkerOptions {
        consumer,
        max_entries,
        batch_views,
        batch_wait,
        claim_idle,
    } = options;
    // Views per entry, as the last steps found them (a moving average): how many entries make `batch_views`.
    let mut views_per_entry = 1.0_f64;
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
        let started = Instant::now();
        let count = ((batch_views as f64 / views_per_entry).ceil() as usize).clamp(1, max_entries);
        let result = applier
            .step(p, &consumer, count, StepPlan { own_pending, claim })
            .await;
        // Own pending entries are re-read until none are left, and again after any step that may have left
        // some behind (a lost race, or an error that may have come before the apply).
        own_pending = match &result {
            Ok(r) => r.not_owned || (own_pending && r.source == Some(StepSource::OwnPending)),
            Err(_) => true,
        };
        match result {
            Ok(report) if report.entries > 0 => {
                record_step(&report, started);
                if !report.not_owned {
                    let found = report.views as f64 / report.entries as f64;
                    views_per_entry = (0.7 * views_per_entry + 0.3 * found).max(1.0);
                }
                tracing::debug!(
                    partition = p,
                    entries = report.entries,
                    views = report.views,
                    "applied"
                );
                if report.entries >= count {
                    idle = Duration::from_millis(1);
                    continue;
                }
                // Counted from the step's start: a view that just missed this step waits at most the batch
                // wait (plus the next step), however long this step took.
                idle = batch_wait.saturating_sub(started.elapsed());
            }
            Ok(_) => idle = (idle * 2).clamp(Duration::from_millis(1), Duration::from_millis(50)),
            Err(e) if e.is_missing_group() => {
                tracing::warn!(
                    partition = p,
                    "the log's consumer group is gone (Redis lost its data): recreating it"
                );
                if let Err(e) = applier.ensure_log_groups().await {
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
