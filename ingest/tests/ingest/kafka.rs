//! The Kafka client (rdkafka over the librdkafka it builds) against a real broker (tansu): records keep their
//! timestamps, and a consumer group resumes after the offsets it committed. The kafka role: each record
//! forwarded once at its own time, malformed ones dead-lettered, a full replay adding nothing.

use clap::Parser;
use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_core::domain::Window;
use topk_core::redis::RedisStore;
use topk_ingest::backpressure::Backlog;
use topk_ingest::config::IngestConfig;
use topk_ingest::kafka::{self, KafkaOptions};
use topk_ingest::Application;
use topk_testkit::fixtures::{apply_log, store, window_counts};
use topk_testkit::KafkaBroker;

const T0: i64 = 1_700_000_000_000;
const RECORDS: i64 = 1_000;
const TOPIC: &str = "views";

/// What every producer of these tests sets: one record per batch. tansu 0.6's memory storage serves a fetch
/// only from batches that start at or after the fetch offset, so a consumer resuming from an offset inside a
/// batch would never get the rest of that batch (Apache Kafka sends the whole batch and the client skips).
const ONE_RECORD_PER_BATCH: (&str, &str) = ("batch.num.messages", "1");

/// A record as a consumer saw it: (partition, offset) -> (timestamp, payload).
type Seen = BTreeMap<(i32, i64), (i64, String)>;

fn consumer(broker: &KafkaBroker, group: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("create the consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    consumer
}

/// Receives `n` records (each within 30 s).
async fn receive(consumer: &StreamConsumer, n: usize, seen: &mut Seen) {
    for i in 0..n {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "record {i} of {n} not there within 30 s (assignment {:?}, committed {:?})",
                    consumer.assignment(),
                    consumer.committed(Duration::from_secs(5))
                )
            })
            .expect("receive a record");
        let Timestamp::CreateTime(ts) = m.timestamp() else {
            panic!("record without its create time: {:?}", m.timestamp());
        };
        let payload = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
        let before = seen.insert((m.partition(), m.offset()), (ts, payload));
        assert!(
            before.is_none(),
            "record {}/{} twice",
            m.partition(),
            m.offset()
        );
    }
}

