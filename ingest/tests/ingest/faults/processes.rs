//! Processes dying: workers and receivers SIGKILLed at random moments, every service SIGTERMed under load.

use super::*;
use topk_testkit::wait_until;

const PARTITIONS: u16 = 4;

/// Worker settings that make a killed worker's entries claimable quickly and batches small (more moments
/// to die at).
const FAST_CLAIM: [(&str, &str); 2] = [
    ("TOPK_CLAIM_IDLE_MS", "300"),
    ("TOPK_WORKER_BATCH_ENTRIES", "3"),
];

/// Ranking snapshots the snapshotter has taken (a row per window and run).
async fn ranking_snapshots(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ranking_snapshots")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Guarantee 1: whatever moment a worker dies at, every view answered 202 is counted exactly once. Sometimes
/// two workers share the partitions, so one dies while the other claims its entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigkill_at_random_moments() {
    let env = Env::new(&topk_testkit::servers().redis_url, "wkill", PARTITIONS);
    let store = env.store().await;
    let port = topk_testkit::free_port();
    let _receiver = env.ingest("receiver", port, &[]);
    let started = Instant::now();
    let sender = Sender::start(port, 1, 50, 20, "v");
    let mut kills = 0;
    for round in 0..20 {
        let mut workers = vec![env.ingest("worker", 0, &FAST_CLAIM)];
        if round % 3 == 0 {
            workers.push(env.ingest("worker", 0, &FAST_CLAIM));
        }
        let alive_ms = rand::rng().random_range(50..600);
        tokio::time::sleep(Duration::from_millis(alive_ms)).await;
        for mut w in workers {
            w.kill();
            kills += 1;
        }
    }
    let tally = sender.finish().await;
    let _last = env.ingest("worker", 0, &FAST_CLAIM);
    drain(&store, Duration::from_secs(60)).await;
    assert!(tally.views_accepted > 1000, "too few views: {tally:?}");
    assert_eq!(tally.views_unanswered, 0, "the receiver refused views");
    check_windows(
        "worker SIGKILL",
        &store,
        &tally,
        windows_since(started),
        kills,
    )
    .await;
}

/// A receiver killed mid-load: every view answered 202 is counted once; a request in flight at the kill got
/// no answer and is counted at most once (counted <= sent, >= accepted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_sigkill_mid_load() {
    let env = Env::new(&topk_testkit::servers().redis_url, "rkill", PARTITIONS);
    let store = env.store().await;
    let _worker = env.ingest("worker", 0, &FAST_CLAIM);
    let started = Instant::now();
    let mut port = topk_testkit::free_port();
    let mut receiver = env.ingest("receiver", port, &[]);
    // Several senders, so that requests are in flight when the receiver dies.
    let sender = Sender::start(port, 4, 50, 50, "r");
    let mut kills = 0;
    for _ in 0..8 {
        let alive_ms = rand::rng().random_range(100..700);
        tokio::time::sleep(Duration::from_millis(alive_ms)).await;
        receiver.kill();
        kills += 1;
        port = topk_testkit::free_port();
        receiver = env.ingest("receiver", port, &[]);
        sender.point_to(port);
    }
    // The last receiver takes batches too.
    sender.accepted_more(10).await;
    let tally = sender.finish().await;
    drain(&store, Duration::from_secs(60)).await;
    assert!(tally.views_accepted > 1000, "too few views: {tally:?}");
    let outcome = check_windows(
        "receiver SIGKILL",
        &store,
        &tally,
        windows_since(started),
        kills,
    )
    .await;
    report(&format!(
        "faults receiver SIGKILL: {} views got no answer, {} of them were stored before the kill",
        tally.views_unanswered, outcome.unanswered_counted
    ));
}

