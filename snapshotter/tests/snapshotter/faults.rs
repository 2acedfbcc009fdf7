//! Postgres failing under a snapshot run: stopped mid-run, and a connection killed before the commit.

use crate::helpers::{drain, fed, feed, per_minute, redis, spread, stats, totals, MIN, T0};
use std::collections::BTreeMap;
use topk_snapshotter::jobs::snapshot_minutes;

/// Postgres stopped (as in a crash) in the middle of a snapshot run, then back: the next run fills the gap,
/// and no minute or total is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_during_a_snapshot_leaves_no_gap() {
    let store = redis(&topk_testkit::servers().redis_url, "pgstop", 4).await;
    let mut pg = topk_testkit::PgServer::start();
    let url = pg.create_database("pgstop");
    let pool = topk_testkit::fixtures::migrated_pool_at(&url).await;
    let events = feed(&store, &spread(4_000, 600 * MIN)).await;
    drain(&store).await;
    let now = T0 + 601 * MIN;

    let run = tokio::spawn({
        let (store, pool) = (store.clone(), pool.clone());
        async move { snapshot_minutes(&store, &pool, now).await }
    });
    // Let it write some minutes, then stop Postgres under it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while topk_core::db::checkpoints(&pool)
        .await
        .map(|c| c.is_empty())
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot never started writing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let interrupted = run.await.unwrap();
    assert!(
        interrupted.is_err(),
        "the run finished before Postgres stopped: {interrupted:?}"
    );
    let pg_back = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    });
    let _pg = pg_back.await.unwrap();
    // Postgres is back: the next run writes everything that is missing, once.
    let mut written = false;
    for _ in 0..50 {
        if snapshot_minutes(&store, &pool, now).await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(written, "no successful run after Postgres came back");
    assert_eq!(stats(&pool).await, per_minute(&events, now));
    let total: i64 = totals(&pool).await.values().sum();
    assert_eq!(total, events.iter().map(|(_, _, n)| *n as i64).sum::<i64>());
}

/// The snapshotter's connection dies after the COPY into `video_stats` and before the commit (killed while it
/// waits to update `video_totals`): nothing of that transaction stays, and the next run writes every row and
/// total once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_copy_and_commit_writes_once() {
    let (store, pool, events) = fed("copycrash", 2, 300, 10 * MIN).await;
    let now = T0 + 11 * MIN;
    // An uncommitted total of a fed video makes the snapshotter's totals update wait, after its COPY.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO video_totals (video_id, total_views) VALUES ('v3', 1000)")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let run = tokio::spawn({
        let (store, pool) = (store.clone(), pool.clone());
        async move { snapshot_minutes(&store, &pool, now).await }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let pid = loop {
        let waiting: Option<(i32,)> = sqlx::query_as(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO video_totals%'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        if let Some((pid,)) = waiting {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot never reached its totals update"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let (killed,): (bool,) = sqlx::query_as("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(killed);
    assert!(
        run.await.unwrap().is_err(),
        "the killed run reported success"
    );
    blocker.rollback().await.unwrap();
    let written_before: Vec<String> = stats(&pool).await.into_iter().map(|r| r.0).collect();
    assert!(
        !written_before.iter().any(|v| v == "v3"),
        "the killed transaction left rows"
    );

    snapshot_minutes(&store, &pool, now).await.unwrap();
    assert_eq!(stats(&pool).await, per_minute(&events, now));
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for (_, v, n) in &events {
        *want.entry(v.clone()).or_default() += *n as i64;
    }
    assert_eq!(totals(&pool).await, want);
    assert_eq!(
        snapshot_minutes(&store, &pool, now).await.unwrap(),
        Default::default(),
        "a third run wrote again"
    );
}

/// With `TOPK_REDIS_WAIT_REPLICAS`, closing minutes waits for the replicas as appends do: a close no replica
/// confirmed (this Redis has none) stops the run before anything is written, since a failover could move the
/// snapshot cursor back behind the minutes about to be written.
#[tokio::test]
async fn closing_minutes_waits_for_the_replicas() {
    let cfg = topk_core::config::RedisConfig {
        wait_replicas: 1,
        redis_timeout_ms: 600,
        ..topk_testkit::fixtures::redis_config("close_wait", 1)
    };
    let store = topk_testkit::fixtures::store_for(&cfg).await;
    let pool = topk_testkit::fixtures::migrated_pool("close_wait").await;
    let err = snapshot_minutes(&store, &pool, T0 + 10 * MIN)
        .await
        .expect_err("a close no replica confirmed must stop the run");
    assert!(format!("{err:#}").contains("replicas confirmed"), "{err:#}");
    assert!(stats(&pool).await.is_empty());
}
