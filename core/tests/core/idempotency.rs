//! An `Idempotency-Key` belongs to one batch, whatever partitions the batches touch, and an append that may
//! have stored its batch always hands back a key to complete it with: on one node with replicas awaited as
//! on a cluster.

use std::time::Duration;
use topk_core::config::RedisConfig;
use topk_core::domain::{IdempotencyKey, VideoId, Window};
use topk_core::redis::{AppendOutcome, RedisStore, StoreError};
use topk_testkit::fixtures::{
    apply_log, redis_config, redis_config_at, store_for, views_by_video, window_counts,
};
use topk_testkit::{cluster_url, RedisConn, RedisServer};

const RETENTION: Duration = Duration::from_secs(60);

fn video(name: &str) -> VideoId {
    VideoId::parse(name).unwrap()
}

/// Videos named `<prefix><i>`, each in a partition none of the others is in, `n` of them.
fn one_per_partition(store: &RedisStore, prefix: &str, n: usize) -> Vec<VideoId> {
    let mut seen = std::collections::HashSet::new();
    (0..)
        .map(|i| video(&format!("{prefix}{i}")))
        .filter(|v| seen.insert(store.keys().partition_of(v)))
        .take(n)
        .collect()
}

/// The key an append stored but not confirmed by the replicas awaited hands back to send it again with.
fn unconfirmed_key(outcome: Result<(), StoreError>) -> IdempotencyKey {
    match outcome {
        Err(StoreError::Incomplete { key, cause }) => {
            assert!(
                matches!(*cause, StoreError::NotReplicated { .. }),
                "{cause}"
            );
            key
        }
        other => panic!("expected a key to send again with: {other:?}"),
    }
}

/// A batch on some partitions, then the same key with a batch on the others only: refused, nothing stored.
async fn a_reused_key_is_refused_whatever_the_partitions(store: RedisStore) {
    let videos = one_per_partition(&store, "r", 4);
    let key = IdempotencyKey::parse("reused").unwrap();
    let first = [(videos[0].clone(), 1), (videos[1].clone(), 2)];
    let outcome = store
        .writer()
        .append_idempotent(&first, &key, RETENTION)
        .await;
    assert_eq!(outcome.unwrap(), AppendOutcome::Stored);
    let other = [(videos[2].clone(), 3), (videos[3].clone(), 4)];
    another_batch_is_refused(&store, &key, &other).await;
    windows_hold_only(&store, &first).await;
}

/// `other` sent under `key`, which holds another batch: refused.
async fn another_batch_is_refused(
    store: &RedisStore,
    key: &IdempotencyKey,
    other: &[(VideoId, u64)],
) {
    let outcome = store
        .writer()
        .append_idempotent(other, key, RETENTION)
        .await;
    assert!(matches!(outcome, Err(StoreError::KeyReused)), "{outcome:?}");
}

/// Once the log is applied, the windows hold `first` alone.
async fn windows_hold_only(store: &RedisStore, first: &[(VideoId, u64)]) {
    apply_log(store, "w", 100).await;
    assert_eq!(
        window_counts(store, Window::All).await,
        views_by_video(first)
    );
}

#[tokio::test]
async fn a_reused_key_is_refused_whatever_the_partitions_on_one_node() {
    let store = store_for(&redis_config("reuse", 4)).await;
    a_reused_key_is_refused_whatever_the_partitions(store).await;
}

#[tokio::test]
async fn a_reused_key_is_refused_whatever_the_partitions_on_a_cluster() {
    let store = store_for(&redis_config_at(&cluster_url(), "reuse_cluster", 6)).await;
    a_reused_key_is_refused_whatever_the_partitions(store).await;
}

/// Two requests at once under one key with different batches, on a cluster (one append per partition): one
/// is stored whole, the other is refused and stored nothing, so "nothing was stored" is true.
#[tokio::test]
async fn concurrent_batches_under_one_key_store_one_of_them_whole() {
    let store = store_for(&redis_config_at(&cluster_url(), "reuse_race", 6)).await;
    let a = one_per_partition(&store, "a", 6);
    let b = one_per_partition(&store, "b", 6);
    let mut won = Vec::new();
    for round in 0..8 {
        let key = IdempotencyKey::parse(&format!("race-{round}")).unwrap();
        let batch = |videos: &[VideoId]| -> Vec<(VideoId, u64)> {
            videos.iter().map(|v| (v.clone(), 1)).collect()
        };
        let (first, second) = (batch(&a), batch(&b));
        let writer = store.writer();
        let (x, y) = tokio::join!(
            writer.append_idempotent(&first, &key, RETENTION),
            writer.append_idempotent(&second, &key, RETENTION)
        );
        let winner = match (&x, &y) {
            (Ok(AppendOutcome::Stored), Err(StoreError::KeyReused)) => &first,
            (Err(StoreError::KeyReused), Ok(AppendOutcome::Stored)) => &second,
            other => panic!("round {round}: {other:?}"),
        };
        won.extend(winner.iter().cloned());
    }
    apply_log(&store, "w", 1000).await;
    assert_eq!(
        window_counts(&store, Window::All).await,
        views_by_video(&won)
    );
}