/// SIGTERM of every service under load: separate receiver and worker processes, the API and the snapshotter's
/// scheduler. Each exits 0 within a bound; the worker leaves nothing delivered and unacknowledged; the
/// receiver answers every request it read (a request it never read gets no answer and is not counted); queries
/// in flight are answered; nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_every_service_is_graceful() {
    let mut env = Env::new(&topk_testkit::servers().redis_url, "term", 3);
    env.database_url = Some(topk_testkit::fresh_database("term"));
    env.snapshotter_once(&["migrate"]).await;
    let store = env.store().await;
    let bound = Duration::from_secs(10);
    let started = Instant::now();

    let rport = topk_testkit::free_port();
    let mut receiver = env.ingest("receiver", rport, &[]);
    let mut worker = env.ingest("worker", 0, &[("TOPK_WORKER_BATCH_ENTRIES", "2")]);
    let aport = topk_testkit::free_port();
    let mut api = env.api(aport, &[("TOPK_RANKING_CACHE_MS", "0")]);
    // Jobs every second, so the signal often lands while one runs.
    let every_second = [
        ("TOPK_MINUTE_SCHEDULE", "* * * * * *"),
        ("TOPK_TOPK_SCHEDULE", "* * * * * *"),
    ];
    let mut snapshotter = env.snapshotter(&["run"], &every_second);
    let pool = topk_core::db::pool(&topk_core::config::DatabaseConfig {
        database_url: env.database_url.clone().unwrap(),
    })
    .unwrap();
    let sender = Sender::start(rport, 3, 30, 20, "t");
    let querier = Querier::start(aport, "t", 30);
    let mut took = Vec::new();

    // Each service is stopped while the load flows through it: the worker once batches get through (it has
    // entries in hand: batches of 2).
    sender.accepted_more(30).await;
    took.push(("worker", worker.terminate(bound).await));
    for p in store.keys().all_partitions() {
        assert_eq!(
            store.log_state().pending(p).await.unwrap(),
            0,
            "partition {p}: entries read and not acknowledged after the worker stopped"
        );
    }
    let _worker2 = env.ingest("worker", 0, &[]);

    querier.answered_more(10).await;
    took.push(("api", api.terminate(bound).await));
    let aport2 = topk_testkit::free_port();
    let _api2 = env.api(aport2, &[]);
    querier.point_to(aport2);

    // The snapshotter once its jobs run: a ranking snapshot more than now (one a second).
    let from = ranking_snapshots(&pool).await;
    wait_until(
        "a ranking snapshot taken",
        Duration::from_secs(30),
        || async {
            let taken = ranking_snapshots(&pool).await;
            if taken > from {
                Ok(())
            } else {
                Err(format!("{taken} snapshots\n{}", snapshotter.log_tail()))
            }
        },
    )
    .await;
    took.push(("snapshotter", snapshotter.terminate(bound).await));

    sender.accepted_more(10).await;
    took.push(("receiver", receiver.terminate(bound).await));
    let in_flight_then = sender.snapshot();
    let rport2 = topk_testkit::free_port();
    let _receiver2 = env.ingest("receiver", rport2, &[]);
    sender.point_to(rport2);
    sender.accepted_more(10).await;
    querier.answered_more(10).await;

    let tally = sender.finish().await;
    let queries = querier.finish().await;
    drain(&store, Duration::from_secs(30)).await;
    assert!(tally.batches_accepted > 30, "too few batches: {tally:?}");
    assert_eq!(
        tally.views_refused, 0,
        "a receiver refused views while stopping"
    );
    let outcome = check_windows("SIGTERM", &store, &tally, windows_since(started), 4).await;
    assert_eq!(
        outcome.unanswered_counted, 0,
        "a request the stopping receiver did not answer was counted"
    );
    let bad: Vec<_> = queries
        .iter()
        .filter(|(_, s, _)| s.is_some_and(|s| s != 200))
        .collect();
    assert!(bad.is_empty(), "queries failed: {bad:?}");
    report(&format!(
        "faults SIGTERM: exit 0 after {}; {} requests unanswered around the receiver's stop ({} views before it); \
         {} queries, {} unanswered (API stopped)",
        took.iter()
            .map(|(n, d)| format!("{n} {:.0} ms", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", "),
        tally.views_unanswered,
        in_flight_then.views_unanswered,
        queries.len(),
        queries.iter().filter(|(_, s, _)| s.is_none()).count()
    ));
}
