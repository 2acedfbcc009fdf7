//! The Kafka client and the broker, without topk: what the kafka role relies on.

use super::{ONE_RECORD_PER_BATCH, T0, TOPIC};
use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use topk_testkit::KafkaBroker;

const RECORDS: i64 = 1_000;

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

/// A member of group `topk` that receives `n` records, commits where it stands and leaves the group.
async fn receive_commit_and_leave(broker: &KafkaBroker, n: usize, seen: &mut Seen) {
    let member = consumer(broker, "topk");
    receive(&member, n, seen).await;
    member
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit the offsets");
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
    receive_commit_and_leave(&broker, 600, &mut seen).await;

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

/// A durable broker killed (SIGKILL) and started again keeps its topic, records and the group's committed
/// offsets, as a Kafka broker does: the group resumes exactly after its commit, and a new group reads all.
#[tokio::test]
async fn a_durable_broker_keeps_records_and_commits_across_a_kill() {
    const KEPT: i64 = 200;
    let mut broker = KafkaBroker::start_durable();
    broker.create_topic(TOPIC, 2);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set(ONE_RECORD_PER_BATCH.0, ONE_RECORD_PER_BATCH.1)
        .create()
        .expect("create the producer");
    let mut produced = Seen::new();
    for i in 0..KEPT {
        let payload = format!("record {i}");
        let key = i.to_string();
        let record = FutureRecord::to(TOPIC)
            .key(&key)
            .payload(&payload)
            .timestamp(T0 + i);
        let d = producer
            .send(record, Duration::from_secs(20))
            .await
            .unwrap_or_else(|(e, _)| panic!("record {i}: {e}"));
        produced.insert((d.partition, d.offset), (T0 + i, payload));
    }
    drop(producer);
    let mut seen = Seen::new();
    receive_commit_and_leave(&broker, 120, &mut seen).await;

    broker.restart();
    let second = consumer(&broker, "topk");
    receive(&second, (KEPT - 120) as usize, &mut seen).await;
    assert_eq!(seen, produced, "the group resumed after its commit");
    let more = tokio::time::timeout(Duration::from_secs(2), second.recv()).await;
    assert!(more.is_err(), "a record read twice: {more:?}");
    let mut all = Seen::new();
    receive(&consumer(&broker, "new"), KEPT as usize, &mut all).await;
    assert_eq!(all, produced, "every record kept");
}
