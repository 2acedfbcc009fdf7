//! `rebuild-redis`: the windows restored after a loss, and the log replayed after the checkpoint.

use crate::helpers::{
    assert_verify_finds, database, drain, fed, feed, redis, retire, spread, stats, totals, MIN, T0,
};
use std::collections::{BTreeMap, HashMap};
use topk_core::domain::{VideoId, Window};
use topk_core::redis::RedisStore;
use topk_snapshotter::jobs::snapshot_minutes;
use topk_snapshotter::rebuild::rebuild;

/// Every window of `store`, summed over its partitions.
async fn windows(store: &RedisStore) -> HashMap<Window, BTreeMap<String, u64>> {
    let mut out = HashMap::new();
    for w in Window::ALL {
        let mut all = BTreeMap::new();
        for p in store.keys().all_partitions() {
            all.extend(store.recovery().window_counts(p, w).await.unwrap());
        }
        out.insert(w, all);
    }
    out
}

/// The time of a loss: 30 hours after T0, and two hours and a minute more.
const LOST_AT: i64 = T0 + 30 * 60 * MIN + 121 * MIN;

/// Feeds views at `times` (ms from T0) and applies them; at [`LOST_AT`] the snapshotter writes the minutes
/// that closed (before the day window retires them) and the retirer runs. Returns the windows then: what a
/// rebuild must restore.
async fn before_the_loss(
    store: &RedisStore,
    pool: &sqlx::PgPool,
    times: &[i64],
) -> HashMap<Window, BTreeMap<String, u64>> {
    feed(store, times).await;
    drain(store).await;
    snapshot_minutes(store, pool, LOST_AT).await.unwrap();
    retire(store, LOST_AT).await;
    windows(store).await
}

/// Redis lost (FLUSHALL, then a server restarted empty): rebuild-redis restores the hour, day and all-time
/// windows as they were for every view the snapshots covered, and each equals the sum of its slices.
#[tokio::test]
async fn rebuild_after_redis_loss_restores_the_windows() {
    for restart in [false, true] {
        let mut server = topk_testkit::RedisServer::start();
        let store = redis(&server.url(), "rebuild", 3).await;
        let pool = database("rebuild").await;
        // Views over the last two hours and older ones outside the day window.
        let mut times = spread(300, 120 * MIN);
        times.extend([-(30 * 60 * MIN), -(26 * 60 * MIN)]);
        times.sort();
        let times: Vec<i64> = times.into_iter().map(|t| t + 30 * 60 * MIN).collect();
        let before = before_the_loss(&store, &pool, &times).await;
        let now = LOST_AT;

        if restart {
            server.restart();
            // The client reconnects in the background; commands in between fail fast.
            while store.ping().await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        } else {
            let _: () = flushall(&server);
        }
        assert!(
            windows(&store).await.values().all(BTreeMap::is_empty),
            "redis still has data"
        );
        store.applier().ensure_log_groups().await.unwrap();
        let report = rebuild(&store, &pool, now, false).await.unwrap();
        assert!(report.minute_rows > 0 && report.total_rows > 0);
        let after = windows(&store).await;
        for w in [Window::Hour, Window::Day, Window::All] {
            assert_eq!(
                after[&w], before[&w],
                "{w} after rebuild (restart: {restart})"
            );
        }
        // Rebuilt windows keep sliding exactly: each equals the reference union of its slices.
        retire(&store, now + 5 * MIN).await;
        for w in [Window::Hour, Window::Day] {
            for p in store.keys().all_partitions() {
                assert_eq!(
                    store.recovery().window_counts(p, w).await.unwrap(),
                    store
                        .history()
                        .reference_counts(p, w, now + 5 * MIN)
                        .await
                        .unwrap()
                );
            }
        }
        // Rerunning is safe.
        rebuild(&store, &pool, now, false).await.unwrap();
        assert_eq!(windows(&store).await[&Window::All], before[&Window::All]);
    }
}

