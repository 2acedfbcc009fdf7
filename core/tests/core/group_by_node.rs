//! A group append on Redis Cluster is one script per primary, not one per partition; when the writer's map of
//! the primaries is stale (a slot moved since it was read) or a slot is migrating, the node's script fails
//! having written nothing and its partitions go one by one: every view is still counted once. On a cluster of
//! its own, so that its script calls can be counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use topk_core::domain::{VideoId, Window};
use topk_core::redis::{AppendRequest, RedisStore};
use topk_testkit::fixtures::{apply_log, redis_config_at, store_for, window_counts};
use topk_testkit::{slot_of, RedisCluster};

const RETENTION: Duration = Duration::from_secs(60);

fn batch(prefix: &str, n: u64) -> Vec<(VideoId, u64)> {
    (0..n)
        .map(|i| (VideoId::parse(&format!("{prefix}{i}")).unwrap(), i + 1))
        .collect()
}

/// EVALSHA calls served by the cluster's primaries since the last call.
fn script_calls(cluster: &RedisCluster) -> u64 {
    let mut calls = 0;
    for port in cluster.primaries() {
        let mut conn = cluster.conn(port);
        let stats = conn.cmd(&["INFO", "commandstats"]).unwrap().text().unwrap();
        calls += stats
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse::<u64>().unwrap());
        conn.cmd(&["CONFIG", "RESETSTAT"]).unwrap();
    }
    calls
}

/// Appends the group of `batches` (no keys: each gets one generated) and returns how many scripts it took.
async fn append(
    store: &RedisStore,
    cluster: &RedisCluster,
    batches: &[Vec<(VideoId, u64)>],
) -> u64 {
    script_calls(cluster);
    let requests: Vec<AppendRequest> = batches
        .iter()
        .map(|views| AppendRequest {
            views,
            dated: &[],
            key: None,
        })
        .collect();
    for outcome in store.writer().append_group(&requests, RETENTION).await {
        outcome.expect("a group stored");
    }
    script_calls(cluster)
}

/// A primary other than the one serving `slot`.
fn another_primary(cluster: &RedisCluster, slot: u16) -> u16 {
    let from = cluster.primary_for_slot(slot);
    *cluster.primaries().iter().find(|&&p| p != from).unwrap()
}

#[tokio::test]
async fn a_group_is_one_script_per_primary_and_falls_back_per_partition_while_slots_move() {
    let cluster = Arc::new(RedisCluster::start(3, 2000));
    let store = store_for(&redis_config_at(&cluster.url(), "by_node", 16)).await;
    let mut sent: Vec<Vec<(VideoId, u64)>> = Vec::new();

    // The first group loads the script on each primary (NOSCRIPT, then EVALSHA again).
    let warm = vec![batch("w", 200)];
    append(&store, &cluster, &warm).await;
    sent.extend(warm);
    // Every partition touched, three primaries: three scripts.
    let first = vec![batch("a", 200), batch("b", 200)];
    assert_eq!(append(&store, &cluster, &first).await, 3);
    sent.extend(first);

    // A slot moved since the map was read: the old owner's script fails at its first read of a key it no
    // longer serves, and the group still lands whole.
    let moved = slot_of(&store.keys().log(0));
    cluster.migrate_slot(moved, another_primary(&cluster, moved));
    let second = vec![batch("c", 200)];
    assert!(append(&store, &cluster, &second).await > 3, "fell back");
    sent.push(second[0].clone());

    // A slot migrating while a group is appended: a key of the slot missing on its old owner fails the node's
    // script before it writes, and the partition waits for the slot (TRYAGAIN, ASK) on its own.
    let migrating = slot_of(&store.keys().log(1));
    let to = another_primary(&cluster, migrating);
    let (marked, slot_marked) = tokio::sync::oneshot::channel();
    let mover = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            let mut marked = Some(marked);
            cluster.migrate_slot_each(migrating, to, 1, |_| {
                if let Some(marked) = marked.take() {
                    let _ = marked.send(());
                    // The group meets the slot mid-move; the move goes on while it waits.
                    std::thread::sleep(Duration::from_millis(300));
                }
            });
        })
    };
    slot_marked.await.unwrap();
    let third = vec![batch("d", 200), batch("e", 200)];
    assert!(append(&store, &cluster, &third).await > 3, "fell back");
    mover.await.unwrap();
    sent.extend(third);

    apply_log(&store, "w", 1000).await;
    let mut want: HashMap<String, u64> = HashMap::new();
    for (v, n) in sent.iter().flatten() {
        *want.entry(v.as_str().to_owned()).or_default() += n;
    }
    let got = window_counts(&store, Window::All).await;
    let wrong: Vec<(&String, u64, Option<&u64>)> = want
        .iter()
        .filter(|(v, n)| got.get(*v) != Some(n))
        .map(|(v, n)| (v, *n, got.get(v)))
        .collect();
    assert!(wrong.is_empty(), "(video, sent, counted): {wrong:?}");
    assert_eq!(got.len(), want.len());
}
