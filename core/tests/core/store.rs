//! The core's Redis steps against a real redis-server: apply and retire compared with a brute-force count and
//! with the reference union, exactly-once under lost ownership, log trimming.

use proptest::prelude::*;
use std::collections::HashMap;
use std::time::Duration;
use topk_core::aggregate::aggregate;
use topk_core::batch::LogEntry;
use topk_core::config::RedisConfig;
use topk_core::domain::{TopK, VideoId, Window};
use topk_core::redis::{ApplyOutcome, LogRead, RedisStore, SourcePartition, SourceRecord};
use topk_core::slices::minute_of;
use topk_testkit::cluster_url;
use topk_testkit::fixtures::{
    apply_log, brute_force_window, read_log, redis_config, redis_config_at, seed_partitions, store,
    store_for, top, window_counts, TINY_LEADER_CAPS,
};

const T0: i64 = 1_700_000_000_000;

/// Logs `n` views of video "v" at each of `times` (one entry each).
async fn log_views(store: &RedisStore, n: u64, times: &[i64]) {
    let v = VideoId::parse("v").unwrap();
    for &at in times {
        store
            .writer()
            .append_at(&[(v.clone(), n)], at)
            .await
            .unwrap();
    }
}

/// A store of one partition whose log holds one entry (`n` views of "v" at T0), delivered to `consumer` and
/// not yet acknowledged. Returns the store and what `consumer` read.
async fn one_entry_read_by(label: &str, n: u64, consumer: &str) -> (RedisStore, Vec<LogEntry>) {
    let store = store(label, 1).await;
    log_views(&store, n, &[T0]).await;
    let read = read_log(&store, 0, consumer, LogRead::New, 10).await;
    assert_eq!(read.len(), 1, "one entry logged");
    (store, read)
}

