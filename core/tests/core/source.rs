//! Records of a source (Kafka) appended to the log exactly once by source offset, with their event times:
//! replays from an older committed offset, consumers killed between two partitions' appends, and two
//! consumers owning one source partition at once, compared with a model that counts every record once.

use proptest::prelude::*;
use std::collections::BTreeMap;
use topk_core::aggregate::aggregate;
use topk_core::batch::LogEntry;
use topk_core::domain::VideoId;
use topk_core::keys::Partition;
use topk_core::redis::{DeadLetter, LogRead, RedisStore, SourcePartition, SourceRecord};
use topk_core::slices::slice5_of;
use topk_testkit::fixtures::{read_log, store};

const T0: i64 = 1_700_000_000_000;

fn source() -> SourcePartition {
    SourcePartition {
        topic: "views".into(),
        partition: 3,
    }
}

/// Every entry of every partition's log, read once.
async fn read_all(store: &RedisStore) -> Vec<(Partition, LogEntry)> {
    let mut all = Vec::new();
    for p in store.keys().all_partitions() {
        loop {
            let entries = read_log(store, p, "reader", LogRead::New, 500).await;
            if entries.is_empty() {
                break;
            }
            all.extend(entries.into_iter().map(|e| (p, e)));
        }
    }
    all
}

/// The log's views summed per (5-second slice of their event time, video).
async fn logged_views(store: &RedisStore) -> BTreeMap<(i64, String), u64> {
    let entries: Vec<LogEntry> = read_all(store).await.into_iter().map(|(_, e)| e).collect();
    let batch = aggregate(&entries);
    assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
    let mut out = BTreeMap::new();
    for s in batch.slices {
        for (v, n) in s.increments {
            *out.entry((s.slice5, v)).or_default() += n;
        }
    }
    out
}

/// A record's part for each partition it touches.
fn parts(
    store: &RedisStore,
    offset: i64,
    event_ms: i64,
    views: &[(String, u64)],
) -> Vec<(Partition, SourceRecord)> {
    let views: Vec<(VideoId, u64)> = views
        .iter()
        .map(|(v, n)| (VideoId::parse(v).unwrap(), *n))
        .collect();
    store
        .writer()
        .lines_by_partition(&views)
        .into_iter()
        .map(|(p, lines)| {
            (
                p,
                SourceRecord {
                    offset,
                    event_ms,
                    lines,
                },
            )
        })
        .collect()
}

#[tokio::test]
async fn records_of_one_slice_share_an_entry_and_repeats_are_dropped() {
    let store = store("source_entries", 1).await;
    let src = source();
    let rec = |offset: i64, event_ms: i64, line: &str| SourceRecord {
        offset,
        event_ms,
        lines: format!("{line}\n"),
    };
    // Offsets 10-13: two records in one slice, then one in an older slice (event times need not increase),
    // then one back in the first slice: three entries.
    let records = [
        rec(10, T0 + 1_000, "a 1"),
        rec(11, T0 + 4_000, "b 2"),
        rec(12, T0 - 60_000, "a 3"),
        rec(13, T0 + 2_000, "a 4"),
    ];
    let done = store
        .writer()
        .append_source(0, &src, &records)
        .await
        .unwrap();
    assert_eq!(
        (done.entries, done.records, done.last_offset),
        (3, 4, Some(13))
    );
    // Again, and overlapping: only 14 is new.
    let again = store
        .writer()
        .append_source(
            0,
            &src,
            &[rec(12, T0, "a 3"), rec(13, T0, "a 4"), rec(14, T0, "c 1")],
        )
        .await
        .unwrap();
    assert_eq!(
        (again.entries, again.records, again.last_offset),
        (1, 1, Some(14))
    );
    assert_eq!(
        store.writer().source_offset(0, &src).await.unwrap(),
        Some(14)
    );
    // Another partition of the topic has its own offset.
    let other = SourcePartition {
        topic: "views".into(),
        partition: 4,
    };
    assert_eq!(store.writer().source_offset(0, &other).await.unwrap(), None);

    let entries = read_all(&store).await;
    let got: Vec<(i64, String)> = entries
        .iter()
        .map(|(_, e)| {
            let lines: String = e
                .views
                .as_ref()
                .unwrap()
                .iter()
                .map(|(v, n)| format!("{v} {n};"))
                .collect();
            (e.event_ms, lines)
        })
        .collect();
    assert_eq!(
        got,
        [
            (T0 + 1_000, "a 1;b 2;".to_owned()),
            (T0 - 60_000, "a 3;".to_owned()),
            (T0 + 2_000, "a 4;".to_owned()),
            (T0, "c 1;".to_owned()),
        ]
    );
}

