//! The API's ranking cache against a real redis-server, its time injected: the test moves the cache's clock
//! instead of sleeping past its TTL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use topk_api::cache::{Clock, RankingCache, MAX_AGE_TTLS};
use topk_core::domain::{TopK, VideoId, Window};
use topk_core::redis::RedisStore;
use topk_testkit::fixtures::apply_log;
use topk_testkit::wait_until;

async fn add(store: &RedisStore, video: &str, n: u64) {
    store
        .writer()
        .append(&[(VideoId::parse(video).unwrap(), n)])
        .await
        .unwrap();
    apply_log(store, "w", 100).await;
}

/// A clock that moves only when the test moves it.
struct TestClock(Mutex<Instant>);

impl TestClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

/// Requests within the TTL share one read; after it a background refresh brings new counts; past
/// [`MAX_AGE_TTLS`] TTLs a request reads Redis itself; k slices the shared list exactly.
#[tokio::test]
async fn rankings_are_shared_for_the_ttl_then_refreshed() {
    let store = topk_testkit::fixtures::store("cache", 3).await;
    add(&store, "a", 2).await;
    add(&store, "b", 1).await;
    let ttl = Duration::from_millis(300);
    let clock = Arc::new(TestClock(Mutex::new(Instant::now())));
    let cache = RankingCache::with_clock(ttl, clock.clone());
    let k = |n| TopK::new(n).unwrap();
    let top = |n| {
        let (cache, reads) = (&cache, store.rankings());
        async move {
            let top = cache.top(&reads, Window::All, k(n)).await.unwrap();
            top.into_iter()
                .map(|r| (r.video_id, r.views))
                .collect::<Vec<_>>()
        }
    };
    let rows = |rows: &[(&str, u64)]| -> Vec<(String, u64)> {
        rows.iter().map(|(v, n)| (v.to_string(), *n)).collect()
    };
    let first = top(10).await;
    assert_eq!(first, rows(&[("a", 2), ("b", 1)]));

    add(&store, "c", 5).await;
    clock.advance(ttl - Duration::from_millis(1));
    assert_eq!(top(10).await, first, "served from the cache");
    assert_eq!(top(1).await, first[..1]);

    // Past the TTL the list in hand is still served while one refresh runs in the background; then the new one.
    clock.advance(Duration::from_millis(50));
    assert_eq!(top(10).await, first);
    wait_until("the refresh to land", Duration::from_secs(2), || async {
        let fresh = top(2).await;
        if fresh == rows(&[("c", 5), ("a", 2)]) {
            Ok(())
        } else {
            Err(format!("{fresh:?}"))
        }
    })
    .await;

    // A list read more than MAX_AGE_TTLS TTLs ago is not served even once: the request reads Redis itself.
    add(&store, "d", 9).await;
    clock.advance(ttl * MAX_AGE_TTLS);
    assert_eq!(top(1).await, rows(&[("d", 9)]));

    // Without a TTL every request reads Redis.
    let uncached = RankingCache::new(Duration::ZERO);
    add(&store, "e", 10).await;
    assert_eq!(
        uncached
            .top(&store.rankings(), Window::All, k(1))
            .await
            .unwrap()[0]
            .video_id,
        "e"
    );
}