/// Applies `entries` of partition 0 as `consumer`, as a worker does with what it read or claimed.
async fn apply(store: &RedisStore, consumer: &str, entries: &[LogEntry]) -> ApplyOutcome {
    store
        .applier()
        .apply(0, consumer, &aggregate(entries))
        .await
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn seal_all(store: &RedisStore, now: i64) {
    for p in store.keys().all_partitions() {
        store
            .applier()
            .seal_minutes(p, minute_of(now) + 1)
            .await
            .unwrap();
    }
}

async fn reference_counts(store: &RedisStore, w: Window, now: i64) -> HashMap<String, u64> {
    let mut all = HashMap::new();
    for p in store.keys().all_partitions() {
        all.extend(store.history().reference_counts(p, w, now).await.unwrap());
    }
    all
}

/// One step of the random schedule: time advances, a batch arrives, and maybe the workers and the retirer run.
#[derive(Debug, Clone)]
struct Step {
    advance_ms: i64,
    views: Vec<(String, u64)>,
    apply: bool,
    retire: bool,
    /// Seal every minute up to the current one: later views reopen it, which readers must sum.
    seal: bool,
    /// The batch comes from a source (Kafka) that dates its views this long before they are logged: they
    /// count only in the windows whose span still holds their slice, and in their minute's history.
    backdate_ms: Option<i64>,
}

fn step() -> impl Strategy<Value = Step> {
    let advance = prop_oneof![
        6 => 0i64..8_000,          // within the minute window
        3 => 0i64..600_000,        // minutes: the hour window moves
        1 => 0i64..30 * 3_600_000, // hours: the day window moves
    ];
    (
        advance,
        proptest::collection::vec(("[a-p]", 1u64..5), 1..8),
        any::<bool>(),
        any::<bool>(),
        proptest::bool::weighted(0.2),
        prop_oneof![
            6 => Just(None),
            2 => (0i64..70_000).prop_map(Some),             // around the minute window's edge
            1 => (0i64..2 * 3_600_000).prop_map(Some),      // around the hour window's edge
            1 => (0i64..2 * 86_400_000).prop_map(Some),     // around the day window's edge
        ],
    )
        .prop_map(
            |(advance_ms, views, apply, retire, seal, backdate_ms)| Step {
                advance_ms,
                views,
                apply,
                retire,
                seal,
                backdate_ms,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every window equals the brute-force count over the same events, and the reference union over its slices,
    /// and the rankings give its exact top K (also for K above the leader caps), whenever the workers have
    /// applied the log and the retirer has caught up, whatever the order of steps. Tiny leader caps (3 kept above
    /// the threshold, trimmed past 6) make trims and refills happen all the time among 16 videos.
    #[test]
    fn windows_match_brute_force_and_reference(steps in proptest::collection::vec(step(), 1..40),
                                               partitions in 1u16..4, chunk in 1usize..5,
                                               tiny_caps in any::<bool>()) {
        runtime().block_on(async {
            run_steps(store("prop", partitions).await, &steps, chunk, tiny_caps).await;
        });
    }

    /// The same on a Redis Cluster (3 primaries): every script stays on one partition's slot, and the
    /// windows are the same as on one node.
    #[test]
    fn windows_match_brute_force_on_a_cluster(steps in proptest::collection::vec(step(), 1..25),
                                              chunk in 1usize..5, tiny_caps in any::<bool>()) {
        runtime().block_on(async {
            let store = store_for(&redis_config_at(&cluster_url(), "prop_cluster", 6)).await;
            run_steps(store, &steps, chunk, tiny_caps).await;
        });
    }
}

/// Runs `steps` (append, apply, retire, seal) on `store`, checking every window whenever the log is applied
/// and retired, and once at the end.
async fn run_steps(mut store: RedisStore, steps: &[Step], chunk: usize, tiny_caps: bool) {
    if tiny_caps {
        store = store.with_leader_caps(TINY_LEADER_CAPS);
    }
    let mut now = T0;
    let mut events: Vec<(i64, String, u64)> = Vec::new();
    let source = SourcePartition {
        topic: "views".into(),
        partition: 0,
    };
    for (offset, s) in steps.iter().enumerate() {
        now += s.advance_ms;
        let views: Vec<(VideoId, u64)> = s
            .views
            .iter()
            .map(|(v, n)| (VideoId::parse(v).unwrap(), *n))
            .collect();
        let event_ms = match s.backdate_ms {
            None => {
                store.writer().append_at(&views, now).await.unwrap();
                now
            }
            Some(back) => {
                let event_ms = now - back;
                for (p, lines) in store.writer().lines_by_partition(&views) {
                    let record = SourceRecord {
                        offset: offset as i64,
                        event_ms,
                        lines,
                    };
                    let appended = store
                        .writer()
                        .append_source_at(p, &source, &[record], now)
                        .await
                        .unwrap();
                    assert_eq!(appended.records, 1);
                }
                event_ms
            }
        };
        events.extend(s.views.iter().map(|(v, n)| (event_ms, v.clone(), *n)));
        if s.apply {
            apply_log(&store, "c1", chunk).await;
        }
        if s.retire {
            store.applier().retire_all(now).await.unwrap();
        }
        if s.seal {
            seal_all(&store, now).await;
        }
        if s.apply && s.retire {
            check(&store, &events, now).await;
        }
    }
    apply_log(&store, "c1", chunk).await;
    store.applier().retire_all(now).await.unwrap();
    check(&store, &events, now).await;
}

async fn check(store: &RedisStore, events: &[(i64, String, u64)], now: i64) {
    for w in Window::ALL {
        let want = brute_force_window(events, w, now);
        let got = window_counts(store, w).await;
        assert_eq!(got, want, "window {w} at {now}");
        if w != Window::All {
            assert_eq!(
                reference_counts(store, w, now).await,
                want,
                "reference union of {w} at {now}"
            );
        }
        for p in store.keys().all_partitions() {
            let broken = store.recovery().leader_violations(p, w).await.unwrap();
            assert!(
                broken.is_empty(),
                "leaders of {w} on partition {p}: {broken:?}"
            );
        }
        let mut expected: Vec<(u64, String)> = want.into_iter().map(|(v, n)| (n, v)).collect();
        expected.sort_by(|a, b| b.cmp(a));
        // Above 3 with tiny caps, a partition's leader set cannot hold its own top K: the read must find the
        // rest in the hashes of the partitions whose threshold is above the K-th count.
        for k in [1, 2, 3, 5, 8] {
            let top: Vec<(u64, String)> = top(store, w, k)
                .await
                .into_iter()
                .map(|(v, n)| (n, v))
                .collect();
            let want: Vec<(u64, String)> = expected.iter().take(k).cloned().collect();
            assert_eq!(top, want, "top {k} of {w} at {now}");
        }
    }
}

/// One batch whose slices differ in liveness: one already retired from the hour window, one only from the minute
/// window, one live everywhere. Each window must count just its live slices, although a video appears in all three.
#[tokio::test]
async fn a_batch_counts_each_slice_only_in_the_windows_where_it_is_live() {
    let store = store("liveness", 1).await;
    let groups: [(i64, &[(&str, u64)]); 3] = [
        (T0 - 2 * 3_600_000 - 60_000, &[("a", 3), ("b", 2)]),
        (T0 - 90_000, &[("a", 1), ("c", 4)]),
        (T0, &[("a", 2), ("d", 1)]),
    ];
    let mut events = Vec::new();
    for (at, views) in groups {
        let parsed: Vec<(VideoId, u64)> = views
            .iter()
            .map(|(v, n)| (VideoId::parse(v).unwrap(), *n))
            .collect();
        store.writer().append_at(&parsed, at).await.unwrap();
        events.extend(views.iter().map(|(v, n)| (at, v.to_string(), *n)));
    }
    // The cursors pass the two older slices before any of their views is applied.
    store.applier().retire_all(T0).await.unwrap();

    let entries = read_log(&store, 0, "w", LogRead::New, 10).await;
    let batch = aggregate(&entries);
    assert_eq!(batch.slices.len(), 3, "one batch, three slices");
    assert_eq!(
        store.applier().apply(0, "w", &batch).await.unwrap(),
        ApplyOutcome::Applied { views: 13 }
    );
    assert_eq!(
        window_counts(&store, Window::Minute).await,
        HashMap::from([("a".to_owned(), 2), ("d".to_owned(), 1)])
    );
    assert_eq!(window_counts(&store, Window::Hour).await["a"], 3);
    assert_eq!(window_counts(&store, Window::Day).await["a"], 6);
    check(&store, &events, T0).await;
}

/// A worker whose entries were claimed by another (it looked dead) applies nothing; the claimer counts them once.
#[tokio::test]
async fn claimed_entries_are_applied_once() {
    let (store, slow) = one_entry_read_by("claim", 5, "slow").await;
    let claimed = store
        .applier()
        .claim_stale(0, "rescuer", Duration::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    assert_eq!(apply(&store, "slow", &slow).await, ApplyOutcome::NotOwned);
    assert_eq!(
        apply(&store, "rescuer", &claimed).await,
        ApplyOutcome::Applied { views: 5 }
    );
    // A retry of the same call (a reply lost on the way back) changes nothing either.
    assert_eq!(
        apply(&store, "rescuer", &claimed).await,
        ApplyOutcome::NotOwned
    );
    assert_eq!(window_counts(&store, Window::All).await["v"], 5);
    assert_eq!(store.log_state().log_backlog(0).await.unwrap(), 0);
}

/// The largest batch (10,000 distinct videos) into one partition is logged and applied whole.
#[tokio::test]
async fn the_largest_batch_fits_in_one_partition() {
    let store = store("large", 1).await;
    let views: Vec<(VideoId, u64)> = (0..10_000)
        .map(|i| (VideoId::parse(&format!("v{i}")).unwrap(), 2))
        .collect();
    store.writer().append(&views).await.unwrap();
    assert_eq!(apply_log(&store, "w", 10).await, 20_000);
    let all = window_counts(&store, Window::All).await;
    assert_eq!((all.len(), all.values().sum::<u64>()), (10_000, 20_000));
}

/// A restarted worker finds the entries it read before dying among its own pending ones.
#[tokio::test]
async fn own_pending_entries_are_redelivered() {
    let (store, first) = one_entry_read_by("pending", 2, "w").await;
    assert!(read_log(&store, 0, "w", LogRead::New, 10).await.is_empty());
    let again = read_log(&store, 0, "w", LogRead::OwnPending, 10).await;
    assert_eq!(again, first);
}

/// Trimming keeps every entry that is pending or undelivered, and removes acknowledged old ones.
#[tokio::test]
async fn trim_never_drops_unacknowledged_entries() {
    let store = store("trim", 1).await;
    log_views(&store, 1, &[T0, T0 + 1, T0 + 2]).await;
    let read = read_log(&store, 0, "w", LogRead::New, 1).await;
    apply(&store, "w", &read).await;
    let pending = read_log(&store, 0, "w", LogRead::New, 1).await;
    // Everything is older than the cutoff, but only the acknowledged first entry may go.
    assert_eq!(
        store.applier().trim_log(0, T0 + 1_000_000).await.unwrap(),
        1
    );
    assert_eq!(store.log_state().log_backlog(0).await.unwrap(), 2);
    apply(&store, "w", &pending).await;
    assert_eq!(apply_log(&store, "w", 10).await, 1);
    assert_eq!(window_counts(&store, Window::All).await["v"], 3);
}

/// After `rebuild-redis` the group's last delivered id is the checkpoint's, `<ms>-18446744073709551615`: the
/// first id after it is the next millisecond's first. Trimming must neither overflow (a panic in the
/// retirer) nor drop the undelivered entries that follow.
#[tokio::test]
async fn trim_after_a_group_at_the_largest_sequence_keeps_what_follows() {
    let store = store("trim_max_seq", 1).await;
    log_views(&store, 1, &[T0, T0 + 1, T0 + 2]).await;
    let mut conn = topk_testkit::RedisConn::open_url(&topk_testkit::servers().redis_url).unwrap();
    let set = conn
        .cmd(&[
            "XGROUP",
            "SETID",
            &store.keys().log(0),
            "workers",
            &format!("{T0}-{}", u64::MAX),
        ])
        .unwrap();
    assert_eq!(set.text().as_deref(), Some("OK"), "{set:?}");
    // The entry at T0 counts as delivered and acknowledged; the two after it are undelivered.
    assert_eq!(
        store.applier().trim_log(0, T0 + 1_000_000).await.unwrap(),
        1
    );
    assert_eq!(apply_log(&store, "w", 10).await, 2);
}

/// `rebuild-redis` for a partition that Postgres has no checkpoint of: the log that survived is replayed
/// whole into every window, and a rebuild that stopped between dropping the group and creating it again
/// (the group missing) can simply be run again.
#[tokio::test]
async fn a_restore_without_checkpoint_replays_the_surviving_log() {
    let store = store("restore_no_checkpoint", 1).await;
    log_views(&store, 2, &[T0, T0 + 1_000, T0 + 2_000]).await;
    let now = T0 + 10_000;
    let none = std::collections::BTreeMap::new();
    store
        .recovery()
        .restore_partition(0, &none, &[], now, None, None)
        .await
        .unwrap();
    // As if interrupted between the group's DESTROY and CREATE: run it again on a log with no group.
    let mut conn = topk_testkit::RedisConn::open_url(&topk_testkit::servers().redis_url).unwrap();
    conn.cmd(&["XGROUP", "DESTROY", &store.keys().log(0), "workers"])
        .unwrap();
    store
        .recovery()
        .restore_partition(0, &none, &[], now, None, None)
        .await
        .unwrap();
    assert_eq!(apply_log(&store, "w", 10).await, 6);
    for w in Window::ALL {
        assert_eq!(
            window_counts(&store, w).await.get("v"),
            Some(&6),
            "{w} after the replay"
        );
    }
}

/// A log whose consumer group is missing (Redis restarted empty while receivers kept accepting, before a
/// worker came back) holds views nobody applied: the partition is applied through nothing after them, so the
/// snapshotter cannot close their minute.
#[tokio::test]
async fn a_log_without_its_group_is_not_taken_as_applied() {
    let store = RedisStore::connect(&redis_config("no_group", 1))
        .await
        .unwrap();
    log_views(&store, 1, &[T0, T0 + 5]).await;
    assert_eq!(
        store.log_state().applied_through_ms(0).await.unwrap(),
        Some(T0)
    );
}

/// Trimming beside a worker that keeps reading: an entry delivered while the trim reads where the group
/// stands must stay in the log until it is acknowledged (read in two steps, it looked neither pending nor
/// undelivered, and the trim deleted it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_beside_a_reading_worker_keeps_every_unacknowledged_entry() {
    const ENTRIES: usize = 3_000;
    let cfg = redis_config("trim_race", 1);
    let (trimmer, worker) = (store_for(&cfg).await, store_for(&cfg).await);
    let times: Vec<i64> = (0..ENTRIES as i64).map(|i| T0 + i).collect();
    log_views(&trimmer, 1, &times).await;
    let reading = tokio::spawn(async move {
        // Delivered one at a time and never acknowledged: every entry stays pending.
        while !read_log(&worker, 0, "w", LogRead::New, 1).await.is_empty() {}
    });
    while !reading.is_finished() {
        trimmer
            .applier()
            .trim_log(0, T0 + 1_000_000_000)
            .await
            .unwrap();
    }
    reading.await.unwrap();
    let pending = read_log(&trimmer, 0, "w", LogRead::OwnPending, ENTRIES + 1).await;
    let lost = pending.iter().filter(|e| e.views.is_err()).count();
    assert_eq!(
        (pending.len(), lost),
        (ENTRIES, 0),
        "entries trimmed while pending"
    );
}

/// A service started before its Redis (down, then still loading its data) connects once Redis is ready,
/// without a restart of its own.
#[tokio::test]
async fn store_started_before_redis_connects_when_redis_is_ready() {
    let mut server = topk_testkit::RedisServer::start_persistent();
    // Enough data that loading it at start takes a moment, answering LOADING meanwhile.
    let mut conn = server.conn();
    for chunk in 0..20 {
        let mut args = vec!["MSET".to_owned()];
        for i in 0..10_000 {
            args.push(format!("k{chunk}:{i}"));
            args.push("x".repeat(64));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        conn.cmd(&args).unwrap();
    }
    server.shutdown();
    let cfg = RedisConfig {
        redis_timeout_ms: 300,
        ..redis_config_at(&server.url(), "late", 2)
    };
    let store = RedisStore::connect(&cfg).await.unwrap();
    assert!(store.ping().await.is_err(), "Redis is down");
    server.start_again();
    // Polls what a service does first at start-up. A single command may still time out once Redis answers
    // (its 300 ms timeout on two busy cores); what must hold is that the same store gets through without a
    // restart of its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = store.applier().ensure_log_groups().await {
        assert!(
            std::time::Instant::now() < deadline,
            "the store never connected to the Redis started after it: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Redis stopped: commands fail within the timeout instead of hanging.
#[tokio::test]
async fn unreachable_redis_fails_fast() {
    let mut server = topk_testkit::RedisServer::start();
    let cfg = RedisConfig {
        redis_timeout_ms: 300,
        ..redis_config_at(&server.url(), "down", 2)
    };
    let store = RedisStore::connect(&cfg).await.unwrap();
    store.ping().await.unwrap();
    server.kill();
    let started = std::time::Instant::now();
    assert!(store
        .rankings()
        .top(Window::All, TopK::DEFAULT)
        .await
        .is_err());
    assert!(store
        .writer()
        .append(&[(VideoId::parse("v").unwrap(), 1)])
        .await
        .is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// The top K read from a few partitions whose leaders are very unequal: all of the top 300 in partition 2, ties
/// across partitions at the cut. The first short read of each partition cannot hold it, so the ranking is exact
/// only if the partitions that may hide more are read again; and with leader sets of a few members (tiny caps:
/// partition 2 keeps 4 of its 400 videos as leaders), only if the partitions whose threshold is above the K-th
/// count are read from their hashes.
#[tokio::test]
async fn top_k_is_exact_when_one_partition_holds_most_of_it() {
    for (name, caps) in [
        ("skewed_top", None),
        ("skewed_top_tiny", Some(TINY_LEADER_CAPS)),
    ] {
        let mut store = store(name, 4).await;
        if let Some(caps) = caps {
            store = store.with_leader_caps(caps);
        }
        let mut all = seed_partitions(&store, Window::Hour, 4, 400, |p, i| {
            if p == 2 {
                10_000 - i
            } else {
                400 - i % 200
            }
        })
        .await;
        let leaders = store
            .recovery()
            .leader_counts(2, Window::Hour)
            .await
            .unwrap();
        if caps.is_some() {
            assert_eq!(leaders.len(), 4, "tiny caps keep 4 leaders");
        }
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        for k in [1, 4, 5, 10, 100, 299, 300, 301, 450, 1000] {
            let got = top(&store, Window::Hour, k).await;
            assert_eq!(got, all[..k.min(all.len())].to_vec(), "{name}: top {k}");
        }
    }
}

/// The first process records the deployment's partition count; one configured with another count is refused
/// with both counts named (it would rank from, or write to, the wrong partitions), and the right count still
/// starts.
#[tokio::test]
async fn a_process_with_another_partition_count_is_refused() {
    let cfg = redis_config("layout", 4);
    store_for(&cfg).await;
    let other = RedisConfig {
        partitions: 3,
        ..cfg.clone()
    };
    let err = RedisStore::connect(&other)
        .await
        .unwrap()
        .applier()
        .ensure_log_groups()
        .await
        .expect_err("a store with 3 partitions started on a deployment of 4");
    let message = err.to_string();
    assert!(
        message.contains("records partitions=4 keys=1")
            && message.contains("configured with partitions=3"),
        "{message}"
    );
    RedisStore::connect(&cfg)
        .await
        .unwrap()
        .applier()
        .ensure_log_groups()
        .await
        .unwrap();
}

/// `TOPK_REDIS_WAIT_REPLICAS`: an append is confirmed only once that many replicas of the primary that took it
/// have it. On one Redis without a replica it is refused (`NotReplicated`, within the timeout, with the key
/// to send it again with: the entry is in the log, a retry under the key does not store it twice); on the cluster, whose primaries each have a
/// replica, it is confirmed, keyed or not.
#[tokio::test]
async fn waiting_for_replicas_refuses_what_no_replica_confirmed() {
    let v = VideoId::parse("v").unwrap();
    let lone = store_for(&RedisConfig {
        wait_replicas: 1,
        redis_timeout_ms: 600,
        ..redis_config("wait_lone", 2)
    })
    .await;
    let started = std::time::Instant::now();
    let err = lone
        .writer()
        .append(&[(v.clone(), 1)])
        .await
        .expect_err("confirmed without a replica");
    let topk_core::redis::StoreError::Incomplete { cause, .. } = &err else {
        panic!("no key handed back: {err}");
    };
    assert!(
        matches!(
            **cause,
            topk_core::redis::StoreError::NotReplicated {
                acked: 0,
                wanted: 1
            }
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let replicated = store_for(&RedisConfig {
        wait_replicas: 1,
        ..redis_config_at(&cluster_url(), "wait_cluster", 6)
    })
    .await;
    let views: Vec<(VideoId, u64)> = (0..12)
        .map(|i| (VideoId::parse(&format!("w{i}")).unwrap(), 1))
        .collect();
    replicated.writer().append(&views).await.unwrap();
    let key = topk_core::domain::IdempotencyKey::parse("wait-1").unwrap();
    for _ in 0..2 {
        replicated
            .writer()
            .append_idempotent(&views, &key, Duration::from_secs(60))
            .await
            .unwrap();
    }
}
