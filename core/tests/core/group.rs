//! Batches appended as a group (the receiver's group commit): one log entry per partition for the whole
//! group, each batch answered as if it had been appended alone (its key refused alone, its retry stored
//! once), and every view counted once; on one node and on a cluster. On a cluster a group is one script per
//! primary, not one per partition; when the writer's map of the primaries is stale (a slot moved since it was
//! read) or a slot is migrating, the node's script fails having written nothing and its partitions go one by
//! one (tested on a cluster of its own, so that its script calls can be counted).

use std::sync::Arc;
use std::time::Duration;
use topk_core::domain::{IdempotencyKey, VideoId, Window};
use topk_core::redis::{AppendOutcome, AppendRequest, RedisStore, StoreError};
use topk_testkit::fixtures::{
    apply_log, redis_config, redis_config_at, store_for, views_by_video, window_counts,
};
use topk_testkit::{cluster_url, slot_of, RedisCluster, RedisConn};

const RETENTION: Duration = Duration::from_secs(60);

fn batch(prefix: &str, n: u64) -> Vec<(VideoId, u64)> {
    (0..n)
        .map(|i| (VideoId::parse(&format!("{prefix}{i}")).unwrap(), i + 1))
        .collect()
}

fn key(name: &str) -> IdempotencyKey {
    IdempotencyKey::parse(name).unwrap()
}

/// What a batch was answered, in a word, so that a group's answers compare as one list.
fn answer(outcome: &Result<AppendOutcome, StoreError>) -> &'static str {
    match outcome {
        Ok(AppendOutcome::Stored) => "stored",
        Ok(AppendOutcome::AlreadyStored) => "already stored",
        Err(StoreError::KeyReused) => "key reused",
        _ => "something else",
    }
}

/// A batch of one group: `views` without an event time of their own, under `key` if any.
fn request<'a>(views: &'a [(VideoId, u64)], key: Option<&'a IdempotencyKey>) -> AppendRequest<'a> {
    AppendRequest {
        views,
        dated: &[],
        key,
    }
}

/// Log entries over every partition of `store`, read with the test's own client.
fn entries(url: &str, store: &RedisStore) -> u64 {
    let mut total = 0;
    for p in store.keys().all_partitions() {
        let log = store.keys().log(p);
        let port = topk_testkit::port_serving(url, &log);
        let mut conn = RedisConn::open(port).unwrap();
        total += conn.cmd(&["XLEN", &log]).unwrap().int().unwrap() as u64;
    }
    total
}

async fn a_group_is_one_entry_per_partition_and_each_batch_counts_once(url: String, label: &str) {
    let store = store_for(&redis_config_at(&url, label, 4)).await;
    let writer = store.writer();
    let (a, b, c, d) = (batch("a", 8), batch("b", 8), batch("c", 8), batch("d", 8));
    let (kb, held) = (key("kb"), key("held"));
    writer
        .append_idempotent(&d, &held, RETENTION)
        .await
        .unwrap();
    let requests = [
        request(&a, None),
        request(&b, Some(&kb)),
        // The same key with another batch: refused alone.
        request(&c, Some(&held)),
        // Sent again under its key: stored before, not again.
        request(&d, Some(&held)),
    ];
    let before = entries(&url, &store);
    let outcomes = writer.append_group(&requests, RETENTION).await;
    assert_eq!(
        outcomes.iter().map(answer).collect::<Vec<_>>(),
        ["stored", "stored", "key reused", "already stored"],
        "{outcomes:?}"
    );
    // a and b touch all 4 partitions: one entry each for the group.
    assert_eq!(entries(&url, &store) - before, 4);
    // b's retry alone is stored before.
    let again = writer.append_idempotent(&b, &kb, RETENTION).await;
    assert_eq!(answer(&again), "already stored", "{again:?}");

    apply_log(&store, "w", 100).await;
    let want = views_by_video(a.iter().chain(&b).chain(&d));
    assert_eq!(window_counts(&store, Window::All).await, want);
}

#[tokio::test]
async fn a_group_on_one_node() {
    let url = topk_testkit::servers().redis_url.clone();
    a_group_is_one_entry_per_partition_and_each_batch_counts_once(url, "group").await;
}

#[tokio::test]
async fn a_group_on_a_cluster() {
    a_group_is_one_entry_per_partition_and_each_batch_counts_once(cluster_url(), "group_cluster")
        .await;
}

/// A producer that sends a batch again while its first request still waits in the receiver's group puts the
/// same key twice into one group: the second copy is answered "already stored", and a copy with another batch
/// under that key is refused; nothing counts twice.
async fn the_same_key_twice_in_one_group_stores_its_batch_once(url: String, label: &str) {
    let store = store_for(&redis_config_at(&url, label, 4)).await;
    let writer = store.writer();
    let (a, b) = (batch("ta", 8), batch("tb", 8));
    let k = key("twice");
    let requests = [
        request(&a, Some(&k)),
        request(&a, Some(&k)),
        request(&b, Some(&k)),
    ];
    let outcomes = writer.append_group(&requests, RETENTION).await;
    assert_eq!(
        outcomes.iter().map(answer).collect::<Vec<_>>(),
        ["stored", "already stored", "key reused"],
        "{outcomes:?}"
    );
    apply_log(&store, "w", 100).await;
    let want = views_by_video(&a);
    assert_eq!(window_counts(&store, Window::All).await, want);
}

#[tokio::test]
async fn the_same_key_twice_in_one_group_on_one_node() {
    let url = topk_testkit::servers().redis_url.clone();
    the_same_key_twice_in_one_group_stores_its_batch_once(url, "group_twice").await;
}