/// What a consumer does next.
#[derive(Debug, Clone)]
enum Action {
    /// Reads the next `chunk` records and appends them partition by partition; killed after `crash_after`
    /// partitions when set (it then restarts from the committed offset before it sends again).
    Send {
        consumer: usize,
        chunk: usize,
        crash_after: Option<usize>,
    },
    /// Commits its position (Kafka takes a commit from a member that is behind, moving the offset back).
    Commit { consumer: usize },
    /// Restarts from the committed offset (after a crash or a rebalance).
    Restart { consumer: usize },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        5 => (0usize..2, 1usize..8, prop::option::weighted(0.2, 0usize..3))
            .prop_map(|(consumer, chunk, crash_after)| Action::Send { consumer, chunk, crash_after }),
        2 => (0usize..2).prop_map(|consumer| Action::Commit { consumer }),
        1 => (0usize..2).prop_map(|consumer| Action::Restart { consumer }),
    ]
}

/// A record: its event time (not in order, as producers' clocks are) and its views.
fn record() -> impl Strategy<Value = (i64, Vec<(String, u64)>)> {
    (
        0i64..300_000,
        proptest::collection::vec(("[a-h]", 1u64..4), 1..4),
    )
}

/// Appends records `from..to` as one consumer would, partition by partition; `None` when killed midway.
async fn send(
    store: &RedisStore,
    records: &[(i64, Vec<(String, u64)>)],
    from: usize,
    to: usize,
    crash_after: Option<usize>,
) -> Option<()> {
    let mut by_partition: BTreeMap<Partition, Vec<SourceRecord>> = BTreeMap::new();
    for (offset, (at, views)) in records.iter().enumerate().take(to).skip(from) {
        for (p, r) in parts(store, offset as i64, T0 + at, views) {
            by_partition.entry(p).or_default().push(r);
        }
    }
    for (k, (p, batch)) in by_partition.iter().enumerate() {
        if crash_after == Some(k) {
            return None;
        }
        store
            .writer()
            .append_source(*p, &source(), batch)
            .await
            .unwrap();
    }
    Some(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Two consumers of one source partition, each reading on from where it started, killed between two
    /// partitions' appends, restarting from a committed offset that lags (or that the other moved back): when
    /// one finally reads to the end, the log holds every record once, in the slice of its event time.
    #[test]
    fn every_offset_is_logged_exactly_once(
        records in proptest::collection::vec(record(), 1..60),
        actions in proptest::collection::vec(action(), 0..40),
        partitions in 1u16..4,
    ) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let store = store("source_once", partitions).await;
            let n = records.len();
            let mut committed = 0usize;
            // Each consumer's position, or None when it must restart (killed).
            let mut next: [Option<usize>; 2] = [Some(0), Some(0)];
            for a in &actions {
                match *a {
                    Action::Send { consumer, chunk, crash_after } => {
                        let from = *next[consumer].get_or_insert(committed);
                        let to = (from + chunk).min(n);
                        next[consumer] = send(&store, &records, from, to, crash_after).await.map(|()| to);
                    }
                    Action::Commit { consumer } => {
                        if let Some(at) = next[consumer] {
                            committed = at;
                        }
                    }
                    Action::Restart { consumer } => next[consumer] = Some(committed),
                }
            }
            // One consumer reads to the end from the committed offset.
            send(&store, &records, committed, n, None).await.unwrap();

            let mut want: BTreeMap<(i64, String), u64> = BTreeMap::new();
            for (at, views) in &records {
                for (v, c) in views {
                    *want.entry((slice5_of(T0 + at), v.clone())).or_default() += c;
                }
            }
            assert_eq!(logged_views(&store).await, want);
            for p in store.keys().all_partitions() {
                let last = store.writer().source_offset(p, &source()).await.unwrap();
                assert!(last.is_none_or(|o| o < n as i64), "partition {p} took offset {last:?}");
            }
        });
    }
}

/// With `wait_replicas`, an append (and a dead letter) returns only once replicas have the log (the stream),
/// even when it dropped every record: the write that took them may not be replicated yet. So the caller
/// commits nothing a failover could lose; a lone node refuses.
#[tokio::test]
async fn an_append_waits_for_replicas_before_the_offsets_may_be_committed() {
    let record = |offset: i64| SourceRecord {
        offset,
        event_ms: T0,
        lines: "a 1\n".into(),
    };
    let lone = topk_testkit::fixtures::store_for(&topk_core::config::RedisConfig {
        wait_replicas: 1,
        redis_timeout_ms: 600,
        ..topk_testkit::fixtures::redis_config("source_wait_lone", 1)
    })
    .await;
    refused_for_want_of_a_replica(
        lone.writer()
            .append_source(0, &source(), &[record(0)])
            .await,
        "a record",
    );

    let replicated = topk_testkit::fixtures::store_for(&topk_core::config::RedisConfig {
        wait_replicas: 1,
        ..topk_testkit::fixtures::redis_config_at(&topk_testkit::cluster_url(), "source_wait", 4)
    })
    .await;
    for p in replicated.keys().all_partitions() {
        let first = replicated
            .writer()
            .append_source(p, &source(), &[record(0), record(1)])
            .await
            .unwrap();
        assert_eq!(first.records, 2);
        let again = replicated
            .writer()
            .append_source(p, &source(), &[record(1)])
            .await
            .unwrap();
        assert_eq!((again.records, again.last_offset), (0, Some(1)));
    }
    // Dead letters too: kept, or found kept, once a replica has them.
    let letter = DeadLetter {
        offset: 0,
        reason: "not JSON",
        value: b"nope",
    };
    for want in [1, 0] {
        let kept = replicated
            .writer()
            .keep_dead_letters(&source(), &[letter])
            .await;
        assert_eq!(kept.unwrap(), want);
    }
    refused_for_want_of_a_replica(
        lone.writer().keep_dead_letters(&source(), &[letter]).await,
        "a dead letter",
    );
}

