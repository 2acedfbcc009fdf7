//! Backpressure: the receiver stops taking views while the workers are behind.
//!
//! Every view answered 202 sits in the log until a worker applies it, so a receiver that always says yes turns
//! slow workers (or none) into unbounded Redis memory. The backlog (entries not yet delivered to a worker plus
//! those delivered and not acknowledged, over all partitions) is measured by a background task every
//! [`REFRESH`] (`log_watch.rs`), not per request; the receiver answers 503 with `Retry-After` while it is over
//! the limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the backlog is measured: one script per partition each time (core's `lua/group_state.lua`: the
/// group's pending summary, its last delivered id and lag, and the first entry after it, read together).
pub const REFRESH: Duration = Duration::from_millis(200);
/// A measurement older than this refuses nothing. Redis is then failing or too slow to answer, and the append
/// itself answers 503; a receiver stuck refusing on an old figure would be worse.
pub const STALE_AFTER: Duration = Duration::from_secs(2);
/// Seconds a refused client is told to wait.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The latest backlog measurement, shared by the refresher and the handlers (atomics: read on every request).
#[derive(Debug)]
pub struct Backlog {
    limit: u64,
    entries: AtomicU64,
    /// Milliseconds after `epoch` of the latest measurement, plus one (0: never measured).
    measured_at: AtomicU64,
    epoch: Instant,
}

impl Backlog {
    /// A backlog limit of `limit` entries; 0 means no limit.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            entries: AtomicU64::new(0),
            measured_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// The limit in entries (0: none).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The backlog when it is over the limit and the measurement is fresh; None lets the request through.
    pub fn over_limit(&self) -> Option<u64> {
        if self.limit == 0 {
            return None;
        }
        let at = self.measured_at.load(Ordering::Acquire);
        let age = self.now_ms().saturating_sub(at.checked_sub(1)?);
        let entries = self.entries.load(Ordering::Relaxed);
        (age <= STALE_AFTER.as_millis() as u64 && entries > self.limit).then_some(entries)
    }

    /// Records a measurement.
    pub fn record(&self, entries: u64) {
        self.entries.store(entries, Ordering::Relaxed);
        self.measured_at.store(self.now_ms() + 1, Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The state `/readyz` reports: the backlog, the limit, and whether the receiver refuses views for it.
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "entries": self.entries.load(Ordering::Relaxed),
            "limit": self.limit,
            "refusing": self.over_limit().is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_over_the_limit_and_on_a_fresh_figure() {
        let b = Backlog::new(10);
        assert_eq!(b.over_limit(), None, "never measured");
        b.record(10);
        assert_eq!(b.over_limit(), None, "at the limit");
        b.record(11);
        assert_eq!(b.over_limit(), Some(11));
        let stale = Backlog {
            epoch: Instant::now() - STALE_AFTER - Duration::from_millis(100),
            ..Backlog::new(10)
        };
        stale.entries.store(11, Ordering::Relaxed);
        stale.measured_at.store(1, Ordering::Release);
        assert_eq!(stale.over_limit(), None, "stale");
        let off = Backlog::new(0);
        off.record(u64::MAX);
        assert_eq!(off.over_limit(), None, "no limit");
    }
}
