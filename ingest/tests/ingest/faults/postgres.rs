//! Postgres stopped across a minute boundary while the services run: ingest and queries go on, the
//! snapshotter keeps running and fills every minute once Postgres is back. (A stop in the middle of one
//! snapshot's writes is `postgres_stopped_during_a_snapshot_leaves_no_gap` in the snapshotter's tests.)

use super::*;
use std::collections::BTreeMap;
use topk_testkit::wait_until;

const MIN: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_across_a_minute_leaves_no_gap_in_video_stats() {
    let mut pg = topk_testkit::PgServer::start();
    let mut env = Env::new(&topk_testkit::servers().redis_url, "pgdown", 3);
    let url = pg.create_database("pgdown");
    env.database_url = Some(url.clone());
    env.snapshotter_once(&["migrate"]).await;
    let store = env.store().await;
    let iport = topk_testkit::free_port();
    let _ingest = env.ingest("all", iport, &[]);
    let aport = topk_testkit::free_port();
    let _api = env.api(aport, &[]);
    let mut snapshotter = env.snapshotter(&["run"], &[("TOPK_MINUTE_SCHEDULE", "* * * * * *")]);
    let sender = Sender::start(iport, 1, 30, 10, "g").paced(Duration::from_millis(20));
    let querier = Querier::start(aport, "g", 30);
    sender.accepted_more(20).await;
    querier.answered_more(10).await;

    // Down until the minute it stopped in has closed, and for at least 10 s.
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let down_at = wall_ms();
    let until = ((down_at / MIN + 1) * MIN + 3_000).max(down_at + 10_000);
    let longest = Duration::from_millis((until - down_at) as u64 + 5_000);
    wait_until("the outage's end", longest, || async { wall_ms() >= until }).await;
    let during = sender.snapshot();
    let pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    let down_for = wall_ms() - down_at;
    // Ingest and queries go on once Postgres is back.
    sender.accepted_more(20).await;
    querier.answered_more(10).await;
    let tally = sender.finish().await;
    let queries = querier.finish().await;
    drain(&store, Duration::from_secs(30)).await;
    assert_eq!(
        during.views_unanswered, 0,
        "ingest refused views while Postgres was down"
    );
    let unavailable = assert_queries_served("with Postgres down", &queries);

    // Every minute closed by now must reach Postgres.
    let through = wall_ms() / MIN - 1;
    let pool =
        topk_core::db::pool(&topk_core::config::DatabaseConfig { database_url: url }).unwrap();
    let caught_up = "the snapshotter to catch up after Postgres came back";
    wait_until(caught_up, Duration::from_secs(60), || async {
        let covered = topk_core::db::checkpoints(&pool)
            .await
            .ok()
            .filter(|c| c.len() == env.partitions as usize)
            .map(|c| c.values().map(|c| c.minute_through).min().unwrap());
        match covered.is_some_and(|m| m >= through) {
            true => Ok(()),
            false => Err(format!(
                "{covered:?} < {through}\n{}",
                snapshotter.log_tail()
            )),
        }
    })
    .await;

    // Per (video, minute): a batch answered within one minute is in it; one straddling two may be in either.
    let mut must: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut may: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let first = tally.accepted_batches.iter().map(|b| b.0).min().unwrap() / MIN;
    for (start, answered, batch) in &tally.accepted_batches {
        for (v, n) in batch {
            if start / MIN == answered / MIN {
                *must.entry((v.clone(), start / MIN)).or_default() += n;
            }
            for m in start / MIN..=answered / MIN {
                *may.entry((v.clone(), m)).or_default() += n;
            }
        }
    }
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT video_id, (extract(epoch from bucket_start) * 1000)::bigint / 60000, views FROM video_stats",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stats: BTreeMap<(String, i64), u64> = rows
        .into_iter()
        .map(|(v, m, n)| ((v, m), n as u64))
        .collect();
    for (key, &n) in &must {
        if key.1 <= through {
            let have = stats.get(key).copied().unwrap_or(0);
            assert!(have >= n, "{key:?}: {have} in video_stats, {n} accepted");
        }
    }
    for (key, &have) in &stats {
        let hi = may.get(key).copied().unwrap_or(0);
        assert!(
            have <= hi,
            "{key:?}: {have} in video_stats, at most {hi} sent"
        );
    }
    for m in first..=through {
        assert!(
            stats.keys().any(|(_, sm)| *sm == m),
            "minute {m} is missing from video_stats"
        );
    }
    let totals: Vec<(i64,)> = sqlx::query_as("SELECT total_views FROM video_totals")
        .fetch_all(&pool)
        .await
        .unwrap();
    let total: i64 = totals.iter().map(|t| t.0).sum();
    assert_eq!(
        total as u64,
        stats.values().sum::<u64>(),
        "video_totals differs from video_stats"
    );
    let took = snapshotter.terminate(Duration::from_secs(10)).await;
    drop(pg);
    report(&format!(
        "faults Postgres down {:.1} s: minutes {} to {through} all in video_stats ({} of them closed while it \
         was down), equal to the views accepted; ingest {} views accepted, 0 refused; {} queries answered ({unavailable} of them 503); \
         snapshotter exit 0 after SIGTERM in {took:?}",
        down_for as f64 / 1000.0,
        first,
        (down_at + down_for) / MIN - down_at / MIN,
        tally.views_accepted,
        queries.len()
    ));
    add_to_suite(1, tally.views_sent, tally.views_accepted);
}
