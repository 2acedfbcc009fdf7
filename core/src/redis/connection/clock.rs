//! Redis's clock: the clock that stamps log entries, so retirement reads the same one, and the deadline an
//! append carries on it (`lua/append.lua` writes nothing after it).

use crate::redis::{Result, Shared};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the reading of Redis's clock is refreshed (the two clocks only drift apart slowly).
const CLOCK_RESYNC: Duration = Duration::from_secs(10);

/// One reading of Redis's clock and the moment of our monotonic clock it arrived at. Redis's time now is
/// estimated from it by the monotonic time elapsed since, so a step of our wall clock (NTP, a manual change)
/// cannot move an append's deadline.
#[derive(Debug, Default)]
pub(in crate::redis) struct ClockOffset {
    reading: Mutex<Option<(Instant, i64)>>,
}

impl ClockOffset {
    /// Forgets the reading, so the next deadline reads Redis's clock again (after Redis was frozen or slow).
    pub(in crate::redis) fn forget(&self) {
        *self.reading.lock().expect("clock lock") = None;
    }

    /// Redis's time now, estimated from a reading younger than [`CLOCK_RESYNC`].
    fn estimate_ms(&self) -> Option<i64> {
        let reading = *self.reading.lock().expect("clock lock");
        reading
            .filter(|(at, _)| at.elapsed() <= CLOCK_RESYNC)
            .map(|(at, redis_ms)| redis_ms + at.elapsed().as_millis() as i64)
    }
}

impl Shared {
    /// Redis's clock in milliseconds: the clock that stamps log entries, so retirement uses the same one.
    pub async fn now_ms(&self) -> Result<i64> {
        self.now_ms_on(&self.keys.log(0)).await
    }
}

impl Shared {
    /// [`Self::now_ms`] read on the node that owns `key` (on a cluster, each node has its clock; they differ
    /// by what NTP leaves, far less than the deadlines built on them).
    pub(in crate::redis) async fn now_ms_on(&self, key: &str) -> Result<i64> {
        let (secs, micros): (i64, i64) = self.on_key("TIME", key, Vec::<String>::new()).await?;
        let redis_ms = secs * 1000 + micros / 1000;
        // Taking the reply's arrival as the moment Redis read its clock under-estimates Redis's time by at most
        // the round trip: deadlines then come early (a refusal too many), never late (a write after a 503).
        *self.clock.reading.lock().expect("clock lock") = Some((Instant::now(), redis_ms));
        Ok(redis_ms)
    }

    /// The latest time on Redis's clock at which an append sent now may still be written: three quarters of
    /// the command timeout, so that the reply has the last quarter to come back before the caller gives up.
    /// `key`: a key of the partition appended to, whose node is asked when the clock must be read again.
    pub(in crate::redis) async fn append_deadline_ms(&self, key: &str) -> Result<i64> {
        let redis_now = match self.clock.estimate_ms() {
            Some(ms) => ms,
            None => self.now_ms_on(key).await?,
        };
        Ok(redis_now + (self.timeout.as_millis() as i64) * 3 / 4)
    }
}
