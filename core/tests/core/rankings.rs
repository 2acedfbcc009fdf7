//! Ranking reads on a Redis Cluster while a partition's slot moves: each partition's threshold and leaders are
//! read in one transaction, which must follow the slot (keys moved one at a time) as single commands do.

use std::sync::Arc;
use std::time::Duration;
use topk_core::domain::{rank, RankedVideo, TopK, Window};
use topk_testkit::fixtures::{redis_config_at, seed_partitions, store_for, TINY_LEADER_CAPS};
use topk_testkit::{slot_of, RedisCluster};

/// Partition 0's slot moves key by key (its window hash, leader set and leader state go separately) while the
/// top K is read again and again: every read answers, and with the exact ranking. Tiny leader caps make the
/// ranking need partition 0's threshold, and its hash for K above its leaders.
#[tokio::test]
async fn rankings_stay_exact_while_a_partition_migrates() {
    let cluster = Arc::new(RedisCluster::start(3, 2000));
    let config = redis_config_at(&cluster.url(), "moving_top", 4);
    let store = store_for(&config).await.with_leader_caps(TINY_LEADER_CAPS);
    let all = seed_partitions(&store, Window::Hour, 4, 40, |p, i| {
        if p == 0 {
            1_000 - i
        } else {
            40 - i
        }
    })
    .await;
    let want: Vec<RankedVideo> = rank(all);
    let k = TopK::new(50).unwrap();
    let slot = slot_of(&store.keys().window(0, Window::Hour));
    let from = cluster.primary_for_slot(slot);
    let to = *cluster
        .primaries()
        .iter()
        .find(|&&p| p != from)
        .expect("another primary");
    let mover = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            cluster.migrate_slot_each(slot, to, 1, |_| {
                std::thread::sleep(Duration::from_millis(300))
            });
        })
    };
    let mut reads = 0;
    while !mover.is_finished() {
        let got = store.rankings().top(Window::Hour, k).await;
        let got = got.unwrap_or_else(|e| panic!("read {reads} during the move failed: {e}"));
        assert_eq!(
            got,
            want[..k.get()].to_vec(),
            "read {reads} during the move"
        );
        reads += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mover.await.unwrap();
    assert!(reads >= 10, "only {reads} reads during the move");
    assert_eq!(
        store.rankings().top(Window::Hour, k).await.unwrap(),
        want[..k.get()].to_vec()
    );
}
