//! A briefly cached top list per window, shared by every request.
//!
//! Reading P partitions' top 1000 with scores and merging them costs milliseconds; doing it for every request
//! would put that on every request and make Redis the ceiling of the query rate. Instead the merged top
//! [`MAX_K`] of each window is kept and every request takes its first K. Once the list is older than `ttl`
//! (default 200 ms), the next request starts one refresh in the background and is answered from the list in
//! hand, so no request waits for Redis except the very first of a window. Redis sees at most one read per
//! window per `ttl`, however many requests arrive.
//!
//! A list's age counts from the moment its read *started* (the counts can be no older than that), and a read
//! that finishes late never replaces a list whose read started later, so the counts served never go back.
//! The bound the code enforces: a list is served at most [`MAX_AGE_TTLS`] × `ttl` after its read started
//! (1 s by default); past that, a request reads Redis itself and fails like any other read when Redis is
//! unreachable. Each list is kept serialized too, so a request for the top K copies a
//! prefix of bytes instead of cloning and encoding K entries (most of a k = 1000 request's time otherwise), and
//! a request for the whole list (k = 1000, the largest answer) shares the bytes without copying them.
//!
//! Ages are read from a [`Clock`]: the system's monotonic clock in service, a clock a test moves by hand, so
//! that a test sets a list's age instead of sleeping through it.

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use topk_core::domain::{RankedVideo, TopK, Window, MAX_K};
use topk_core::redis::{RankingReads, StoreError};

type Ranking = Arc<CachedRanking>;

/// A merged ranking and its JSON array, with where each entry ends in it.
#[derive(Debug)]
pub struct CachedRanking {
    list: Vec<RankedVideo>,
    json: Bytes,
    ends: Vec<usize>,
    /// When the read of this ranking from Redis started (`Topk-As-Of`).
    pub as_of: DateTime<Utc>,
}

impl CachedRanking {
    /// Serializes `list`, read now.
    pub fn new(list: Vec<RankedVideo>) -> Self {
        Self::read_at(list, Utc::now())
    }

    /// Serializes `list`, whose read started at `as_of`, once, noting where each entry ends.
    pub fn read_at(list: Vec<RankedVideo>, as_of: DateTime<Utc>) -> Self {
        let mut json = Vec::with_capacity(32 * list.len() + 2);
        let mut ends = Vec::with_capacity(list.len());
        json.push(b'[');
        for (i, entry) in list.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            serde_json::to_writer(&mut json, entry).expect("a ranked video always serializes");
            ends.push(json.len());
        }
        json.push(b']');
        Self {
            list,
            json: json.into(),
            ends,
            as_of,
        }
    }

    /// The 1-based rank of `video` in this ranking, if it is in it.
    pub fn rank_of(&self, video: &str) -> Option<usize> {
        self.list
            .iter()
            .position(|v| v.video_id == video)
            .map(|i| i + 1)
    }

    /// The first `k` entries.
    pub fn top(&self, k: TopK) -> Vec<RankedVideo> {
        self.list.iter().take(k.get()).cloned().collect()
    }

    /// The first `k` entries as a JSON array: the same bytes `serde_json` gives for [`Self::top`].
    pub fn top_json(&self, k: TopK) -> Bytes {
        let k = k.get();
        if k >= self.ends.len() {
            return self.json.clone();
        }
        // k >= 1 (a TopK), so entry k - 1 exists and ends where the prefix does.
        let end = self.ends[k - 1];
        let mut out = Vec::with_capacity(end + 1);
        out.extend_from_slice(&self.json[..end]);
        out.push(b']');
        out.into()
    }
}

/// Where the cache reads the time. The Redis-side window arithmetic takes its time as an argument (core); this
/// is the cache's equivalent.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock, the cache's in service.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How many TTLs old a list may be while it is still served (a refresh under way, or failing).
pub const MAX_AGE_TTLS: u32 = 5;

