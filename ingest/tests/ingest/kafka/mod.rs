//! The Kafka source against a real broker (tansu) and real Redis:
//! - [`broker`]: the Kafka client (rdkafka over the librdkafka it builds) and the broker: records keep their
//!   timestamps, a consumer group resumes after the offsets it committed, a durable broker keeps them across
//!   a restart.
//! - [`role`]: the kafka role's loop: each record forwarded once at its own time, malformed ones
//!   dead-lettered once, a full replay adding nothing (counted as replayed), backpressure and pauses under
//!   load, the binary's settings and metrics.
//! - [`faults`]: real processes broken under load: the role SIGKILLed at random moments, consumers joining
//!   and leaving the group, the broker killed and restarted; 0 lost and 0 doubled each time.
//! - [`security`]: TLS to the broker (its certificate checked) and SASL/SCRAM (the password never logged).

mod broker;
mod faults;
mod role;
mod security;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::redis::RedisStore;
use topk_ingest::backpressure::Backlog;
use topk_ingest::kafka::{self, KafkaOptions};
use topk_testkit::{wait_until, KafkaBroker};

const T0: i64 = 1_700_000_000_000;
const TOPIC: &str = "views";

/// What every producer of these tests sets: one record per batch. tansu 0.6's memory storage serves a fetch
/// only from batches that start at or after the fetch offset, so a consumer resuming from an offset inside a
/// batch would never get the rest of that batch (Apache Kafka sends the whole batch and the client skips).
const ONE_RECORD_PER_BATCH: (&str, &str) = ("batch.num.messages", "1");

/// Produces `(timestamp, value)` records (None: a record without a value) to `topic`, keyed by their index
/// so that they spread over its partitions, then a malformed record `end` at the end of each of its
/// `partitions`: once a consumer has dead-lettered both, it has read everything.
async fn produce(
    broker: &KafkaBroker,
    topic: &str,
    partitions: i32,
    records: &[(i64, Option<String>)],
) {
    produce_via(ClientConfig::new(), broker, topic, partitions, records).await;
}

/// [`produce`] by a client with settings of its own besides (TLS).
async fn produce_via(
    mut client: ClientConfig,
    broker: &KafkaBroker,
    topic: &str,
    partitions: i32,
    records: &[(i64, Option<String>)],
) {
    let producer: FutureProducer = client
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
        properties: Default::default(),
        offsets_check_every: Duration::from_millis(500),
    }
}

/// [`wait_until`] `done` holds; after `within`, panics saying what did not happen, `what` (made at each miss,
/// so that it can show a log's tail).
async fn wait_for<F, Fut>(within: Duration, mut done: F, what: impl Fn() -> String)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let what = &what;
    wait_until("the Kafka source", within, || {
        let done = done();
        async move {
            match done.await {
                true => Ok(()),
                false => Err(what()),
            }
        }
    })
    .await;
}

/// Runs the kafka role's loop in `group` until `done` holds of the store (or 60 s), then stops it.
async fn consume_until<F, Fut>(store: &RedisStore, options: KafkaOptions, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let stop = CancellationToken::new();
    let backlog = Arc::new(Backlog::new(0));
    let task = tokio::spawn(kafka::run(store.writer(), options, backlog, stop.clone()));
    wait_for(Duration::from_secs(60), done, || {
        "the kafka role did not get there".into()
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// The log's entries not yet applied, all partitions.
async fn log_entries(store: &RedisStore) -> u64 {
    let mut n = 0;
    for p in store.keys().all_partitions() {
        n += store.log_state().log_position(p).await.unwrap().backlog;
    }
    n
}
