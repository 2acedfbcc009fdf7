//! The one step that makes a view count once: take a partition's oldest work for a consumer, aggregate it per
//! (slice, video), and apply it with its acknowledgement in one script. The workers' loop, the tests' fixture
//! and `rebuild-redis`'s redo all call it, so there is one definition of "applied".

use super::windows::ApplyOutcome;
use super::LogRead;
use crate::aggregate::aggregate;
use crate::batch::LogEntry;
use crate::keys::Partition;
use crate::redis::{Result, WindowApplier};
use std::time::Duration;

/// Where a step's entries came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepSource {
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
    /// Log entries taken.
    pub entries: usize,
    /// Views applied (0 when another worker owned the entries).
    pub views: u64,
    /// Where the entries came from; `None` when there was nothing to do.
    pub source: Option<StepSource>,
    /// Another worker claimed the entries meanwhile: nothing was applied.
    pub not_owned: bool,
    /// The newest entry taken, if any.
    pub last: Option<crate::batch::EntryId>,
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

impl WindowApplier {
    /// One step on partition `p`: take the oldest work this consumer should do (per `plan`, its own pending
    /// entries, then entries a dead worker left; then new ones), aggregate it, and apply it atomically with the
    /// acknowledgement.
    pub async fn step(
        &self,
        p: Partition,
        consumer: &str,
        max_entries: usize,
        plan: StepPlan,
    ) -> Result<StepReport> {
        self.step_counting(p, consumer, max_entries, plan, |_| true)
            .await
    }

    /// [`Self::step`] counting only the entries `counts` keeps; the others are acknowledged without effect
    /// (the rebuild's redo skips what Postgres already holds).
    pub(in crate::redis) async fn step_counting(
        &self,
        p: Partition,
        consumer: &str,
        max_entries: usize,
        plan: StepPlan,
        counts: impl Fn(&LogEntry) -> bool,
    ) -> Result<StepReport> {
        let mut found = Vec::new();
        let mut source = StepSource::OwnPending;
        if plan.own_pending {
            found = self
                .read_log(p, consumer, LogRead::OwnPending, max_entries)
                .await?;
        }
        if found.is_empty() {
            if let Some(min_idle) = plan.claim {
                source = StepSource::Claimed;
                found = self.claim_stale(p, consumer, min_idle, max_entries).await?;
            }
        }
        if found.is_empty() {
            source = StepSource::New;
            found = self
                .read_log(p, consumer, LogRead::New, max_entries)
                .await?;
        }
        let Some(last) = found.last().map(|e| e.id) else {
            return Ok(StepReport::default());
        };
        let counted: Vec<LogEntry> = found.iter().filter(|e| counts(e)).cloned().collect();
        let mut batch = aggregate(&counted);
        // Every entry taken is acknowledged, counted or not.
        batch.ids = found.iter().map(|e| e.id).collect();
        for (id, why) in &batch.rejected {
            tracing::error!(partition = p, entry = %id, reason = %why, "undecodable log entry acknowledged without effect");
        }
        let mut report = StepReport {
            entries: found.len(),
            source: Some(source),
            last: Some(last),
            ..StepReport::default()
        };
        match self.apply(p, consumer, &batch).await? {
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
}