fn flushall(server: &topk_testkit::RedisServer) {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "FLUSHALL"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// Where the log survived, the rebuild replays it after the checkpoint: views applied after the last snapshot
/// are counted again exactly once (redone by the rebuild itself, as far as the workers had applied them).
#[tokio::test]
async fn rebuild_replays_the_log_after_the_checkpoint() {
    let (store, pool, _) = fed("replay", 2, 100, 10 * MIN).await;
    snapshot_minutes(&store, &pool, T0 + 10 * MIN)
        .await
        .unwrap();
    // Views after the snapshot: in Redis and the log, not in Postgres.
    store
        .writer()
        .append_at(&[(VideoId::parse("after").unwrap(), 5)], T0 + 11 * MIN)
        .await
        .unwrap();
    store
        .writer()
        .append_at(&[(VideoId::parse("v1").unwrap(), 2)], T0 + 11 * MIN + 1)
        .await
        .unwrap();
    drain(&store).await;
    let now = T0 + 12 * MIN;
    retire(&store, now).await;
    let before = windows(&store).await;

    rebuild(&store, &pool, now, false).await.unwrap();
    assert_eq!(
        windows(&store).await[&Window::All],
        before[&Window::All],
        "redone by the rebuild"
    );
    drain(&store).await;
    let after = windows(&store).await;
    for w in [Window::Hour, Window::Day, Window::All] {
        assert_eq!(after[&w], before[&w], "{w} after replay");
    }
}

/// The minutes a rebuild restores from Postgres are written already: when the day window retires them, they
/// must not reach history a second time (through the late stream), and the history stays as it was.
#[tokio::test]
async fn restored_minutes_are_not_written_again_when_the_day_retires_them() {
    let (store, pool, _) = fed("restored_once", 2, 100, 10 * MIN).await;
    let now = T0 + 11 * MIN;
    snapshot_minutes(&store, &pool, now).await.unwrap();
    let history = (stats(&pool).await, totals(&pool).await);
    assert!(!history.0.is_empty());

    rebuild(&store, &pool, now, false).await.unwrap();
    let day_later = now + 24 * 60 * MIN + 2 * MIN;
    retire(&store, day_later).await;
    snapshot_minutes(&store, &pool, day_later).await.unwrap();
    assert_eq!((stats(&pool).await, totals(&pool).await), history);
}

/// On a Redis Cluster (partitions on 3 primaries): every primary flushed, rebuild-redis restores the hour, day
/// and all-time windows; `verify` then finds nothing, and finds a window changed behind its back on its node.
#[tokio::test]
async fn rebuild_and_verify_on_a_cluster() {
    let cluster = topk_testkit::RedisCluster::start(3, 5_000);
    let store = redis(&cluster.url(), "rebuild_cluster", 6).await;
    let pool = database("rebuild_cluster").await;
    let times: Vec<i64> = spread(300, 120 * MIN)
        .into_iter()
        .map(|t| t + 30 * 60 * MIN)
        .collect();
    let before = before_the_loss(&store, &pool, &times).await;
    let now = LOST_AT;
    assert_verify_finds(&store, &pool, now, &[]).await;

    for port in cluster.primaries() {
        cluster.conn(port).cmd(&["FLUSHALL"]).unwrap();
    }
    assert!(windows(&store).await.values().all(BTreeMap::is_empty));
    store.applier().ensure_log_groups().await.unwrap();
    let report = rebuild(&store, &pool, now, false).await.unwrap();
    assert!(report.minute_rows > 0 && report.total_rows > 0);
    let after = windows(&store).await;
    for w in [Window::Hour, Window::Day, Window::All] {
        assert_eq!(after[&w], before[&w], "{w} after a rebuild on a cluster");
    }
    assert_verify_finds(&store, &pool, now, &[]).await;

    let video = after[&Window::Hour].keys().next().unwrap().clone();
    let p = store.keys().partition_of(&VideoId::parse(&video).unwrap());
    let hash = store.keys().window(p, Window::Hour);
    let node = cluster.primary_for_slot(topk_testkit::slot_of(&hash));
    cluster
        .conn(node)
        .cmd(&["HINCRBY", &hash, &video, "1"])
        .unwrap();
    assert_verify_finds(&store, &pool, now, &[(Window::Hour, &video)]).await;
}