#[tokio::test]
async fn the_same_key_twice_in_one_group_on_a_cluster() {
    the_same_key_twice_in_one_group_stores_its_batch_once(cluster_url(), "group_twice_cluster")
        .await;
}

/// On a cluster, the keys generated for a group's batches are recorded once per partition: one hash holding a
/// field per batch, not a key per batch. A batch sent again under its generated key (a failed append hands it
/// out) finds its record there, and the same key with another batch is refused.
#[tokio::test]
async fn a_groups_generated_keys_share_one_record_per_partition() {
    let url = cluster_url();
    let store = store_for(&redis_config_at(&url, "group_records", 4)).await;
    let writer = store.writer();
    let sent = [batch("ga", 40), batch("gb", 40), batch("gc", 40)];
    let requests: Vec<AppendRequest> = sent.iter().map(|views| request(views, None)).collect();
    for outcome in writer.append_group(&requests, RETENTION).await {
        outcome.expect("a group stored");
    }
    let (mut groups, mut records_at) = (Vec::new(), Vec::new());
    for p in store.keys().all_partitions() {
        let log = store.keys().log(p);
        let pattern = format!("{}idem*", log.strip_suffix("log").unwrap());
        let mut conn = RedisConn::open(topk_testkit::port_serving(&url, &log)).unwrap();
        let reply = conn.cmd(&["KEYS", &pattern]).unwrap();
        let records: Vec<String> = reply
            .array()
            .unwrap()
            .iter()
            .map(|r| r.text().unwrap())
            .collect();
        assert_eq!(records.len(), 1, "partition {p}: {records:?}");
        let fields = conn.cmd(&["HLEN", &records[0]]).unwrap().int().unwrap();
        assert_eq!(fields, 3, "partition {p}: one field per batch");
        let group = records[0].rsplit_once(':').unwrap().1.to_owned();
        groups.push(group);
        records_at.push((conn, records[0].clone()));
    }
    groups.dedup();
    assert_eq!(groups.len(), 1, "one group: {groups:?}");

    let second = key(&format!("{}.1", groups[0]));
    // Sent again with a shorter retention: the record holds the other batches' too, whose retention it must
    // not cut short.
    let again = writer
        .append_idempotent(&sent[1], &second, Duration::from_secs(1))
        .await;
    assert_eq!(answer(&again), "already stored", "{again:?}");
    for (conn, record) in &mut records_at {
        let left_ms = conn.cmd(&["PTTL", record]).unwrap().int().unwrap();
        assert!(left_ms > 30_000, "{record} expires in {left_ms} ms");
    }
    let other = writer.append_idempotent(&sent[0], &second, RETENTION).await;
    assert_eq!(answer(&other), "key reused", "{other:?}");
    // A generated key never claimed (batch 2's), sent with another batch: refused by the group's record itself.
    let third = key(&format!("{}.2", groups[0]));
    let reused = writer.append_idempotent(&sent[0], &third, RETENTION).await;
    assert_eq!(answer(&reused), "key reused", "{reused:?}");

    apply_log(&store, "w", 100).await;
    let want = views_by_video(sent.iter().flatten());
    assert_eq!(window_counts(&store, Window::All).await, want);
}

/// One node awaiting a replica it does not have: every batch of the group is stored but unconfirmed, and
/// each gets its own key, which completes its batch alone.
#[tokio::test]
async fn an_unconfirmed_group_hands_each_batch_its_own_key() {
    let store = store_for(&topk_core::config::RedisConfig {
        wait_replicas: 1,
        redis_timeout_ms: 600,
        ..redis_config("group_unconfirmed", 2)
    })
    .await;
    let writer = store.writer();
    let (a, b) = (batch("ua", 4), batch("ub", 4));
    let requests = [request(&a, None), request(&b, None)];
    let outcomes = writer.append_group(&requests, RETENTION).await;
    let keys: Vec<IdempotencyKey> = outcomes
        .into_iter()
        .map(|o| match o {
            Err(StoreError::Incomplete { key, .. }) => key,
            other => panic!("expected a key: {other:?}"),
        })
        .collect();
    assert_ne!(keys[0], keys[1]);
    let again = writer.append_idempotent(&a, &keys[0], RETENTION).await;
    assert!(
        matches!(again, Err(StoreError::Incomplete { .. })),
        "{again:?}"
    );
    assert_eq!(
        apply_log(&store, "w", 100).await,
        20,
        "a batch stored twice"
    );
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
    let requests: Vec<AppendRequest> = batches.iter().map(|views| request(views, None)).collect();
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
    let config = redis_config_at(&cluster.url(), "by_node", 16);
    let store = store_for(&config).await;
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
    // A store of its own, whose map is first read during the move: the one above still pauses its node calls
    // after the last failure, and would not try one.
    let fresh = store_for(&config).await;
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
    assert!(append(&fresh, &cluster, &third).await > 3, "fell back");
    mover.await.unwrap();
    sent.extend(third);

    apply_log(&store, "w", 1000).await;
    let want = views_by_video(sent.iter().flatten());
    let got = window_counts(&store, Window::All).await;
    let wrong: Vec<(&String, u64, Option<&u64>)> = want
        .iter()
        .filter(|(v, n)| got.get(*v) != Some(n))
        .map(|(v, n)| (v, *n, got.get(v)))
        .collect();
    assert!(wrong.is_empty(), "(video, sent, counted): {wrong:?}");
    assert_eq!(got.len(), want.len());
}