/// Asserts that the write of `what` was refused for want of the one replica it waited for.
fn refused_for_want_of_a_replica<T: std::fmt::Debug>(
    written: Result<T, topk_core::redis::StoreError>,
    what: &str,
) {
    let err = written.expect_err(&format!("{what} confirmed without a replica"));
    assert!(
        matches!(
            err,
            topk_core::redis::StoreError::NotReplicated { wanted: 1, .. }
        ),
        "{err}"
    );
}

/// Keeps one malformed record of `source` at `offset`; whether it was kept now.
async fn keep_one(
    store: &RedisStore,
    source: &SourcePartition,
    offset: i64,
    reason: &str,
    value: &[u8],
) -> bool {
    let letter = DeadLetter {
        offset,
        reason,
        value,
    };
    store
        .writer()
        .keep_dead_letters(source, &[letter])
        .await
        .unwrap()
        == 1
}

/// A malformed record is kept as a dead letter once per offset, on one node and on a cluster (the stream and
/// its offsets share a slot): a replay from an older offset keeps nothing again, other source partitions are
/// independent, a value longer than the limit is cut, and a batch keeps only its records past the kept
/// offset, in one call.
#[tokio::test]
async fn a_dead_letter_is_kept_once_per_offset() {
    let other = SourcePartition {
        topic: "views".into(),
        partition: 4,
    };
    let long = vec![b'x'; topk_core::redis::DEAD_LETTER_VALUE_BYTES + 10];
    for store in [
        store("dead_once", 2).await,
        topk_testkit::fixtures::store_for(&topk_testkit::fixtures::redis_config_at(
            &topk_testkit::cluster_url(),
            "dead_once",
            2,
        ))
        .await,
    ] {
        let mut kept = Vec::new();
        for (source, offset) in [
            (source(), 5),
            (source(), 6),
            (source(), 5),
            (other.clone(), 2),
        ] {
            kept.push(keep_one(&store, &source, offset, "not JSON", b"nope").await);
        }
        // The replay of offsets 5 and 6 after a crash.
        kept.push(keep_one(&store, &source(), 5, "not JSON", b"nope").await);
        kept.push(keep_one(&store, &source(), 6, "not JSON", b"nope").await);
        kept.push(keep_one(&store, &source(), 7, "too long", &long).await);
        assert_eq!(kept, [true, true, false, true, false, false, true]);
        let dead = store.writer().dead_letters(100).await.unwrap();
        let seen: Vec<(String, i64)> = dead.iter().map(|(s, o, _, _)| (s.clone(), *o)).collect();
        assert_eq!(
            seen,
            [
                ("views/3".to_owned(), 5),
                ("views/3".to_owned(), 6),
                ("views/4".to_owned(), 2),
                ("views/3".to_owned(), 7),
            ]
        );
        assert_eq!(dead[3].3.len(), topk_core::redis::DEAD_LETTER_VALUE_BYTES);

        // A batch replayed from offset 6 with two new records: the new two are kept.
        let letters: Vec<DeadLetter<'_>> = (6..10)
            .map(|offset| DeadLetter {
                offset,
                reason: "not JSON",
                value: b"nope",
            })
            .collect();
        assert_eq!(
            store
                .writer()
                .keep_dead_letters(&source(), &letters)
                .await
                .unwrap(),
            2
        );
        let offsets: Vec<i64> = store.writer().dead_letters(100).await.unwrap()[4..]
            .iter()
            .map(|(_, o, _, _)| *o)
            .collect();
        assert_eq!(offsets, [8, 9]);
    }
}

/// A producer's timestamp past any real time (microseconds taken for milliseconds, `i64::MAX`) is a time in
/// the future: clamped to its entry's own time, as any future time is, and counted. Such records used to be
/// taken and committed, then refused by the workers: counted nowhere.
#[tokio::test]
async fn records_dated_past_any_real_time_count_at_their_entry_time() {
    let store = store("source_far_future", 2).await;
    let src = source();
    let microseconds = 1_700_000_000_000_000;
    let mut all = Vec::new();
    for (offset, event_ms, video) in [(1, microseconds, "micro"), (2, i64::MAX, "max")] {
        all.extend(parts(&store, offset, event_ms, &[(video.to_owned(), 2)]));
    }
    for (p, record) in all {
        store
            .writer()
            .append_source(p, &src, &[record])
            .await
            .unwrap();
    }
    assert_eq!(topk_testkit::fixtures::apply_log(&store, "w", 10).await, 4);
    let all_time =
        topk_testkit::fixtures::window_counts(&store, topk_core::domain::Window::All).await;
    let expected = [("micro".to_owned(), 2), ("max".to_owned(), 2)];
    assert_eq!(all_time, expected.into_iter().collect());
}
