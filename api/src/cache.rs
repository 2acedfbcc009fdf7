//! A briefly cached top list per window, shared by every request.
//!
//! Reading P partitions' top 1000 with scores costs Redis a few hundred microseconds per partition; doing it
//! for every request would make Redis the ceiling of the query rate. Instead the merged top [`MAX_K`] of each
//! window is kept for `ttl` (default 200 ms, well inside the freshness goal of about a second) and every
//! request takes its first K. One request refreshes an expired entry while the others wait for it (single
//! flight), so Redis sees at most one read per window per `ttl`, however many requests arrive.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use topk_core::domain::{RankedVideo, TopK, Window, MAX_K};
use topk_core::redis::{RedisStore, StoreError};

#[derive(Default)]
struct Entry {
    top: Option<(Instant, Arc<Vec<RankedVideo>>)>,
}

/// The per-window cache.
pub struct RankingCache {
    ttl: Duration,
    windows: [Mutex<Entry>; 4],
}

impl RankingCache {
    /// `ttl` zero turns caching off (every request reads Redis).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
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

    /// The top `k` of `window`, at most `ttl` old.
    pub async fn top(
        &self,
        store: &RedisStore,
        window: Window,
        k: TopK,
    ) -> Result<Vec<RankedVideo>, StoreError> {
        if self.ttl.is_zero() {
            return store.top(window, k).await;
        }
        // Holding the lock while refreshing is the single flight: concurrent requests wait for one read.
        let mut entry = self.windows[Self::slot(window)].lock().await;
        let fresh = entry
            .top
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, top)| top.clone());
        let top = match fresh {
            Some(top) => top,
            None => {
                let top = Arc::new(store.top(window, TopK::new(MAX_K).expect("max k")).await?);
                entry.top = Some((Instant::now(), top.clone()));
                top
            }
        };
        drop(entry);
        Ok(top.iter().take(k.get()).cloned().collect())
    }
}