/// One window's list, stamped with when its read started, and whether a refresh is under way.
#[derive(Default)]
struct Entry {
    top: Option<(Instant, Ranking)>,
    refreshing: bool,
}

impl Entry {
    /// Keeps `top`, read from a start at `started`, unless the list in hand comes from a later read: a slow
    /// refresh must not replace what a later direct read put there.
    fn keep_newer(&mut self, started: Instant, top: Ranking) {
        if self.top.as_ref().is_none_or(|(at, _)| *at <= started) {
            self.top = Some((started, top));
        }
    }

    /// When the read of the list in hand started.
    fn read_started(&self) -> Option<Instant> {
        self.top.as_ref().map(|(at, _)| *at)
    }
}

/// Clears the refreshing flag however the refresh ends, a panic included, so a later request can start one.
struct Refreshing(Arc<Mutex<Entry>>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        if let Ok(mut entry) = self.0.lock() {
            entry.refreshing = false;
        }
    }
}

/// The per-window cache.
pub struct RankingCache {
    ttl: Duration,
    clock: Arc<dyn Clock>,
    windows: [Arc<Mutex<Entry>>; 4],
}

impl RankingCache {
    /// `ttl` zero turns caching off (every request reads Redis).
    pub fn new(ttl: Duration) -> Self {
        Self::with_clock(ttl, Arc::new(SystemClock))
    }

    /// [`Self::new`] reading ages from `clock`.
    pub fn with_clock(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            ttl,
            clock,
            windows: Default::default(),
        }
    }

    fn slot(window: Window) -> usize {
        match window {
            Window::Minute => 0,
            Window::Hour => 1,
            Window::Day => 2,
            Window::All => 3,
        }
    }

    /// Reads the whole top list of `window`; returns it with the moment the read started.
    async fn read(
        reads: &RankingReads,
        window: Window,
        clock: &dyn Clock,
    ) -> Result<(Instant, Ranking), StoreError> {
        // `as_of` is the wall time a client is told (`Topk-As-Of`); ages are measured on `clock`.
        let (started, as_of) = (clock.now(), Utc::now());
        let top = reads.top(window, TopK::new(MAX_K).expect("max k")).await?;
        Ok((started, Arc::new(CachedRanking::read_at(top, as_of))))
    }

    /// The top `k` of `window`, at most `ttl` plus one refresh old.
    pub async fn top(
        &self,
        reads: &RankingReads,
        window: Window,
        k: TopK,
    ) -> Result<Vec<RankedVideo>, StoreError> {
        Ok(self.ranking(reads, window, k).await?.top(k))
    }

    /// [`Self::top`] as a JSON array, and when its read started.
    pub async fn top_json(
        &self,
        reads: &RankingReads,
        window: Window,
        k: TopK,
    ) -> Result<(Bytes, DateTime<Utc>), StoreError> {
        let ranking = self.ranking(reads, window, k).await?;
        Ok((ranking.top_json(k), ranking.as_of))
    }

    /// The 1-based rank of `video` in `window`'s top [`MAX_K`], if it is there.
    pub async fn rank_of(
        &self,
        reads: &RankingReads,
        window: Window,
        video: &str,
    ) -> Result<Option<usize>, StoreError> {
        let whole = TopK::new(MAX_K).expect("max k");
        Ok(self.ranking(reads, window, whole).await?.rank_of(video))
    }

    /// How long a ranking is shared (zero: never).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A ranking holding at least the top `k` of `window`.
    async fn ranking(
        &self,
        reads: &RankingReads,
        window: Window,
        k: TopK,
    ) -> Result<Ranking, StoreError> {
        if self.ttl.is_zero() {
            let as_of = Utc::now();
            let top = Arc::new(CachedRanking::read_at(reads.top(window, k).await?, as_of));
            record_age(window, Duration::ZERO);
            return Ok(top);
        }
        let slot = self.windows[Self::slot(window)].clone();
        let now = self.clock.now();
        // A std mutex: it is held only to look at or swap the entry, never across an await.
        let (current, refresh) = {
            let mut entry = slot.lock().expect("cache lock");
            let stale = entry
                .top
                .as_ref()
                .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= self.ttl);
            let refresh = stale && !entry.refreshing && entry.top.is_some();
            entry.refreshing |= refresh;
            (entry.top.clone(), refresh)
        };
        if refresh {
            let (reads, slot, clock) = (reads.clone(), slot.clone(), self.clock.clone());
            tokio::spawn(async move {
                let _refreshing = Refreshing(slot.clone());
                let read = Self::read(&reads, window, clock.as_ref()).await;
                let mut entry = slot.lock().expect("cache lock");
                match read {
                    Ok((started, top)) => entry.keep_newer(started, top),
                    // Keep serving the list in hand; the next request tries again.
                    Err(e) => {
                        tracing::warn!(error = %e, window = %window, "ranking refresh failed")
                    }
                }
            });
        }
        let (started, top) = match current {
            Some(current) if current_is_usable(&slot, self.ttl, now) => current,
            _ => {
                let (started, top) = Self::read(reads, window, self.clock.as_ref()).await?;
                slot.lock()
                    .expect("cache lock")
                    .keep_newer(started, top.clone());
                (started, top)
            }
        };
        record_age(window, self.clock.now().saturating_duration_since(started));
        Ok(top)
    }
}

