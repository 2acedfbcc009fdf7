//! The window applier: what workers and the retirer may do with Redis.
//!
//! - `log`: the per-partition log read through the consumer group (new, own pending, claimed from a dead
//!   worker) and trimmed.
//! - `step`: the one step that makes a view count once: read, aggregate, apply with the acknowledgement. The
//!   workers' loop, the tests' fixture and `rebuild-redis`'s redo all call it.
//! - `windows`: the window scripts: apply with the acknowledgement, retire, refill, seal.

mod log;
mod step;
mod windows;

pub use log::{LogRead, LATE_RETENTION};
pub use step::{StepPlan, StepReport, StepSource};
pub use windows::{ApplyOutcome, LeaderCaps};

use super::store::{handle, Shared};

handle!(
    /// Applies the log to the windows, retires and seals them: the workers' and the retirer's handle.
    WindowApplier, store.applier
);