/// One node, `TOPK_REDIS_WAIT_REPLICAS=1`, no replica: a batch sent without a key is stored but not
/// confirmed. The error hands back a key, and the batch sent again under it is not stored twice.
#[tokio::test]
async fn an_unconfirmed_batch_on_one_node_hands_back_a_key_that_completes_it() {
    let store = store_for(&RedisConfig {
        wait_replicas: 1,
        redis_timeout_ms: 600,
        ..redis_config("unconfirmed", 2)
    })
    .await;
    let views = [(video("u1"), 2), (video("u2"), 3)];
    let key = unconfirmed_key(store.writer().append(&views).await);
    for _ in 0..2 {
        let again = store
            .writer()
            .append_idempotent(&views, &key, RETENTION)
            .await;
        assert!(
            matches!(&again, Err(StoreError::Incomplete { key: k, .. }) if *k == key),
            "{again:?}"
        );
    }
    assert_eq!(
        apply_log(&store, "w", 100).await,
        5,
        "stored more than once"
    );
}

/// WAIT holds its connection until the replicas answer: every other command to the node must go on
/// meanwhile. A store that waits for a replica that does not exist (its WAIT blocks for half the timeout)
/// still answers a ping while its WAIT is blocked on the server.
#[tokio::test]
async fn a_blocked_wait_holds_up_no_other_command() {
    let server = RedisServer::start();
    let store = store_for(&RedisConfig {
        wait_replicas: 1,
        redis_timeout_ms: 6_000,
        ..redis_config_at(&server.url(), "wait_conn", 2)
    })
    .await;
    let appending = {
        let store = store.clone();
        tokio::spawn(async move { store.writer().append(&[(video("w"), 1)]).await })
    };
    let mut observer = server.conn();
    let blocked_waits = move |observer: &mut RedisConn| {
        let clients = observer.cmd(&["CLIENT", "LIST"]).unwrap().text().unwrap();
        clients
            .lines()
            .filter(|l| l.contains("cmd=wait") && l.contains("flags=b"))
            .count()
    };
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while blocked_waits(&mut observer) == 0 {
        assert!(std::time::Instant::now() < until, "no WAIT was blocked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.ping().await.expect("a ping while WAIT is blocked");
    assert_eq!(
        blocked_waits(&mut observer),
        1,
        "the ping was answered only once WAIT had returned"
    );
    assert!(!appending.is_finished());
    let outcome = appending.await.unwrap();
    assert!(
        matches!(outcome, Err(StoreError::Incomplete { .. })),
        "{outcome:?}"
    );
}

/// On a cluster a batch sent without a key goes under one generated for it, and when the append is not
/// confirmed (here more replicas are awaited than a primary has) the error hands that key back. From then on
/// the key is the batch's: another batch sent under it is refused and stores nothing, even on partitions the
/// first batch never touched, and the first batch sent again under it is not stored twice.
#[tokio::test]
async fn a_key_handed_back_on_a_cluster_belongs_to_its_batch() {
    let store = store_for(&RedisConfig {
        wait_replicas: 2,
        redis_timeout_ms: 600,
        ..redis_config_at(&cluster_url(), "handed_back", 6)
    })
    .await;
    let videos = one_per_partition(&store, "h", 4);
    let first = [(videos[0].clone(), 1), (videos[1].clone(), 2)];
    let key = unconfirmed_key(store.writer().append(&first).await);

    let other = [(videos[2].clone(), 3), (videos[3].clone(), 4)];
    another_batch_is_refused(&store, &key, &other).await;
    let again = store
        .writer()
        .append_idempotent(&first, &key, RETENTION)
        .await;
    assert!(
        matches!(&again, Ok(AppendOutcome::AlreadyStored))
            || matches!(&again, Err(StoreError::Incomplete { key: k, .. }) if *k == key),
        "{again:?}"
    );
    windows_hold_only(&store, &first).await;
}
