//! The minute job: idempotence, catch-up after a stop, open minutes, chunked catch-up.

use crate::helpers::{database, drain, fed, per_minute, redis, spread, stats, totals, MIN, T0};
use std::collections::BTreeMap;
use topk_core::domain::VideoId;
use topk_core::redis::RedisStore;
use topk_snapshotter::jobs::snapshot_minutes;

/// A snapshotter started before ingest ever ran (no log, no consumer group) writes nothing and fails nothing.
#[tokio::test]
async fn a_snapshot_before_any_log_is_a_no_op() {
    let store = RedisStore::connect(&topk_testkit::fixtures::redis_config("nolog", 2))
        .await
        .unwrap();
    let pool = database("nolog").await;
    assert_eq!(
        snapshot_minutes(&store, &pool, T0).await.unwrap(),
        Default::default()
    );
    assert!(stats(&pool).await.is_empty());
}

#[tokio::test]
async fn a_snapshot_run_twice_equals_once_and_matches_the_events() {
    let (store, pool, events) = fed("twice", 3, 200, 10 * MIN).await;
    let now = T0 + 12 * MIN;
    let first = snapshot_minutes(&store, &pool, now).await.unwrap();
    let after_first = (stats(&pool).await, totals(&pool).await);
    let second = snapshot_minutes(&store, &pool, now).await.unwrap();
    assert!(first.rows > 0);
    assert_eq!(second.rows, 0, "the second run wrote again");
    assert_eq!((stats(&pool).await, totals(&pool).await), after_first);
    assert_eq!(after_first.0, per_minute(&events, now));
}

#[tokio::test]
async fn catch_up_after_a_stop_leaves_no_gap_and_open_minutes_wait() {
    let (store, pool, events) = fed("catchup", 2, 300, 15 * MIN).await;
    snapshot_minutes(&store, &pool, T0 + 3 * MIN + 5_000)
        .await
        .unwrap();
    assert_eq!(stats(&pool).await, per_minute(&events, T0 + 3 * MIN));
    // Stopped for twelve minutes, then one run writes everything closed since.
    snapshot_minutes(&store, &pool, T0 + 16 * MIN)
        .await
        .unwrap();
    assert_eq!(stats(&pool).await, per_minute(&events, T0 + 16 * MIN));
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for (_, v, n) in &events {
        *want.entry(v.clone()).or_default() += *n as i64;
    }
    assert_eq!(totals(&pool).await, want);

    // A minute whose views are still in the log (not applied) is not closed: it is not written yet.
    store
        .writer()
        .append_at(&[(VideoId::parse("late").unwrap(), 1)], T0 + 20 * MIN)
        .await
        .unwrap();
    snapshot_minutes(&store, &pool, T0 + 30 * MIN)
        .await
        .unwrap();
    assert!(stats(&pool).await.iter().all(|(v, _, _)| v != "late"));
    drain(&store).await;
    snapshot_minutes(&store, &pool, T0 + 30 * MIN)
        .await
        .unwrap();
    assert!(stats(&pool).await.iter().any(|(v, _, _)| v == "late"));
}

/// A catch-up longer than one chunk (150 minutes with views: three chunks of at most 60) commits chunk by chunk and
/// writes everything once.
#[tokio::test]
async fn a_long_catch_up_goes_in_chunks_and_writes_everything_once() {
    let store = redis(&topk_testkit::servers().redis_url, "chunks", 2).await;
    let pool = database("chunks").await;
    let times: Vec<i64> = spread(3_000, 150 * MIN);
    let mut events = Vec::new();
    for chunk in times.chunks(20) {
        let batch: Vec<(VideoId, u64)> = chunk
            .iter()
            .enumerate()
            .map(|(i, _)| (VideoId::parse(&format!("c{i}")).unwrap(), 1))
            .collect();
        store
            .writer()
            .append_at(&batch, T0 + chunk[0])
            .await
            .unwrap();
        events.extend(
            batch
                .iter()
                .map(|(v, n)| (T0 + chunk[0], v.as_str().to_owned(), *n)),
        );
    }
    drain(&store).await;
    let now = T0 + 151 * MIN;
    let report = snapshot_minutes(&store, &pool, now).await.unwrap();
    let want = per_minute(&events, now);
    assert_eq!(report.rows, want.len() as u64);
    assert_eq!(stats(&pool).await, want);
    let total: i64 = totals(&pool).await.values().sum();
    assert_eq!(total, events.iter().map(|(_, _, n)| *n as i64).sum::<i64>());
    for c in topk_core::db::checkpoints(&pool).await.unwrap().values() {
        assert_eq!(c.minute_through, now / MIN - 1);
    }
}

/// A snapshotter that comes back after the day window retired a minute it had not written still writes that
/// minute: the day window hands it to the late stream.
#[tokio::test]
async fn a_snapshotter_under_an_hour_late_still_writes_what_the_day_window_retired() {
    let (store, pool, events) = fed("late_day", 2, 50, 2 * MIN).await;
    // The snapshotter ran once (nothing was closed yet), then stopped for more than a day.
    snapshot_minutes(&store, &pool, T0).await.unwrap();
    let now = T0 + 24 * 60 * MIN + 30 * MIN;
    store.applier().seal_all(now).await.unwrap();
    store.applier().retire_all(now).await.unwrap();
    assert!(
        topk_testkit::fixtures::window_counts(&store, topk_core::domain::Window::Day)
            .await
            .is_empty(),
        "the day window has retired every minute"
    );
    snapshot_minutes(&store, &pool, now).await.unwrap();
    assert_eq!(stats(&pool).await, per_minute(&events, now));
}
