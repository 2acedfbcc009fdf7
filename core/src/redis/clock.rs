//! Redis's clock: the clock that stamps log entries, so retirement reads the same one, and the deadline an
//! append carries on it (`lua/append.lua` writes nothing after it).

use super::{RedisStore, Result};
use fred::cmd;
use fred::prelude::*;
use std::time::Duration;

/// How often the estimate of Redis's clock against ours is refreshed (it only drifts).
const CLOCK_RESYNC: Duration = Duration::from_secs(10);

/// Redis's clock minus ours, so an append can carry its deadline on Redis's clock.
#[derive(Debug, Default)]
pub(super) struct ClockOffset {
    offset_ms: std::sync::atomic::AtomicI64,
    synced: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ClockOffset {
    /// Forgets the estimate, so the next deadline measures the clocks again (after Redis was frozen or slow).
    pub(super) fn forget(&self) {
        *self.synced.lock().expect("clock lock") = None;
    }
}

fn wall_clock_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl RedisStore {
    /// Redis's clock in milliseconds: the clock that stamps log entries, so retirement uses the same one.
    pub async fn now_ms(&self) -> Result<i64> {
        let (secs, micros): (i64, i64) = self
            .client
            .custom(cmd!("TIME"), Vec::<String>::new())
            .await?;
        let redis_ms = secs * 1000 + micros / 1000;
        // Taking the reply's arrival as the moment Redis read its clock under-estimates the offset by at most
        // the round trip: deadlines then come early (a refusal too many), never late (a write after a 503).
        self.clock.offset_ms.store(
            redis_ms - wall_clock_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
        *self.clock.synced.lock().expect("clock lock") = Some(std::time::Instant::now());
        Ok(redis_ms)
    }

    /// The latest time on Redis's clock at which an append sent now may still be written: three quarters of
    /// the command timeout, so that the reply has the last quarter to come back before the caller gives up.
    pub(super) async fn append_deadline_ms(&self) -> Result<i64> {
        let synced = *self.clock.synced.lock().expect("clock lock");
        if synced.is_none_or(|t| t.elapsed() > CLOCK_RESYNC) {
            self.now_ms().await?;
        }
        let offset = self
            .clock
            .offset_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        Ok(wall_clock_ms() + offset + (self.timeout.as_millis() as i64) * 3 / 4)
    }
}
