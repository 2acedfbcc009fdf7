//! Recovery: restoring, seeding and inspecting window state.
//!
//! - `rebuild`: `rebuild-redis`'s restore of a partition from Postgres, and the redo of what the workers had
//!   applied past the checkpoint.
//! - `seeding`: window hashes, leader sets and sealed minutes written whole (restores, benchmark fills).
//! - `inspect`: window hashes, leader sets and cursors as they are, for `verify` and tests.

mod inspect;
mod rebuild;
mod seeding;

use super::store::{handle, Shared};

handle!(
    /// Restore, seeding and inspection: the handle of `rebuild-redis`, `verify`, tests and the benchmark.
    Recovery, store.recovery
);
