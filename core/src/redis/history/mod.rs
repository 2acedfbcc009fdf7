//! The snapshotter's feed: how history gets every view exactly once.
//!
//! - `closed`: minutes closed and frozen for the snapshotter, and the late views that reach history after.
//! - `buckets`: slice and minute buckets read back (closed minutes, reference sums for `verify`).

mod buckets;
mod closed;

pub use closed::LateViews;

use super::store::{handle, Shared};

handle!(
    /// Closed minutes, frozen copies and late views: the snapshotter's handle.
    HistoryFeed, store.history
);
