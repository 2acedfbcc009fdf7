//! The snapshotter on real Postgres and Redis: idempotence, catch-up, concurrent writers, rebuild after a loss,
//! log replay after a rebuild, and the history endpoint.

use chrono::{TimeZone, Utc};
use clap::Parser;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use topk_core::config::{DatabaseConfig, RedisConfig};
use topk_core::domain::{VideoId, Window};
use topk_core::redis::RedisStore;
use topk_snapshotter::jobs::{snapshot_minutes, snapshot_rankings};
use topk_snapshotter::rebuild::rebuild;

const MIN: i64 = 60_000;
const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % MIN;

async fn redis(url: &str, label: &str, partitions: u16) -> RedisStore {
    let cfg = RedisConfig {
        redis_url: url.to_owned(),
        partitions,
        key_prefix: topk_testkit::unique_name(label),
        redis_timeout_ms: 5_000,
    };
    let store = RedisStore::connect(&cfg).await.unwrap();
    store.ensure_log_groups().await.unwrap();
    store
}

async fn database(label: &str) -> PgPool {
    let url = topk_testkit::fresh_database(label);
    let pool = topk_core::db::pool(&DatabaseConfig { database_url: url }).unwrap();
    topk_core::db::migrate(&pool).await.unwrap();
    pool
}

/// Applies everything in the log with the real worker step.
async fn drain(store: &RedisStore) {
    for p in store.keys().all_partitions() {
        while topk_ingest::worker::step(store, p, "w", 50, Default::default())
            .await
            .unwrap()
            .entries
            > 0
        {}
    }
}

async fn retire(store: &RedisStore, now: i64) {
    topk_ingest::retirer::retire_once(store, now).await.unwrap();
}

/// Appends `n` views of a few videos at each of `minutes` (offsets from T0, in ms).
async fn feed(store: &RedisStore, times: &[i64]) -> Vec<(i64, String, u64)> {
    let mut events = Vec::new();
    for (i, &t) in times.iter().enumerate() {
        let video = format!("v{}", i % 7);
        let n = (i % 3 + 1) as u64;
        store
            .append_at(&[(VideoId::parse(&video).unwrap(), n)], T0 + t)
            .await
            .unwrap();
        events.push((T0 + t, video, n));
    }
    events
}

async fn stats(pool: &PgPool) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT video_id, (extract(epoch from bucket_start) * 1000)::bigint, views FROM video_stats ORDER BY 1, 2")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn totals(pool: &PgPool) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("SELECT video_id, total_views FROM video_totals")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn per_minute(events: &[(i64, String, u64)], before_ms: i64) -> Vec<(String, i64, i64)> {
    let mut m: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (t, v, n) in events {
        let start = t - t.rem_euclid(MIN);
        if start + MIN <= before_ms {
            *m.entry((v.clone(), start)).or_default() += *n as i64;
        }
    }
    m.into_iter().map(|((v, s), n)| (v, s, n)).collect()
}

fn spread(count: i64, over_ms: i64) -> Vec<i64> {
    (0..count).map(|i| i * over_ms / count).collect()
}

/// A snapshotter started before ingest ever ran (no log, no consumer group) writes nothing and fails nothing.
#[tokio::test]
async fn a_snapshot_before_any_log_is_a_no_op() {
    let cfg = RedisConfig {
        redis_url: topk_testkit::servers().redis_url.clone(),
        partitions: 2,
        key_prefix: topk_testkit::unique_name("nolog"),
        redis_timeout_ms: 5_000,
    };
    let store = RedisStore::connect(&cfg).await.unwrap();
    let pool = database("nolog").await;
    assert_eq!(
        snapshot_minutes(&store, &pool, T0).await.unwrap(),
        Default::default()
    );
    assert!(stats(&pool).await.is_empty());
}

