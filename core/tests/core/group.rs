//! Batches appended as a group (the receiver's group commit): one log entry per partition for the whole
//! group, each batch answered as if it had been appended alone (its key refused alone, its retry stored
//! once), and every view counted once; on one node and on a cluster.

use std::collections::HashMap;
use std::time::Duration;
use topk_core::domain::{IdempotencyKey, VideoId, Window};
use topk_core::redis::{AppendOutcome, AppendRequest, RedisStore, StoreError};
use topk_testkit::fixtures::{apply_log, redis_config, redis_config_at, store_for, window_counts};
use topk_testkit::{cluster_url, RedisConn};

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
    let mut want: HashMap<String, u64> = HashMap::new();
    for (v, n) in a.iter().chain(&b).chain(&d) {
        *want.entry(v.as_str().to_owned()).or_default() += n;
    }
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
