//! The kafka role's loop (`topk_ingest::kafka`) in this process, and the binary in the kafka role.

use super::{consume_until, kafka_options, log_entries, produce, wait_for, T0, TOPIC};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::domain::Window;
use topk_core::redis::RedisStore;
use topk_ingest::backpressure::Backlog;
use topk_ingest::kafka::{self, KafkaOptions};
use topk_ingest::Application;
use topk_testkit::fixtures::{apply_log, store, window_counts};
use topk_testkit::{holds_for, KafkaBroker};

#[tokio::test]
async fn the_kafka_role_forwards_each_record_once_at_its_time_and_dead_letters_the_malformed() {
    let broker = KafkaBroker::start();
    broker.create_topic(TOPIC, 2);
    let store = store("kafka_role", 3).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let two_hours_ago = now - 2 * 3_600_000;
    let view = |v: &str, n: u64| format!(r#"{{"videoId": "{v}", "count": {n}}}"#);
    let records: Vec<(i64, Option<String>)> = vec![
        (now, Some(view("a", 2))),
        (two_hours_ago, Some(view("b", 5))),
        (now, Some(format!("[{}, {}]", view("a", 1), view("c", 3)))),
        (now, Some(r#"{"videoId": "bad id"}"#.into())),
        (now, Some(r#"[{"videoId": "a"}, {"videoId": ".."}]"#.into())),
        (now, Some("[]".into())),
        (now, Some("not json".into())),
        (now, None),
        (two_hours_ago, Some(format!("[{}]", view("b", 1)))),
        (now, Some(r#"{"videoId": "a", "count": 0}"#.into())),
        (now, Some(r#"  {"videoId": "d"}"#.into())),
    ];
    produce(&broker, TOPIC, 2, &records).await;

    // The role reads everything (it stops only once the batch in hand is forwarded and committed): 6
    // records forwarded, 6 dead-lettered (the empty array and the id `..` included), and the two ends.
    consume_until(&store, kafka_options(&broker, "topk"), || async {
        store.writer().dead_letters(100).await.unwrap().len() >= 8
    })
    .await;
    let dead = store.writer().dead_letters(100).await.unwrap();
    let reasons: Vec<&str> = dead.iter().map(|(_, _, why, _)| why.as_str()).collect();
    assert_eq!(dead.len(), 8, "{dead:?}");
    assert!(dead
        .iter()
        .all(|(source, _, _, _)| source.starts_with("views/")));
    assert!(reasons.iter().any(|r| r.contains("empty")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("no value")),
        "{reasons:?}"
    );
    assert!(dead.iter().any(|(_, _, _, v)| v == "not json"));
    assert!(
        reasons.iter().any(|r| r.contains("element 1: videoId")),
        "{reasons:?}"
    );

    // Applied: each view once, the back-dated ones outside the hour window but in the day's.
    apply_log(&store, "w", 100).await;
    store.applier().retire_all(now).await.unwrap();
    let all = window_counts(&store, Window::All).await;
    let want = views(&[("a", 3), ("b", 6), ("c", 3), ("d", 1)]);
    assert_eq!(all, want);
    assert_eq!(window_counts(&store, Window::Day).await, want);
    let hour = window_counts(&store, Window::Hour).await;
    assert_eq!(hour.get("b"), None, "{hour:?}");
    assert_eq!(hour["a"], 3);

    // Another group reads the whole topic again (as a consumer that lost its commits would): the logs drop
    // every record and the dead letters are not kept again; only two new malformed records (one more end per
    // partition, produced now) are, which tells that the group has read everything.
    let ends: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("create the producer");
    for p in 0..2 {
        ends.send(
            FutureRecord::<(), str>::to(TOPIC)
                .partition(p)
                .payload("end again"),
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("second end of partition {p}: {e}"));
    }
    consume_until(&store, kafka_options(&broker, "again"), || async {
        store.writer().dead_letters(100).await.unwrap().len() >= 10
    })
    .await;
    assert_eq!(log_entries(&store).await, 0, "nothing new in the log");
    let again = store.writer().dead_letters(100).await.unwrap();
    assert_eq!(again.len(), 10, "{again:?}");
    assert_eq!(again[..8], dead[..], "the first dead letters, once");
    assert!(again[8..].iter().all(|(_, _, _, v)| v == "end again"));
    apply_log(&store, "w", 100).await;
    assert_eq!(window_counts(&store, Window::All).await, want);
}

/// A batch read again (a consumer killed before its commit, a rebalance) is counted as `replayed`, not
/// `forwarded`, in `topk_kafka_records_total`: records whose views every log had taken already, dead letters
/// kept already, and a record twice in one batch. A step tried again (after a Redis error) with its outcomes
/// counts what its earlier attempt did as done. Records out of offset order in a batch are all forwarded,
/// and a record a crash left half forwarded (its views in one partition's log, not yet in the other's) is
/// forwarded again, its rest only.
#[tokio::test]
async fn a_batch_read_again_counts_as_replayed_not_forwarded() {
    use kafka::Outcomes;
    let store = store("kafka_replayed", 4).await;
    let record = |offset: i64, value: &str| kafka::Record {
        partition: kafka::KafkaPartition(0),
        offset: kafka::KafkaOffset(offset),
        timestamp_ms: Some(T0),
        value: Some(value.as_bytes().to_vec()),
    };
    let spread = r#"[{"videoId": "a"}, {"videoId": "b"}, {"videoId": "c"}, {"videoId": "d"}, {"videoId": "e"}]"#;
    let batch = vec![
        record(0, r#"{"videoId": "a"}"#),
        record(1, spread),
        record(2, "not json"),
        record(3, r#"{"videoId": "b", "count": 2}"#),
    ];
    let outcome = |f: &kafka::Forwarded| (f.records, f.replayed, f.malformed);
    let mut step = Outcomes::new();
    let first = forward_at_t0(&store, &batch, &mut step).await;
    assert_eq!(outcome(&first), (3, 0, 1));
    assert_eq!(
        first.commit,
        [(kafka::KafkaPartition(0), kafka::KafkaOffset(4))].into()
    );
    let retried = forward_at_t0(&store, &batch, &mut step).await;
    assert_eq!(outcome(&retried), (3, 0, 1), "the same step, tried again");
    let again = forward_at_t0(&store, &batch, &mut Outcomes::new()).await;
    assert_eq!(outcome(&again), (0, 4, 0), "a new step: a replay");

    // Out of offset order, with old records and one of them twice.
    let overlapping = [
        record(5, r#"{"videoId": "c"}"#),
        batch[3].clone(),
        record(4, spread),
        batch[2].clone(),
        batch[3].clone(),
    ];
    let next = forward_at_t0(&store, &overlapping, &mut Outcomes::new()).await;
    assert_eq!(outcome(&next), (2, 3, 0));
    assert_eq!(
        next.commit,
        [(kafka::KafkaPartition(0), kafka::KafkaOffset(6))].into()
    );

    // Half forwarded: record 6's part for the partition of "a" is in, the others not (as if the role died
    // between the appends); read again, it is forwarded (its rest), not replayed.
    let half = record(6, spread);
    let a_part = store
        .writer()
        .lines_by_partition(&kafka::parse_record(half.value.as_deref(), 100).unwrap())
        .into_iter()
        .find(|(_, lines)| lines.contains("a "))
        .unwrap();
    let source = topk_core::redis::SourcePartition {
        topic: TOPIC.into(),
        partition: 0,
    };
    let part = topk_core::redis::SourceRecord {
        offset: 6,
        event_ms: T0,
        lines: a_part.1.clone(),
    };
    store
        .writer()
        .append_source(a_part.0, &source, &[part])
        .await
        .unwrap();
    let rest = forward_at_t0(&store, &[half], &mut Outcomes::new()).await;
    assert_eq!(outcome(&rest), (1, 0, 0));

    apply_log(&store, "w", 100).await;
    let all = window_counts(&store, Window::All).await;
    let want = views(&[("a", 4), ("b", 5), ("c", 4), ("d", 3), ("e", 3)]);
    assert_eq!(all, want, "each record's views once");
}

/// Each video's views, as a window's counts are read.
fn views(counts: &[(&str, u64)]) -> HashMap<String, u64> {
    counts.iter().map(|(v, n)| (v.to_string(), *n)).collect()
}

/// Forwards `records` of [`TOPIC`] to `store` at T0 (at most 100 views a record), as a step of its own or
/// as `step` tried again.
async fn forward_at_t0(
    store: &RedisStore,
    records: &[kafka::Record],
    step: &mut kafka::Outcomes,
) -> kafka::Forwarded {
    kafka::forward(&store.writer(), TOPIC, records, T0, 100, step)
        .await
        .unwrap()
}

/// `topk-ingest` in the kafka role, as the binary runs it: no brokers is refused at build; with a broker it
/// forwards the topic, counts records in `topk_kafka_records_total` on the admin address, and stops cleanly.
#[tokio::test]
async fn the_kafka_role_runs_from_its_settings_and_counts_records() {
    let broker = KafkaBroker::start();
    broker.create_topic(TOPIC, 2);
    let prefix = topk_testkit::unique_name("kafka_app");
    let admin = topk_testkit::free_port();
    let args = |extra: &[String]| {
        let mut args = vec!["--role=kafka"];
        args.extend(extra.iter().map(String::as_str));
        crate::ingest_config(&prefix, &args)
    };
    let refused = Application::build(args(&[]))
        .await
        .err()
        .expect("no brokers");
    assert!(
        refused.to_string().contains("TOPK_KAFKA_BROKERS"),
        "{refused:#}"
    );
    // A properties file librdkafka refuses (an unknown property, a bad value), or one that sets what topk
    // owns, is refused at start, naming the setting.
    let brokers = format!("--kafka-brokers={}", broker.bootstrap());
    for (text, why) in [
        ("no.such.property=1\n", "no.such.property"),
        ("fetch.max.bytes=lots\n", "fetch.max.bytes"),
        ("group.id=other\n", "TOPK_KAFKA_GROUP"),
    ] {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        let refused = Application::build(args(&[
            brokers.clone(),
            format!("--kafka-config-file={}", file.path().display()),
        ]))
        .await
        .err()
        .expect(text);
        let refused = format!("{refused:#}");
        assert!(
            refused.contains("TOPK_KAFKA_CONFIG_FILE") && refused.contains(why),
            "{text}: {refused}"
        );
    }

    let app = Application::build(args(&[
        format!("--kafka-brokers={}", broker.bootstrap()),
        format!("--admin-addr=127.0.0.1:{admin}"),
    ]))
    .await
    .unwrap();
    assert!(app.local_addr().is_none(), "the kafka role serves no views");
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run(stop.clone()));
    let view = |v: &str| format!(r#"{{"videoId": "{v}"}}"#);
    produce(
        &broker,
        TOPIC,
        2,
        &[(T0, Some(view("x"))), (T0, Some(view("y")))],
    )
    .await;

    let store = RedisStore::connect(&redis_config_with_prefix(&prefix))
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(60),
        || async { store.writer().dead_letters(10).await.unwrap().len() >= 2 },
        || "the kafka role did not read its topic".into(),
    )
    .await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |outcome: &str| {
        let series = format!("topk_kafka_records_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|n| n.trim().parse::<f64>().ok())
    };
    // Other tests of this process may count records too: at least these.
    assert!(count("forwarded") >= Some(2.0), "{metrics}");
    assert!(count("malformed") >= Some(2.0), "{metrics}");
    assert!(
        metrics.contains("\ntopk_kafka_partitions_gone_back 0\n"),
        "{metrics}"
    );
    stop.cancel();
    running.await.unwrap().unwrap();
}

fn redis_config_with_prefix(prefix: &str) -> topk_core::config::RedisConfig {
    topk_core::config::RedisConfig {
        key_prefix: prefix.to_owned(),
        ..topk_testkit::fixtures::redis_config("unused", 2)
    }
}

/// While the log is over its backlog limit the role reads nothing (Kafka keeps the records) and stays in its
/// group however long that lasts: its partitions are paused while it keeps polling (a backlog longer than
/// `max.poll.interval.ms`, 6 s here through a properties file, would otherwise make librdkafka leave the
/// group, and report it). Once under, it forwards what waited.
#[tokio::test]
async fn a_backlogged_log_pauses_consumption_instead_of_failing() {
    let broker = KafkaBroker::start();
    broker.create_topic(TOPIC, 1);
    let store = store("kafka_backlog", 2).await;
    let record = |v: &str| vec![(T0, Some(format!(r#"{{"videoId": "{v}"}}"#)))];
    // The backlog (limit 1) as the log watch measures it, afresh every 100 ms: over while `over` is set.
    let backlog = Arc::new(Backlog::new(1));
    let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let measuring = CancellationToken::new();
    let measure = {
        let (backlog, over, measuring) = (backlog.clone(), over.clone(), measuring.clone());
        tokio::spawn(async move {
            while !measuring.is_cancelled() {
                let entries = if over.load(std::sync::atomic::Ordering::Relaxed) {
                    10
                } else {
                    0
                };
                backlog.record(entries);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let properties = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        properties.path(),
        "# the least librdkafka takes: the session timeout\nmax.poll.interval.ms=6000\n",
    )
    .unwrap();
    let options = KafkaOptions {
        properties: kafka::read_properties(properties.path()).unwrap(),
        ..kafka_options(&broker, "patient")
    };
    let (logs, _capture) = topk_testkit::LogCapture::install();
    let stop = CancellationToken::new();
    let task = tokio::spawn(kafka::run(store.writer(), options, backlog, stop.clone()));
    let until_logged = |n: u64| {
        let store = store.clone();
        wait_for(
            Duration::from_secs(30),
            move || {
                let store = store.clone();
                async move { log_entries(&store).await >= n }
            },
            move || format!("{n} entries not logged"),
        )
    };

    // Reading, then backlogged for longer than the poll interval while a record waits.
    produce(&broker, TOPIC, 0, &record("a")).await;
    until_logged(1).await;
    over.store(true, std::sync::atomic::Ordering::Relaxed);
    wait_for(
        Duration::from_secs(30),
        || async { logs.text().contains("Kafka consumption paused") },
        || "the role did not pause".into(),
    )
    .await;
    produce(&broker, TOPIC, 0, &record("b")).await;
    // What this guards against is librdkafka's own timer: a consumer not polled for max.poll.interval.ms
    // (6 s) leaves its group, which librdkafka checks about once a second and reports as a consumer error.
    // The pause began before this poll starts, so 6 s and two checks' margin see it happen if it does.
    holds_for(
        "backlogged: the role stays in its group and reads nothing",
        Duration::from_secs(8),
        || async {
            let logged = logs.text();
            let entries = log_entries(&store).await;
            match (
                task.is_finished(),
                entries,
                logged.contains("Kafka consumer error"),
            ) {
                (false, 1, false) => Ok(()),
                (stopped, entries, error) => Err(format!(
                    "stopped {stopped}, {entries} entries logged, consumer error {error}\n{logged}"
                )),
            }
        },
    )
    .await;

    over.store(false, std::sync::atomic::Ordering::Relaxed);
    until_logged(2).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    measuring.cancel();
    measure.await.unwrap();
    let logged = logs.text();
    assert!(
        logged.contains("Kafka consumption paused") && logged.contains("Kafka consumption resumed"),
        "{logged}"
    );
    // Not "Application maximum poll interval exceeded", nor any other.
    assert!(!logged.contains("Kafka consumer error"), "{logged}");
}

/// Paused and resumed over and over under load: the backlog goes over its limit and back under every 150 ms
/// while 600 records (and 48 malformed ones) arrive on 4 partitions for a few seconds, so the partitions are paused and resumed many times with
/// records in flight (librdkafka drops what it had fetched for a paused partition and fetches it again on
/// resume): each record counted once. (The role's holding of a record delivered after a pause, which
/// librdkafka's purge makes rare, is not provoked here: with it removed this test still passes.)
#[tokio::test]
async fn pausing_and_resuming_under_load_loses_and_doubles_nothing() {
    const RECORDS: u64 = 600;
    let broker = KafkaBroker::start();
    broker.create_topic(TOPIC, 4);
    let store = store("kafka_pause_churn", 3).await;
    let backlog = Arc::new(Backlog::new(1));
    let (logs, _capture) = topk_testkit::LogCapture::install();
    let stop = CancellationToken::new();
    let role = tokio::spawn(kafka::run(
        store.writer(),
        kafka_options(&broker, "churn"),
        backlog.clone(),
        stop.clone(),
    ));
    // The churn starts once the group has given the role its partitions, so that every pause pauses them.
    wait_for(
        Duration::from_secs(30),
        || async { logs.text().contains("Kafka partitions assigned") },
        || "no partitions assigned".into(),
    )
    .await;
    let churning = CancellationToken::new();
    let churn = {
        let churning = churning.clone();
        tokio::spawn(async move {
            let mut over = false;
            while !churning.is_cancelled() {
                over = !over;
                for _ in 0..3 {
                    backlog.record(if over { 10 } else { 0 });
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            backlog.record(0);
        })
    };
    let records: Vec<(i64, Option<String>)> = (0..RECORDS)
        .map(|i| {
            let value = format!(r#"{{"videoId": "v{}", "count": {}}}"#, i % 13, 1 + i % 4);
            (T0 + i as i64, Some(value))
        })
        .collect();
    let mut want: HashMap<String, u64> = HashMap::new();
    for i in 0..RECORDS {
        *want.entry(format!("v{}", i % 13)).or_default() += 1 + i % 4;
    }
    // In 12 chunks 200 ms apart (a producer's pace, not a wait on anything), so that records keep arriving
    // through many pauses; each chunk ends with a malformed record on every partition: once all 48 are dead
    // letters, all was read.
    const CHUNKS: usize = 12;
    for chunk in records.chunks(records.len() / CHUNKS) {
        produce(&broker, TOPIC, 4, chunk).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for(
        Duration::from_secs(90),
        || async { store.writer().dead_letters(100).await.unwrap().len() >= 4 * CHUNKS },
        || format!("not all read\n{}", logs.text()),
    )
    .await;
    churning.cancel();
    churn.await.unwrap();
    stop.cancel();
    role.await.unwrap().unwrap();
    apply_log(&store, "w", 100).await;
    assert_eq!(window_counts(&store, Window::All).await, want);
    // About ten locally; fewer on a loaded machine, where the role loops less often.
    let paused = logs.text().matches("Kafka consumption paused").count();
    assert!(paused >= 2, "paused {paused} times only");
}