#[tokio::test]
async fn a_snapshot_run_twice_equals_once_and_matches_the_events() {
    let store = redis(&topk_testkit::servers().redis_url, "twice", 3).await;
    let pool = database("twice").await;
    let events = feed(&store, &spread(200, 10 * MIN)).await;
    drain(&store).await;
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
    let store = redis(&topk_testkit::servers().redis_url, "catchup", 2).await;
    let pool = database("catchup").await;
    let events = feed(&store, &spread(300, 15 * MIN)).await;
    drain(&store).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_snapshotters_at_once_write_once() {
    let store = redis(&topk_testkit::servers().redis_url, "two", 4).await;
    let pool = database("two").await;
    let events = feed(&store, &spread(400, 8 * MIN)).await;
    drain(&store).await;
    let now = T0 + 9 * MIN;
    let (a, b) = tokio::join!(
        snapshot_minutes(&store, &pool, now),
        snapshot_minutes(&store, &pool, now)
    );
    assert_eq!(
        a.unwrap().rows + b.unwrap().rows,
        per_minute(&events, now).len() as u64
    );
    assert_eq!(stats(&pool).await, per_minute(&events, now));
    let total: i64 = totals(&pool).await.values().sum();
    assert_eq!(total, events.iter().map(|(_, _, n)| *n as i64).sum::<i64>());

    let lock = topk_snapshotter::leader::Leadership::try_acquire(&pool)
        .await
        .unwrap()
        .expect("first gets the lock");
    assert!(
        topk_snapshotter::leader::Leadership::try_acquire(&pool)
            .await
            .unwrap()
            .is_none(),
        "second stands by"
    );
    lock.release().await;
    assert!(topk_snapshotter::leader::Leadership::try_acquire(&pool)
        .await
        .unwrap()
        .is_some());
}

async fn windows(store: &RedisStore) -> HashMap<Window, BTreeMap<String, u64>> {
    let mut out = HashMap::new();
    for w in Window::ALL {
        let mut all = BTreeMap::new();
        for p in store.keys().all_partitions() {
            all.extend(store.window_counts(p, w).await.unwrap());
        }
        out.insert(w, all);
    }
    out
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
        feed(&store, &times).await;
        drain(&store).await;
        let now = T0 + 30 * 60 * MIN + 121 * MIN;
        // The snapshotter writes minutes as they close, before the day window retires them.
        snapshot_minutes(&store, &pool, now).await.unwrap();
        retire(&store, now).await;
        let before = windows(&store).await;

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
        store.ensure_log_groups().await.unwrap();
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
                    store.window_counts(p, w).await.unwrap(),
                    store.reference_counts(p, w, now + 5 * MIN).await.unwrap()
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
/// are counted again exactly once.
#[tokio::test]
async fn rebuild_replays_the_log_after_the_checkpoint() {
    let store = redis(&topk_testkit::servers().redis_url, "replay", 2).await;
    let pool = database("replay").await;
    feed(&store, &spread(100, 10 * MIN)).await;
    drain(&store).await;
    snapshot_minutes(&store, &pool, T0 + 10 * MIN)
        .await
        .unwrap();
    // Views after the snapshot: in Redis and the log, not in Postgres.
    store
        .append_at(&[(VideoId::parse("after").unwrap(), 5)], T0 + 11 * MIN)
        .await
        .unwrap();
    store
        .append_at(&[(VideoId::parse("v1").unwrap(), 2)], T0 + 11 * MIN + 1)
        .await
        .unwrap();
    drain(&store).await;
    let now = T0 + 12 * MIN;
    retire(&store, now).await;
    let before = windows(&store).await;

    rebuild(&store, &pool, now, false).await.unwrap();
    assert!(
        !windows(&store).await[&Window::All].contains_key("after"),
        "not yet replayed"
    );
    drain(&store).await;
    let after = windows(&store).await;
    for w in [Window::Hour, Window::Day, Window::All] {
        assert_eq!(after[&w], before[&w], "{w} after replay");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_answers_the_snapshot_at_or_before_a_time() {
    let store = redis(&topk_testkit::servers().redis_url, "history", 2).await;
    let url = topk_testkit::fresh_database("history");
    let pool = topk_core::db::pool(&DatabaseConfig {
        database_url: url.clone(),
    })
    .unwrap();
    topk_core::db::migrate(&pool).await.unwrap();
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
        .append_at(&[(VideoId::parse("a").unwrap(), 1)], T0)
        .await
        .unwrap();
    drain(&store).await;
    snapshot_rankings(&store, &pool, t1).await.unwrap();
    store
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
        serde_json::json!({"videoId": "b", "minute": 0, "hour": 3, "day": 3, "all": 3})
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

/// `verify` finds nothing on a consistent state and reports a window changed behind its back.
#[tokio::test]
async fn verify_reports_every_difference() {
    let store = redis(&topk_testkit::servers().redis_url, "verify", 2).await;
    let pool = database("verify").await;
    feed(&store, &spread(120, 20 * MIN)).await;
    drain(&store).await;
    let now = T0 + 21 * MIN;
    snapshot_minutes(&store, &pool, now - MIN).await.unwrap();
    retire(&store, now).await;
    let diffs = topk_snapshotter::verify::verify(&store, &pool, now)
        .await
        .unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");

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
    let diffs = topk_snapshotter::verify::verify(&store, &pool, now)
        .await
        .unwrap();
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(
        (diffs[0].window, diffs[0].video_id.as_str()),
        (Window::Hour, "v3")
    );
}

/// Postgres stopped (as in a crash) in the middle of a snapshot run, then back: the next run fills the gap,
/// and no minute or total is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_during_a_snapshot_leaves_no_gap() {
    let store = redis(&topk_testkit::servers().redis_url, "pgstop", 4).await;
    let mut pg = topk_testkit::PgServer::start();
    let url = pg.create_database("pgstop");
    let pool = topk_core::db::pool(&DatabaseConfig { database_url: url }).unwrap();
    topk_core::db::migrate(&pool).await.unwrap();
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

/// Rows go to daily partitions (moved there from the default one if they arrived first); minute rows past a
/// month become hourly, hourly past a year daily, and days past the retention are dropped; sums never change.
#[tokio::test]
async fn history_is_partitioned_rolled_up_and_pruned() {
    use topk_core::history::{ensure_day_partitions, maintain, RetentionPolicy};
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
