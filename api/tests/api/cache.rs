//! The API's ranking cache against a real redis-server.

use std::time::Duration;
use topk_api::cache::RankingCache;
use topk_core::domain::{TopK, VideoId, Window};
use topk_core::redis::RedisStore;
use topk_testkit::fixtures::apply_log;

async fn add(store: &RedisStore, video: &str, n: u64) {
    store
        .writer()
        .append(&[(VideoId::parse(video).unwrap(), n)])
        .await
        .unwrap();
    apply_log(store, "w", 100).await;
}

/// Requests within the TTL share one read; after it a background refresh brings new counts; k slices the
/// shared list exactly.
#[tokio::test]
async fn rankings_are_shared_for_the_ttl_then_refreshed() {
    let store = topk_testkit::fixtures::store("cache", 3).await;
    add(&store, "a", 2).await;
    add(&store, "b", 1).await;
    let cache = RankingCache::new(Duration::from_millis(300));
    let k = |n| TopK::new(n).unwrap();
    let first = cache
        .top(&store.rankings(), Window::All, k(10))
        .await
        .unwrap();
    assert_eq!(
        first
            .iter()
            .map(|r| (r.video_id.as_str(), r.views))
            .collect::<Vec<_>>(),
        [("a", 2), ("b", 1)]
    );

    add(&store, "c", 5).await;
    assert_eq!(
        cache
            .top(&store.rankings(), Window::All, k(10))
            .await
            .unwrap(),
        first,
        "served from the cache"
    );
    assert_eq!(
        cache
            .top(&store.rankings(), Window::All, k(1))
            .await
            .unwrap(),
        first[..1]
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Past the TTL the list in hand is still served while one refresh runs in the background; then the new one.
    assert_eq!(
        cache
            .top(&store.rankings(), Window::All, k(10))
            .await
            .unwrap(),
        first
    );
    let started = std::time::Instant::now();
    loop {
        let fresh = cache
            .top(&store.rankings(), Window::All, k(2))
            .await
            .unwrap();
        let fresh: Vec<(String, u64)> = fresh.into_iter().map(|r| (r.video_id, r.views)).collect();
        if fresh == [("c".to_owned(), 5), ("a".to_owned(), 2)] {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the refresh never landed: {fresh:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Without a TTL every request reads Redis.
    let uncached = RankingCache::new(Duration::ZERO);
    add(&store, "d", 9).await;
    assert_eq!(
        uncached
            .top(&store.rankings(), Window::All, k(1))
            .await
            .unwrap()[0]
            .video_id,
        "d"
    );
}
