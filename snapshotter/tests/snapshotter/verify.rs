//! `verify`: a consistent state, then a window changed behind its back.

use crate::helpers::{assert_verify_finds, fed, retire, MIN, T0};
use topk_core::domain::{VideoId, Window};
use topk_snapshotter::jobs::snapshot_minutes;

/// `verify` finds nothing on a consistent state and reports a window changed behind its back.
#[tokio::test]
async fn verify_reports_every_difference() {
    let (store, pool, _) = fed("verify", 2, 120, 20 * MIN).await;
    let now = T0 + 21 * MIN;
    snapshot_minutes(&store, &pool, now - MIN).await.unwrap();
    retire(&store, now).await;
    assert_verify_finds(&store, &pool, now, &[]).await;

    let p = store.keys().partition_of(&VideoId::parse("v3").unwrap());
    let url = topk_testkit::servers().redis_url.clone();
    let port = url.rsplit(':').next().unwrap();
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            port,
            "HINCRBY",
            &store.keys().window(p, Window::Hour),
            "v3",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_verify_finds(&store, &pool, now, &[(Window::Hour, "v3")]).await;
}

/// The period totals: added by the minute job once every partition has written an hour (and a day), kept
/// equal to `video_stats` by late views and the roll-ups, and `verify` reports a total changed behind its
/// back.
#[tokio::test]
async fn verify_checks_the_period_totals() {
    use topk_core::db::retention::{maintain, RetentionPolicy};
    let (store, pool, _) = fed("verify_periods", 2, 300, 150 * MIN).await;
    let now = T0 + 3 * 60 * MIN;
    let report = snapshot_minutes(&store, &pool, now).await.unwrap();
    assert!(report.periods.hours >= 2, "{report:?}");
    let problems = topk_snapshotter::verify::period_problems(&pool)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let hourly: (i64,) = sqlx::query_as("SELECT count(*) FROM video_stats_hourly")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(hourly.0 > 0);

    // Late views into a covered hour, then every roll-up: still equal.
    let through = topk_core::batch::EntryId { ms: 1, seq: 0 };
    let late = vec![
        ("v3".to_owned(), T0 / MIN + 5, 4),
        ("zz".to_owned(), T0 / MIN + 61, 2),
    ];
    assert!(topk_core::db::add_late_views(&pool, 0, &late, through)
        .await
        .unwrap());
    let policy = RetentionPolicy {
        hourly_after_days: 0,
        daily_after_days: 0,
        drop_after_days: 0,
    };
    let later = chrono::DateTime::from_timestamp_millis(T0 + 2 * 24 * 60 * MIN).unwrap();
    maintain(&pool, later, policy).await.unwrap();
    let problems = topk_snapshotter::verify::period_problems(&pool)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");

    sqlx::query("UPDATE video_stats_daily SET views = views + 1 WHERE video_id = 'v3'")
        .execute(&pool)
        .await
        .unwrap();
    let problems = topk_snapshotter::verify::period_problems(&pool)
        .await
        .unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("video_stats_daily ") && problems[0].contains("video v3: total"),
        "{problems:?}"
    );
}
