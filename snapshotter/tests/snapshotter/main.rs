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

fn ranked(rows: &[(&str, u64)]) -> Vec<topk_core::domain::RankedVideo> {
    rows.iter()
        .map(|(v, n)| topk_core::domain::RankedVideo {
            video_id: (*v).into(),
            views: *n,
        })
        .collect()
}

/// The fast path (COPY) and the conflict path (upsert, taken when a row already sits past the checkpoint)
/// leave the same rows and totals; the conflicting row is replaced, and totals are added once.
#[tokio::test]
async fn copy_path_and_conflict_path_write_the_same_rows() {
    use topk_core::db::{minute_start, write_minutes};
    let m0 = T0 / MIN;
    let minutes = vec![
        (m0, ranked(&[("b", 2), ("a", 5), ("c", 1)])),
        (m0 + 1, ranked(&[("a", 1), ("d", 7)])),
        (m0 + 3, ranked(&[("c", 4), ("b", 3), ("a", 2)])),
    ];
    let fast = database("copypath").await;
    let conflict = database("conflictpath").await;
    for pool in [&fast, &conflict] {
        write_minutes(pool, 0, &[(m0 - 1, ranked(&[("a", 1)]))], m0 - 1)
            .await
            .unwrap();
    }
    // A stale row past the checkpoint, as a restored backup with older checkpoints could hold.
    sqlx::query("INSERT INTO video_stats (video_id, bucket_start, views) VALUES ('d', $1, 99)")
        .bind(minute_start(m0 + 1))
        .execute(&conflict)
        .await
        .unwrap();

    let by_copy = write_minutes(&fast, 0, &minutes, m0 + 4).await.unwrap();
    let by_upsert = write_minutes(&conflict, 0, &minutes, m0 + 4).await.unwrap();
    assert!(!by_copy.upserted && by_upsert.upserted);
    assert_eq!((by_copy.minutes, by_copy.rows), (3, 8));
    assert_eq!(
        (by_upsert.minutes, by_upsert.rows),
        (by_copy.minutes, by_copy.rows)
    );
    let want = vec![
        ("a".to_owned(), T0 - MIN, 1),
        ("a".to_owned(), T0, 5),
        ("a".to_owned(), T0 + MIN, 1),
        ("a".to_owned(), T0 + 3 * MIN, 2),
        ("b".to_owned(), T0, 2),
        ("b".to_owned(), T0 + 3 * MIN, 3),
        ("c".to_owned(), T0, 1),
        ("c".to_owned(), T0 + 3 * MIN, 4),
        ("d".to_owned(), T0 + MIN, 7),
    ];
    assert_eq!(stats(&fast).await, want);
    assert_eq!(stats(&conflict).await, want);
    let want_totals: BTreeMap<String, i64> = [("a", 9), ("b", 5), ("c", 5), ("d", 7)]
        .into_iter()
        .map(|(v, n)| (v.to_owned(), n))
        .collect();
    assert_eq!(totals(&fast).await, want_totals);
    assert_eq!(totals(&conflict).await, want_totals);
    for pool in [&fast, &conflict] {
        let cp = topk_core::db::checkpoints(pool).await.unwrap();
        assert_eq!(cp[&0].minute_through, m0 + 4);
    }
}

/// Writes whose minutes overlap what is already written (two snapshotters whose chunks end at different
/// minutes) add only the minutes past the checkpoint, and never move it back.
#[tokio::test]
async fn overlapping_writes_add_only_the_minutes_past_the_checkpoint() {
    use topk_core::db::write_minutes;
    let pool = database("overlap").await;
    let m0 = T0 / MIN;
    let minute = |i: i64| (m0 + i, ranked(&[("a", 1), (&format!("v{i}"), 2)]));
    let first: Vec<_> = (0..5).map(minute).collect();
    let second: Vec<_> = (3..8).map(minute).collect();
    let w = write_minutes(&pool, 1, &first, m0 + 4).await.unwrap();
    assert_eq!((w.minutes, w.rows), (5, 10));
    let w = write_minutes(&pool, 1, &second, m0 + 7).await.unwrap();
    assert_eq!(
        (w.minutes, w.rows),
        (3, 6),
        "minutes 3 and 4 were written twice"
    );
    let w = write_minutes(&pool, 1, &first, m0 + 4).await.unwrap();
    assert_eq!(w, Default::default());
    assert_eq!(
        topk_core::db::checkpoints(&pool).await.unwrap()[&1].minute_through,
        m0 + 7
    );
    assert_eq!(totals(&pool).await["a"], 8);
    assert_eq!(stats(&pool).await.len(), 16);
}

/// The snapshotter's connection dies after the COPY into `video_stats` and before the commit (killed while it
/// waits to update `video_totals`): nothing of that transaction stays, and the next run writes every row and
/// total once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_copy_and_commit_writes_once() {
    let store = redis(&topk_testkit::servers().redis_url, "copycrash", 2).await;
    let pool = database("copycrash").await;
    let events = feed(&store, &spread(300, 10 * MIN)).await;
    drain(&store).await;
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
        store.append_at(&batch, T0 + chunk[0]).await.unwrap();
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

/// Postgres orders video ids by their bytes, as Redis does, whatever the database's default collation: an
/// analyst's `ORDER BY views DESC, video_id DESC` breaks ties as the rankings do. Every `video_id` column,
/// daily partitions included, uses the "C" collation (a language collation would put "a" before "B").
#[tokio::test]
async fn video_ids_order_by_bytes_in_postgres_as_in_redis() {
    use topk_core::db::write_minutes;
    let pool = database("byteorder").await;
    let day = Utc.timestamp_millis_opt(T0).unwrap().date_naive();
    topk_core::history::ensure_day_partitions(&pool, day, day)
        .await
        .unwrap();
    let ids = ["a", "B", "b", "Z9", "é", "e", "_x", "10", "9"];
    let tied: Vec<(&str, u64)> = ids.iter().map(|v| (*v, 3)).collect();
    write_minutes(&pool, 0, &[(T0 / MIN, ranked(&tied))], T0 / MIN)
        .await
        .unwrap();

    let not_bytewise: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND column_name = 'video_id' \
         AND collation_name IS DISTINCT FROM 'C' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(not_bytewise, vec![], "video_id columns not in byte order");

    let mut by_bytes: Vec<String> = ids.iter().map(|v| (*v).to_owned()).collect();
    by_bytes.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    for table in ["video_stats", "video_totals"] {
        let ordered: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT video_id FROM {table} ORDER BY video_id DESC"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        let ordered: Vec<String> = ordered.into_iter().map(|(v,)| v).collect();
        assert_eq!(ordered, by_bytes, "{table}");
    }
}
