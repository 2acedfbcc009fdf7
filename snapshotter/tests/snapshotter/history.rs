//! History: ranking snapshots as the API answers them, and the partitions, roll-ups and retention of
//! `video_stats`.

use crate::helpers::{database, drain, redis, retire, stats, totals, MIN, T0};
use chrono::{TimeZone, Utc};
use clap::Parser;
use topk_core::domain::VideoId;
use topk_snapshotter::jobs::snapshot_rankings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_answers_the_snapshot_at_or_before_a_time() {
    let store = redis(&topk_testkit::servers().redis_url, "history", 2).await;
    let url = topk_testkit::fresh_database("history");
    let pool = topk_testkit::fixtures::migrated_pool_at(&url).await;
    let cfg = topk_api::config::ApiConfig::try_parse_from([
        "topk-api".to_owned(),
        format!("--redis-url={}", topk_testkit::servers().redis_url),
        format!(
            "--key-prefix={}",
            store.keys().log(0).split(':').next().unwrap()
        ),
        "--partitions=2".into(),
        format!("--database-url={url}"),
        "--addr=127.0.0.1:0".into(),
    ])
    .unwrap();
    let api = topk_api::Application::build(cfg).await.unwrap();
    let addr = api.local_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(api.run(stop.clone()));
    let get = |q: String| async move {
        let r = reqwest::get(format!("http://{addr}/v1/topk/history?{q}"))
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let t1 = T0 + 5 * MIN;
    let t2 = T0 + 10 * MIN;
    let rfc = |ms: i64| {
        Utc.timestamp_millis_opt(ms)
            .unwrap()
            .to_rfc3339()
            .replace('+', "%2B")
    };

    assert_eq!(get(format!("window=all&at={}", rfc(t1))).await.0, 404);
    store
        .writer()
        .append_at(&[(VideoId::parse("a").unwrap(), 1)], T0)
        .await
        .unwrap();
    drain(&store).await;
    snapshot_rankings(&store, &pool, t1).await.unwrap();
    store
        .writer()
        .append_at(&[(VideoId::parse("b").unwrap(), 3)], T0 + 1)
        .await
        .unwrap();
    drain(&store).await;
    snapshot_rankings(&store, &pool, t2).await.unwrap();

    let (code, body) = get(format!("window=all&k=5&at={}", rfc(t1 + 2 * MIN))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["videos"],
        serde_json::json!([{"videoId": "a", "views": 1}])
    );
    let (_, body) = get(format!("window=all&at={}", rfc(t2 + 1))).await;
    assert_eq!(
        body["videos"],
        serde_json::json!([{"videoId": "b", "views": 3}, {"videoId": "a", "views": 1}])
    );
    assert_eq!(get(format!("window=all&at={}", rfc(t1 - 1))).await.0, 404);
    assert_eq!(get("window=all&at=yesterday".into()).await.0, 400);
    assert_eq!(get("window=year".into()).await.0, 400);

    // At t2 the views (at T0) have left the minute window only.
    retire(&store, t2).await;
    let r = reqwest::get(format!("http://{addr}/v1/videos/b"))
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"videoId": "b", "minute": 0, "hour": 3, "day": 3, "all": 3,
            "rank": {"minute": null, "hour": 1, "day": 1, "all": 1}})
    );
    assert_eq!(
        reqwest::get(format!("http://{addr}/v1/videos/bad%20id"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    stop.cancel();
}

/// Rows go to daily partitions (moved there from the default one if they arrived first); minute rows past a
/// month become hourly, hourly past a year daily, and days past the retention are dropped; sums never change.
#[tokio::test]
async fn history_is_partitioned_rolled_up_and_pruned() {
    use topk_core::db::retention::{ensure_day_partitions, maintain, RetentionPolicy};
    let pool = database("upkeep").await;
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
    let minute = |days_ago: i64, h: u32, m: u32| {
        let d = (now - chrono::Duration::days(days_ago))
            .date_naive()
            .and_hms_opt(h, m, 0)
            .unwrap();
        Utc.from_utc_datetime(&d).timestamp_millis() / MIN
    };
    let row = |v: &str, n: u64| topk_core::domain::RankedVideo {
        video_id: v.into(),
        views: n,
    };
    // (minute, rows), oldest first as the snapshotter writes them.
    let writes = vec![
        (minute(1200, 9, 0), vec![row("a", 1)]),
        (minute(400, 9, 0), vec![row("a", 2), row("b", 1)]),
        (minute(400, 9, 31), vec![row("a", 3)]),
        (minute(400, 17, 5), vec![row("a", 4)]),
        (minute(40, 10, 0), vec![row("a", 5)]),
        (minute(40, 10, 1), vec![row("a", 6), row("b", 2)]),
        (minute(40, 10, 59), vec![row("a", 7)]),
        (minute(40, 11, 5), vec![row("a", 8)]),
        (minute(2, 10, 1), vec![row("a", 9)]),
        (minute(2, 10, 2), vec![row("a", 10)]),
    ];
    // The oldest day is written before its partition exists, the rest after.
    topk_core::db::write_minute(&pool, 0, writes[0].0, &writes[0].1)
        .await
        .unwrap();
    for (m, rows) in &writes[1..] {
        let day = topk_core::db::minute_start(*m).date_naive();
        ensure_day_partitions(&pool, day, day).await.unwrap();
        topk_core::db::write_minute(&pool, 0, *m, rows)
            .await
            .unwrap();
    }
    let day0 = topk_core::db::minute_start(writes[0].0).date_naive();
    assert_eq!(ensure_day_partitions(&pool, day0, day0).await.unwrap(), 1);
    let in_default: (i64,) = sqlx::query_as("SELECT count(*) FROM video_stats_default")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(in_default.0, 0, "rows were left in the default partition");
    let totals_before = totals(&pool).await;

    let policy = RetentionPolicy {
        hourly_after_days: 30,
        daily_after_days: 365,
        drop_after_days: 1095,
    };
    let report = maintain(&pool, now, policy).await.unwrap();
    assert_eq!(report.partitions_dropped, 1);
    let ms = |days_ago: i64, h: u32, m: u32| minute(days_ago, h, m) * MIN;
    let want = vec![
        ("a".to_owned(), ms(400, 0, 0), 2 + 3 + 4),
        ("a".to_owned(), ms(40, 10, 0), 5 + 6 + 7),
        ("a".to_owned(), ms(40, 11, 0), 8),
        ("a".to_owned(), ms(2, 10, 1), 9),
        ("a".to_owned(), ms(2, 10, 2), 10),
        ("b".to_owned(), ms(400, 0, 0), 1),
        ("b".to_owned(), ms(40, 10, 0), 2),
    ];
    assert_eq!(stats(&pool).await, want);
    assert_eq!(
        totals(&pool).await,
        totals_before,
        "roll-ups must not touch the totals"
    );
    assert_eq!(
        maintain(&pool, now, policy).await.unwrap(),
        Default::default(),
        "a second run changes nothing"
    );
    assert_eq!(stats(&pool).await, want);
}

/// A ranking snapshot of an empty window is recorded: history at or after it answers an empty list, not the
/// older, non-empty ranking before it (which is what the rank rows alone would give).
#[tokio::test]
async fn an_empty_snapshot_is_history_too() {
    use topk_core::db::{topk_history, write_topk_snapshot};
    use topk_core::domain::{RankedVideo, Window};
    let pool = database("empty_snapshot").await;
    let at = |m: i64| Utc.timestamp_millis_opt(T0 + m * MIN).single().unwrap();
    let ranking = vec![RankedVideo {
        video_id: "v".into(),
        views: 3,
    }];
    write_topk_snapshot(&pool, Window::Minute, at(0), None, &ranking)
        .await
        .unwrap();
    write_topk_snapshot(&pool, Window::Minute, at(5), None, &[])
        .await
        .unwrap();
    assert_eq!(
        topk_history(&pool, Window::Minute, at(3), 10)
            .await
            .unwrap(),
        Some((at(0), ranking))
    );
    assert_eq!(
        topk_history(&pool, Window::Minute, at(6), 10)
            .await
            .unwrap(),
        Some((at(5), vec![]))
    );
}