#[tokio::test]
async fn records_keep_their_timestamps_and_a_group_resumes_after_its_commit() {
    let (major_minor, version) = rdkafka::util::get_rdkafka_version();
    // 0xMMmmrrpp: 2.12 and later speak to tansu (Debian's 2.0 does not).
    assert!(major_minor >= 0x020c_0000, "librdkafka {version}");
    let broker = KafkaBroker::start();
    broker.create_topic(TOPIC, 3);

    let started = Instant::now();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("message.timeout.ms", "20000")
        .set(ONE_RECORD_PER_BATCH.0, ONE_RECORD_PER_BATCH.1)
        .create()
        .expect("create the producer");
    let payloads: Vec<String> = (0..RECORDS)
        .map(|i| format!(r#"{{"videoId": "v{}", "count": {}}}"#, i % 7, 1 + i % 3))
        .collect();
    let sends = payloads.iter().enumerate().map(|(i, payload)| {
        let key = format!("v{}", i % 7);
        let producer = &producer;
        async move {
            let record = FutureRecord::to(TOPIC)
                .key(&key)
                .payload(payload)
                .timestamp(T0 + i as i64);
            producer.send(record, Duration::from_secs(20)).await
        }
    });
    let mut produced: Seen = BTreeMap::new();
    for (i, sent) in join_all(sends).await.into_iter().enumerate() {
        let delivery = sent.unwrap_or_else(|(e, _)| panic!("record {i}: {e}\n{}", broker.log()));
        produced.insert(
            (delivery.partition, delivery.offset),
            (T0 + i as i64, payloads[i].clone()),
        );
    }
    assert_eq!(
        produced.len(),
        RECORDS as usize,
        "distinct (partition, offset)s"
    );
    let produce_time = started.elapsed();

    // A first consumer takes 600 records and commits where it stands, then leaves the group.
    let mut seen = Seen::new();
    let first = consumer(&broker, "topk");
    receive(&first, 600, &mut seen).await;
    first
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit the offsets");
    drop(first);

    // A second member of the group starts after the committed offsets: it sees exactly the other 400.
    let second = consumer(&broker, "topk");
    receive(&second, 400, &mut seen).await;
    assert_eq!(seen, produced);
    // And nothing more.
    let more = tokio::time::timeout(Duration::from_secs(2), second.recv()).await;
    assert!(more.is_err(), "a record beyond the 1,000: {more:?}");
    eprintln!(
        "librdkafka {version}: produced {RECORDS} records in {produce_time:?}, all in {:?}",
        started.elapsed()
    );

    // A restarted broker (memory storage) starts empty, on the same address.
    drop(second);
    let mut broker = broker;
    broker.restart();
    broker.create_topic(TOPIC, 1);
    let again = consumer(&broker, "topk");
    let nothing = tokio::time::timeout(Duration::from_secs(2), again.recv()).await;
    assert!(nothing.is_err(), "a record after the restart: {nothing:?}");
}

/// Produces `(timestamp, value)` records (None: a record without a value) to `topic`, keyed by their index
/// so that they spread over its partitions, then a malformed record `end` at the end of each of its
/// `partitions`: once a consumer has dead-lettered both, it has read everything.
async fn produce(
    broker: &KafkaBroker,
    topic: &str,
    partitions: i32,
    records: &[(i64, Option<String>)],
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("message.timeout.ms", "20000")
        .set(ONE_RECORD_PER_BATCH.0, ONE_RECORD_PER_BATCH.1)
        .create()
        .expect("create the producer");
    for (i, (ts, value)) in records.iter().enumerate() {
        let key = i.to_string();
        let mut record = FutureRecord::<String, String>::to(topic)
            .key(&key)
            .timestamp(*ts);
        if let Some(v) = value {
            record = record.payload(v);
        }
        producer
            .send(record, Duration::from_secs(20))
            .await
            .unwrap_or_else(|(e, _)| panic!("record {i}: {e}"));
    }
    for p in 0..partitions {
        let end = FutureRecord::<(), str>::to(topic)
            .partition(p)
            .payload("end");
        producer
            .send(end, Duration::from_secs(20))
            .await
            .unwrap_or_else(|(e, _)| panic!("end of partition {p}: {e}"));
    }
}

fn kafka_options(broker: &KafkaBroker, group: &str) -> KafkaOptions {
    KafkaOptions {
        brokers: broker.bootstrap(),
        topic: TOPIC.into(),
        group: group.into(),
        session_timeout: Duration::from_secs(6),
        max_records: 7,
        batch_wait: Duration::from_millis(20),
        max_batch_len: 10_000,
    }
}

/// Runs the kafka role's loop in `group` until `done` holds of the store (or 60 s), then stops it.
async fn consume_until<F, Fut>(store: &RedisStore, options: KafkaOptions, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let stop = CancellationToken::new();
    let backlog = Arc::new(Backlog::new(0));
    let task = tokio::spawn(kafka::run(store.clone(), options, backlog, stop.clone()));
    let end = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            Instant::now() < end,
            "the kafka role did not get there in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// The log's entries not yet applied, all partitions.
async fn log_entries(store: &RedisStore) -> u64 {
    let mut n = 0;
    for p in store.keys().all_partitions() {
        n += store.log_position(p).await.unwrap().backlog;
    }
    n
}

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
        (now, Some("[]".into())),
        (now, Some("not json".into())),
        (now, None),
        (two_hours_ago, Some(format!("[{}]", view("b", 1)))),
        (now, Some(r#"{"videoId": "a", "count": 0}"#.into())),
        (now, Some(r#"  {"videoId": "d"}"#.into())),
    ];
    produce(&broker, TOPIC, 2, &records).await;

    // The role reads everything (it stops only once the batch in hand is forwarded and committed): 6
    // records forwarded, 5 dead-lettered (the empty array included), and the two ends.
    consume_until(&store, kafka_options(&broker, "topk"), || async {
        store.dead_letters(100).await.unwrap().len() >= 7
    })
    .await;
    let dead = store.dead_letters(100).await.unwrap();
    let reasons: Vec<&str> = dead.iter().map(|(_, _, why, _)| why.as_str()).collect();
    assert_eq!(dead.len(), 7, "{dead:?}");
    assert!(dead
        .iter()
        .all(|(source, _, _, _)| source.starts_with("views/")));
    assert!(reasons.iter().any(|r| r.contains("empty")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("no value")),
        "{reasons:?}"
    );
    assert!(dead.iter().any(|(_, _, _, v)| v == "not json"));

    // Applied: each view once, the back-dated ones outside the hour window but in the day's.
    apply_log(&store, "w", 100).await;
    store.retire_all(now).await.unwrap();
    let all = window_counts(&store, Window::All).await;
    let want = HashMap::from([
        ("a".to_owned(), 3),
        ("b".to_owned(), 6),
        ("c".to_owned(), 3),
        ("d".to_owned(), 1),
    ]);
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
        store.dead_letters(100).await.unwrap().len() >= 9
    })
    .await;
    assert_eq!(log_entries(&store).await, 0, "nothing new in the log");
    let again = store.dead_letters(100).await.unwrap();
    assert_eq!(again.len(), 9, "{again:?}");
    assert_eq!(again[..7], dead[..], "the first dead letters, once");
    assert!(again[7..].iter().all(|(_, _, _, v)| v == "end again"));
    apply_log(&store, "w", 100).await;
    assert_eq!(window_counts(&store, Window::All).await, want);
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
        let mut args = vec![
            "topk-ingest".to_owned(),
            format!("--redis-url={}", topk_testkit::servers().redis_url),
            format!("--key-prefix={prefix}"),
            "--partitions=2".into(),
            "--role=kafka".into(),
        ];
        args.extend(extra.iter().cloned());
        IngestConfig::try_parse_from(args).unwrap()
    };
    let refused = Application::build(args(&[]))
        .await
        .err()
        .expect("no brokers");
    assert!(
        refused.to_string().contains("TOPK_KAFKA_BROKERS"),
        "{refused:#}"
    );

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
    let end = Instant::now() + Duration::from_secs(60);
    while store.dead_letters(10).await.unwrap().len() < 2 {
        assert!(
            Instant::now() < end,
            "the kafka role did not read its topic in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    stop.cancel();
    running.await.unwrap().unwrap();
}

fn redis_config_with_prefix(prefix: &str) -> topk_core::config::RedisConfig {
    topk_core::config::RedisConfig {
        key_prefix: prefix.to_owned(),
        ..topk_testkit::fixtures::redis_config("unused", 2)
    }
}

/// While the log is over its backlog limit the role reads nothing (Kafka keeps the records); once under, it
/// forwards them.
#[tokio::test]
async fn a_backlogged_log_pauses_consumption_instead_of_failing() {
    let broker = KafkaBroker::start();
    broker.create_topic(TOPIC, 1);
    let store = store("kafka_backlog", 2).await;
    produce(
        &broker,
        TOPIC,
        1,
        &[(T0, Some(r#"{"videoId": "a"}"#.into()))],
    )
    .await;
    // A backlog of 10 entries over a limit of 1, measured afresh as the log watch would.
    let backlog = Arc::new(Backlog::new(1));
    let over = CancellationToken::new();
    let measuring = {
        let (backlog, over) = (backlog.clone(), over.clone());
        tokio::spawn(async move {
            while !over.is_cancelled() {
                backlog.record(10);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            backlog.record(0);
        })
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(kafka::run(
        store.clone(),
        kafka_options(&broker, "topk"),
        backlog,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!task.is_finished(), "the role stopped while backlogged");
    assert_eq!(log_entries(&store).await, 0, "read while backlogged");
    assert!(store.dead_letters(10).await.unwrap().is_empty());

    over.cancel();
    measuring.await.unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while store.dead_letters(10).await.unwrap().is_empty() {
        assert!(
            Instant::now() < end,
            "nothing read once the backlog cleared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(log_entries(&store).await, 1);
}

/// Produces `produced` records of views of `videos` videos at the current time (every fifth an array), paced
/// over about `produced / 120` seconds, from a producer of its own; returns the views per video.
fn spawn_producer(
    bootstrap: String,
    produced: u64,
    videos: u64,
) -> tokio::task::JoinHandle<HashMap<String, u64>> {
    tokio::spawn(async move {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("message.timeout.ms", "30000")
            .set(ONE_RECORD_PER_BATCH.0, ONE_RECORD_PER_BATCH.1)
            .create()
            .expect("create the producer");
        let mut expected: HashMap<String, u64> = HashMap::new();
        for i in 0..produced {
            let video = format!("k{}", i % videos);
            let count = 1 + i % 3;
            let value = if i % 5 == 0 {
                serde_json::json!([{"videoId": video, "count": count}]).to_string()
            } else {
                serde_json::json!({"videoId": video, "count": count}).to_string()
            };
            let key = i.to_string();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            producer
                .send(
                    FutureRecord::to(TOPIC)
                        .key(&key)
                        .payload(&value)
                        .timestamp(now),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("record {i}: {e}"));
            *expected.entry(video).or_default() += count;
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(160)).await;
            }
        }
        expected
    })
}

/// Waits (at most 2 minutes) for the all-time window to hold `expected`, then, 2 s later so that a late
/// double would show, returns the views lost and doubled.
async fn lost_and_doubled(store: &RedisStore, expected: &HashMap<String, u64>) -> (u64, u64) {
    use crate::faults::counted;
    let deadline = Instant::now() + Duration::from_secs(120);
    while counted(store, Window::All).await != *expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = counted(store, Window::All).await;
    let (mut lost, mut doubled) = (0, 0);
    for (video, want) in expected {
        let got = counts.get(video).copied().unwrap_or(0);
        lost += want.saturating_sub(got);
        doubled += got.saturating_sub(*want);
    }
    let extra: u64 = counts
        .iter()
        .filter(|(video, _)| !expected.contains_key(*video))
        .map(|(_, n)| n)
        .sum();
    (lost, doubled + extra)
}

/// A broker with the topic (4 partitions), a deployment of 4 partitions on the shared Redis under `label`, a
/// store on it, and a worker process applying its log: where the process tests run kafka roles.
async fn role_deployment(
    label: &str,
) -> (
    KafkaBroker,
    crate::faults::Env,
    RedisStore,
    crate::faults::Proc,
) {
    let broker = KafkaBroker::start();
    broker.create_topic(TOPIC, 4);
    let env = crate::faults::Env::new(&topk_testkit::servers().redis_url, label, 4);
    let store = env.store().await;
    let worker = env.ingest("worker", 0, &[]);
    (broker, env, store, worker)
}

/// The kafka role's settings for a test's broker and group (a killed member's partitions move after 6 s).
fn role_settings<'a>(bootstrap: &'a str, group: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("TOPK_KAFKA_BROKERS", bootstrap),
        ("TOPK_KAFKA_TOPIC", TOPIC),
        ("TOPK_KAFKA_GROUP", group),
        ("TOPK_KAFKA_SESSION_TIMEOUT_MS", "6000"),
    ]
}

/// The kafka role SIGKILLed at random moments while an independent producer writes: every record produced is
/// counted exactly once in the all-time window (0 lost, 0 doubled), however the kills fall between its reads,
/// appends and offset commits (committed once a second, so kills often land before a commit and the records
/// are read again). Real processes: the kafka role and a worker, spawned from cargo's binaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_role_killed_at_random_moments_loses_and_doubles_nothing() {
    const PRODUCED: u64 = 2_400;
    let (broker, env, store, _worker) = role_deployment("kafka-kill").await;
    let bootstrap = broker.bootstrap();
    let settings = role_settings(&bootstrap, "kill-test");
    let mut consumer = env.ingest_unchecked("kafka", 0, &settings);
    let producing = spawn_producer(bootstrap.clone(), PRODUCED, 40);

    // Kill and restart the consumer at random moments while records arrive.
    let mut kills = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    while !producing.is_finished() || kills < 3 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(700 + seed % 2_500)).await;
        consumer.kill();
        kills += 1;
        consumer = env.ingest_unchecked("kafka", 0, &settings);
    }
    let expected = producing.await.unwrap();
    let (lost, doubled) = lost_and_doubled(&store, &expected).await;
    let total: u64 = expected.values().sum();
    eprintln!(
        "kafka kill test: {PRODUCED} records ({total} views) produced, consumer SIGKILLed {kills} times: \
         lost {lost}, doubled {doubled}"
    );
    assert_eq!((lost, doubled), (0, 0), "{}", consumer.log_tail());
}

/// Rebalances under load: a second consumer joins the group (the partitions are split between the two), then
/// the first leaves with SIGTERM (the second takes them all), while records arrive: each counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_joining_and_leaving_the_group_lose_and_double_nothing() {
    const PRODUCED: u64 = 1_800;
    let (broker, env, store, _worker) = role_deployment("kafka-rebalance").await;
    let bootstrap = broker.bootstrap();
    let settings = role_settings(&bootstrap, "rebalance-test");
    let mut first = env.ingest_unchecked("kafka", 0, &settings);
    let producing = spawn_producer(bootstrap.clone(), PRODUCED, 30);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut second = env.ingest_unchecked("kafka", 0, &settings);
    tokio::time::sleep(Duration::from_secs(5)).await;
    first.terminate(Duration::from_secs(30)).await;
    let expected = producing.await.unwrap();
    let (lost, doubled) = lost_and_doubled(&store, &expected).await;
    eprintln!(
        "kafka rebalance test: {PRODUCED} records, a consumer joined then left under load: lost {lost}, \
         doubled {doubled}"
    );
    assert_eq!((lost, doubled), (0, 0), "{}", second.log_tail());
    second.terminate(Duration::from_secs(30)).await;
}
