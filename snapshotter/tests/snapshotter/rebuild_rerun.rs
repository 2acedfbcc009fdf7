//! `rebuild-redis` run again after an interruption late in its redo: the rerun must leave every view counted
//! once. The interruption is taken just before `restore_partition` deletes `P:{p}:replay` (after the redo's
//! last apply): Redis then holds exactly what a completed rebuild leaves, plus that key as the first run saved
//! it, which the test writes back.

use crate::helpers::{all_time, database, log_backdated, redis, stats, totals, MIN, T0};
use std::collections::BTreeMap;
use topk_core::domain::VideoId;
use topk_core::redis::LogRead;
use topk_snapshotter::jobs::snapshot_minutes;
use topk_snapshotter::rebuild::rebuild;
use topk_testkit::fixtures::{apply_log, read_log};

const DAY: i64 = 24 * 60 * MIN;

/// A worker took a back-dated entry (its minute already written to Postgres) and died before applying it; the
/// rebuild redoes it whole, so its views also go to the late stream (the minute is closed). Interrupted before
/// dropping `P:{p}:replay`, then run again: the rerun counts the late stream's copy as Postgres's own (it is
/// after `late_through`) and redoes the still "pending" entry whole a second time.
#[tokio::test]
async fn a_rerun_after_the_redo_counts_a_pending_back_dated_entry_once() {
    let label = "rebuild_rerun";
    let store = redis(&topk_testkit::servers().redis_url, label, 1).await;
    let pool = database(label).await;
    let mut now = T0 + 2 * DAY;
    // An on-time view, applied and written: the checkpoint is the minute before `now`.
    store
        .writer()
        .append_at(&[(VideoId::parse("v0").unwrap(), 1)], now)
        .await
        .unwrap();
    apply_log(&store, "w", 10).await;
    now += 2 * MIN;
    snapshot_minutes(&store, &pool, now).await.unwrap();
    // A view dated 90 s ago (a minute Postgres has written), delivered to a worker that dies before applying.
    log_backdated(
        &store,
        &[(VideoId::parse("v1").unwrap(), 3)],
        0,
        now,
        now - 90_000,
    )
    .await;
    let taken = read_log(&store, 0, "w", LogRead::New, 10).await;
    assert_eq!(taken.len(), 1);
    let x = taken[0].id;

    // The late stream's newest entry as the first run finds it (none yet).
    let late_before = store
        .history()
        .read_late(0, topk_core::batch::EntryId { ms: 0, seq: 0 }, 1000)
        .await
        .unwrap()
        .last()
        .map_or_else(|| "0-0".to_owned(), |e| e.id.to_string());
    rebuild(&store, &pool, now, false).await.unwrap();
    // The interruption: `P:{0}:replay` as the first run saved it (the group's last delivered id, the pending
    // ids, the late stream's newest entry).
    let mut conn = topk_testkit::RedisConn::open_url(&topk_testkit::servers().redis_url).unwrap();
    conn.cmd(&[
        "HSET",
        &store.keys().replay(0),
        "through",
        &x.to_string(),
        "pending",
        &x.to_string(),
        "late",
        &late_before,
    ])
    .unwrap();
    // Until it is run again, the snapshotter writes nothing (the workers wait too: ingest's defences tests).
    assert_eq!(store.log_state().interrupted_rebuilds().await.unwrap(), [0]);
    let refused = snapshot_minutes(&store, &pool, now + MIN)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("interrupted"), "{refused:#}");
    rebuild(&store, &pool, now, false).await.unwrap();
    assert!(store
        .log_state()
        .interrupted_rebuilds()
        .await
        .unwrap()
        .is_empty());

    now += 2 * MIN;
    apply_log(&store, "w", 10).await;
    snapshot_minutes(&store, &pool, now).await.unwrap();
    let want: BTreeMap<String, i64> = [("v0".to_owned(), 1), ("v1".to_owned(), 3)].into();
    let all = all_time(&store).await;
    assert_eq!(all, want, "the all-time window");
    assert_eq!(totals(&pool).await, want, "video_totals");
    let v1: i64 = stats(&pool)
        .await
        .iter()
        .filter(|(v, _, _)| v == "v1")
        .map(|r| r.2)
        .sum();
    assert_eq!(v1, 3, "video_stats of v1");
}