/// Sets `topk_ranking_age_seconds{window}`: how old the ranking just served is.
fn record_age(window: Window, age: Duration) {
    metrics::gauge!("topk_ranking_age_seconds", "window" => window.as_str()).set(age.as_secs_f64());
}

/// A list in hand may be served while a refresh is under way, but never once its read started more than
/// [`MAX_AGE_TTLS`] TTLs before `now` (Redis unreachable for a while): then the request reads Redis itself.
fn current_is_usable(slot: &Mutex<Entry>, ttl: Duration, now: Instant) -> bool {
    slot.lock()
        .expect("cache lock")
        .read_started()
        .is_some_and(|at| now.saturating_duration_since(at) < ttl * MAX_AGE_TTLS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ranking(views: u64) -> Ranking {
        Arc::new(CachedRanking::new(vec![RankedVideo {
            video_id: "v".into(),
            views,
        }]))
    }

    proptest! {
        /// Reads finishing in any order leave the list whose read started last: a slow refresh never puts
        /// older counts back over a later read's.
        #[test]
        fn the_list_of_the_latest_started_read_is_kept(order in Just((0..6u64).collect::<Vec<_>>()).prop_shuffle()) {
            let origin = Instant::now();
            let mut entry = Entry::default();
            for i in order {
                // The read started i ms after the origin and saw i views (counts only grow here).
                entry.keep_newer(origin + Duration::from_millis(i), ranking(i));
            }
            let (at, top) = entry.top.unwrap();
            prop_assert_eq!(at, origin + Duration::from_millis(5));
            prop_assert_eq!(top.top(TopK::new(1).unwrap())[0].views, 5);
        }

        /// The cached bytes of any prefix are exactly what serializing that prefix gives.
        #[test]
        fn top_json_is_the_serialized_prefix(
            list in proptest::collection::vec(("\\PC{0,12}", any::<u64>()), 0..40),
            k in 1usize..50,
        ) {
            let list: Vec<RankedVideo> = list
                .into_iter()
                .map(|(video_id, views)| RankedVideo { video_id, views })
                .collect();
            let k = TopK::new(k).unwrap();
            let cached = CachedRanking::new(list.clone());
            let expected = serde_json::to_vec(&list.iter().take(k.get()).collect::<Vec<_>>()).unwrap();
            prop_assert_eq!(cached.top_json(k), expected);
            prop_assert_eq!(cached.top(k), list.into_iter().take(k.get()).collect::<Vec<_>>());
        }
    }
}
