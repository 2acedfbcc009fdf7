//! Real processes (the kafka role and a worker, spawned from cargo's binaries) broken under load while an
//! independent producer writes: every record counted exactly once in the all-time window.

use super::{wait_for, ONE_RECORD_PER_BATCH, TOPIC};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use topk_core::domain::Window;
use topk_core::redis::RedisStore;
use topk_testkit::{poll_until, KafkaBroker};

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

/// Per partition of the topic (4): its end (the offset the next record gets) and the offset `group` has
/// committed, if any.
fn group_positions(reader: &BaseConsumer) -> Result<Vec<(i64, Option<i64>)>, String> {
    let mut list = TopicPartitionList::new();
    for p in 0..4 {
        list.add_partition(TOPIC, p);
    }
    let committed = reader
        .committed_offsets(list, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    (0..4)
        .map(|p| {
            let (_, end) = reader
                .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            let at = match committed.find_partition(TOPIC, p).map(|e| e.offset()) {
                Some(Offset::Offset(at)) => Some(at),
                _ => None,
            };
            Ok((end, at))
        })
        .collect()
}

/// Waits (at most 2 minutes) until the all-time window holds `expected` and nothing more can come: the log
/// is applied, and `group` has committed every record of the topic (the role commits only what the logs
/// hold, and a record it forwarded again would be one the logs took already, and dropped). Returns the views
/// lost and doubled then.
async fn lost_and_doubled(
    store: &RedisStore,
    expected: &HashMap<String, u64>,
    broker: &KafkaBroker,
    group: &str,
) -> (u64, u64) {
    use crate::faults::counted;
    let reader: Arc<BaseConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", group)
            .create()
            .expect("create the reader"),
    );
    let settled = poll_until(Duration::from_secs(120), || async {
        if counted(store, Window::All).await != *expected {
            return Err("the all-time window differs".to_owned());
        }
        let backlog = super::log_entries(store).await;
        if backlog > 0 {
            return Err(format!("{backlog} log entries not applied"));
        }
        let reader = reader.clone();
        let positions = tokio::task::spawn_blocking(move || group_positions(&reader))
            .await
            .unwrap()?;
        match positions.iter().all(|(end, at)| *at == Some(*end)) {
            true => Ok(()),
            false => Err(format!("(end, committed) per partition: {positions:?}")),
        }
    })
    .await;
    if let Err(last) = settled {
        eprintln!("not settled within 2 minutes: {last}");
    }
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

/// Views counted in the all-time window, all videos.
async fn counted_views(store: &RedisStore) -> u64 {
    crate::faults::counted(store, Window::All)
        .await
        .values()
        .sum()
}

/// Whether the group has given `role` partitions (it logs each assignment with the partitions it got).
fn assigned_some(role: &crate::faults::Proc) -> bool {
    role.log()
        .lines()
        .any(|l| l.contains("Kafka partitions assigned") && l.contains(&format!("{TOPIC}/")))
}

/// Where the process tests run kafka roles: a broker with the topic (4 partitions), a deployment of 4
/// partitions on the shared Redis, a store on it, and a worker process applying its log.
/// The fields drop in order: the worker stops first, the broker last.
struct RoleDeployment {
    worker: crate::faults::Proc,
    store: RedisStore,
    env: crate::faults::Env,
    broker: KafkaBroker,
}

impl RoleDeployment {
    /// `broker` with the topic, and the deployment under `label`.
    async fn start(broker: KafkaBroker, label: &str) -> Self {
        broker.create_topic(TOPIC, 4);
        let env = crate::faults::Env::new(&topk_testkit::servers().redis_url, label, 4);
        let store = env.store().await;
        let worker = env.ingest("worker", 0, &[]);
        Self {
            worker,
            store,
            env,
            broker,
        }
    }

    /// [`lost_and_doubled`] on this deployment, for `group`.
    async fn lost_and_doubled(&self, expected: &HashMap<String, u64>, group: &str) -> (u64, u64) {
        lost_and_doubled(&self.store, expected, &self.broker, group).await
    }

    /// [`assert_exact`] on this deployment, `role` reading for `group`.
    async fn assert_exact(&self, counts: (u64, u64), role: &crate::faults::Proc, group: &str) {
        assert_exact(counts, role, &self.broker, group, &self.store, &self.worker).await;
    }
}

/// How long the group waits for a killed member ([`role_settings`]' session timeout).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const SESSION_TIMEOUT_MS: &str = "6000";

/// Replaces a role SIGKILLed last only once the group has expired every killed member (its session timeout,
/// and a margin). tansu 0.6's group coordinator can drop expired members without telling the survivors (the
/// group goes back to forming while their heartbeats still succeed), so a role that joined beside killed
/// members and was assigned nothing by them would wait forever, its records unread; seen on loaded machines.
/// Apache Kafka's coordinator rebalances the survivors instead. Roles started at once after a kill (the
/// random kills) may stall that way until their own kill; the last one may not. A wait of the session
/// timeout, not on an event: tansu still describes the killed members (DescribeGroups) 30 s after the kill,
/// so the broker tells nothing of their expiry.
async fn replace_after_expiry(
    env: &crate::faults::Env,
    role: &mut crate::faults::Proc,
    settings: &[(&str, &str)],
) {
    role.kill();
    tokio::time::sleep(SESSION_TIMEOUT + Duration::from_secs(3)).await;
    *role = env.ingest_unchecked("kafka", 0, settings);
}

/// The kafka role's settings for a test's broker and group (a killed member's partitions move after
/// [`SESSION_TIMEOUT`]), logging its rebalances and pauses too.
fn role_settings<'a>(bootstrap: &'a str, group: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("TOPK_KAFKA_BROKERS", bootstrap),
        ("TOPK_KAFKA_TOPIC", TOPIC),
        ("TOPK_KAFKA_GROUP", group),
        ("TOPK_KAFKA_SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS),
        ("RUST_LOG", "warn,topk_ingest::kafka=info"),
    ]
}

/// Panics unless `(lost, doubled)` is `(0, 0)`, showing the role's log and, per Kafka partition, the topic's
/// end, the group's committed offset and the highest offset the logs have taken; the logs' backlog; the
/// worker's log (it applies them) and the broker's.
async fn assert_exact(
    (lost, doubled): (u64, u64),
    role: &crate::faults::Proc,
    broker: &KafkaBroker,
    group: &str,
    store: &RedisStore,
    worker: &crate::faults::Proc,
) {
    if (lost, doubled) == (0, 0) {
        return;
    }
    let taken = store.writer().source_offsets_taken(TOPIC).await;
    let backlog = super::log_entries(store).await;
    let (bootstrap, group) = (broker.bootstrap(), group.to_owned());
    let offsets = tokio::task::spawn_blocking(move || {
        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .expect("create the reader");
        let mut list = TopicPartitionList::new();
        for p in 0..4 {
            list.add_partition(TOPIC, p);
        }
        let committed = reader.committed_offsets(list, Duration::from_secs(10));
        let ends: Vec<_> = (0..4)
            .map(|p| reader.fetch_watermarks(TOPIC, p, Duration::from_secs(10)))
            .collect();
        format!("committed by the group: {committed:?}\ntopic ends (low, high): {ends:?}")
    })
    .await
    .unwrap();
    panic!(
        "lost {lost}, doubled {doubled}\nthe last role's log:\n{}\n{offsets}\ntaken by the logs: {taken:?}\n\
         log entries not yet applied: {backlog}\nworker log:\n{}\nbroker log:\n{}",
        role.log_tail(),
        worker.log_tail(),
        broker.log()
    );
}

/// The kafka role SIGKILLed at random moments while an independent producer writes: every record produced is
/// counted exactly once in the all-time window (0 lost, 0 doubled), however the kills fall between its reads,
/// appends and offset commits (committed once a second, so kills often land before a commit and the records
/// are read again). Real processes: the kafka role and a worker, spawned from cargo's binaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_role_killed_at_random_moments_loses_and_doubles_nothing() {
    const PRODUCED: u64 = 2_400;
    let d = RoleDeployment::start(KafkaBroker::start(), "kafka-kill").await;
    let (bootstrap, env) = (d.broker.bootstrap(), &d.env);
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
    // A last kill, and the role that reads the rest.
    replace_after_expiry(env, &mut consumer, &settings).await;
    kills += 1;
    let (lost, doubled) = d.lost_and_doubled(&expected, "kill-test").await;
    let total: u64 = expected.values().sum();
    eprintln!(
        "kafka kill test: {PRODUCED} records ({total} views) produced, consumer SIGKILLed {kills} times: \
         lost {lost}, doubled {doubled}"
    );
    d.assert_exact((lost, doubled), &consumer, "kill-test")
        .await;
}

/// Rebalances under load: a second consumer joins the group (the partitions are split between the two), then
/// the first leaves with SIGTERM (the second takes them all), while records arrive: each counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_joining_and_leaving_the_group_lose_and_double_nothing() {
    const PRODUCED: u64 = 1_800;
    let d = RoleDeployment::start(KafkaBroker::start(), "kafka-rebalance").await;
    let (bootstrap, env, store) = (d.broker.bootstrap(), &d.env, &d.store);
    let settings = role_settings(&bootstrap, "rebalance-test");
    let mut first = env.ingest_unchecked("kafka", 0, &settings);
    let producing = spawn_producer(bootstrap.clone(), PRODUCED, 30);
    // The second joins once the first reads (its records are counted), and the first leaves once the group
    // has given the second its share: each move happens while records arrive.
    wait_for(
        Duration::from_secs(60),
        || async { counted_views(store).await > 0 },
        || format!("the first role counted nothing\n{}", first.log_tail()),
    )
    .await;
    let mut second = env.ingest_unchecked("kafka", 0, &settings);
    wait_for(
        Duration::from_secs(60),
        || async { assigned_some(&second) },
        || format!("no partitions for the second role\n{}", second.log_tail()),
    )
    .await;
    assert!(!producing.is_finished(), "the producer finished first");
    first.terminate(Duration::from_secs(30)).await;
    let expected = producing.await.unwrap();
    let (lost, doubled) = d.lost_and_doubled(&expected, "rebalance-test").await;
    eprintln!(
        "kafka rebalance test: {PRODUCED} records, a consumer joined then left under load: lost {lost}, \
         doubled {doubled}"
    );
    d.assert_exact((lost, doubled), &second, "rebalance-test")
        .await;
    second.terminate(Duration::from_secs(30)).await;
}

/// The views the topic holds, read back from its start by a consumer of its own: each record as many times as
/// it is there (a producer that resent a record across a broker restart may have written it twice: topk counts
/// both, for they are two records).
async fn topic_views(broker: &KafkaBroker, partitions: i32) -> HashMap<String, u64> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Message;
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", topk_testkit::unique_name("topic-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("create the reader");
    reader.subscribe(&[TOPIC]).expect("subscribe");
    let mut ends = HashMap::new();
    for p in 0..partitions {
        let (_, high) = reader
            .fetch_watermarks(TOPIC, p, Duration::from_secs(20))
            .expect("the partition's end");
        ends.insert(p, high);
    }
    let mut views: HashMap<String, u64> = HashMap::new();
    let mut read: HashMap<i32, i64> = HashMap::new();
    while ends
        .iter()
        .any(|(p, end)| read.get(p).copied().unwrap_or(0) < *end)
    {
        let m = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("the topic read back within 30 s")
            .expect("read a record");
        read.insert(m.partition(), m.offset() + 1);
        let parsed = topk_ingest::kafka::parse_record(m.payload(), 10_000).expect("a valid record");
        for (video, n) in parsed {
            *views.entry(video.into_string()).or_default() += n;
        }
    }
    views
}

/// The broker SIGKILLed and started again twice, its storage on disk as a Kafka broker's, while an
/// independent producer writes and the kafka role reads: first alone (the role rides it out: librdkafka
/// reconnects and fetches on from its position), then together with the role (a new role resumes from the
/// offsets the broker kept, replaying what the logs drop). Every record the topic holds afterwards is counted
/// exactly once, and the role then stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_under_load_loses_and_doubles_nothing() {
    // About 20 s of records at the producer's pace: still arriving when the second role starts, about 15 s in.
    const PRODUCED: u64 = 2_400;
    let mut d = RoleDeployment::start(KafkaBroker::start_durable(), "kafka-broker-restart").await;
    let bootstrap = d.broker.bootstrap();
    let settings = role_settings(&bootstrap, "broker-restart-test");
    let mut consumer = d.env.ingest_unchecked("kafka", 0, &settings);
    let producing = spawn_producer(bootstrap.clone(), PRODUCED, 30);
    let mut restarts = 0;
    while !producing.is_finished() && restarts < 2 {
        // Each restart once the role has forwarded and the worker applied more views since the last: the
        // role reads when it comes.
        let before = counted_views(&d.store).await;
        wait_for(
            Duration::from_secs(60),
            || async { counted_views(&d.store).await >= before + 200 },
            || format!("the role made no progress\n{}", consumer.log_tail()),
        )
        .await;
        if restarts == 0 {
            // The broker alone: the role rides it out with the position it holds.
            d.broker.restart();
        } else {
            // Both, as a machine failure would: the new role starts from the offsets the broker kept, and the
            // logs drop what it had forwarded after its last commit.
            consumer.kill();
            d.broker.restart();
            replace_after_expiry(&d.env, &mut consumer, &settings).await;
        }
        restarts += 1;
    }
    let sent: u64 = producing.await.unwrap().values().sum();
    let held = topic_views(&d.broker, 4).await;
    let (lost, doubled) = d.lost_and_doubled(&held, "broker-restart-test").await;
    eprintln!(
        "kafka broker restart test: {PRODUCED} records ({sent} views sent, {} held by the topic), the broker \
         SIGKILLed and restarted {restarts} times (the second with the role): lost {lost}, doubled {doubled}",
        held.values().sum::<u64>()
    );
    assert_eq!(restarts, 2, "the producer finished before the restarts");
    d.assert_exact((lost, doubled), &consumer, "broker-restart-test")
        .await;
    consumer.terminate(Duration::from_secs(30)).await;
}

/// A topic deleted and created again under its name (here: a memory broker restarted empty and the topic
/// created again) restarts its offsets below what the logs have taken: the role reports it within seconds of
/// starting, as an error naming the partition and `topk_kafka_partitions_gone_back` on its admin address
/// (alert `TopkKafkaOffsetsWentBack`), and the new records are dropped, never counted twice
/// (docs/known-limits.md, Kafka). The role is restarted across the recreation, as its supervisor would
/// after librdkafka 2.12 crashed under it (it can, when a live consumer's topic is recreated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_is_reported_as_gone_back() {
    let mut d = RoleDeployment::start(KafkaBroker::start(), "kafka-gone-back").await;
    let bootstrap = d.broker.bootstrap();
    let admin = format!("127.0.0.1:{}", topk_testkit::free_port());
    let mut settings = role_settings(&bootstrap, "gone-back-test").to_vec();
    settings.push(("TOPK_ADMIN_ADDR", &admin));
    let gone_back = || async {
        let metrics = reqwest::get(format!("http://{admin}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("topk_kafka_partitions_gone_back "))
            .and_then(|n| n.trim().parse::<f64>().ok())
    };
    let mut role = d.env.ingest_unchecked("kafka", 0, &settings);
    let expected = spawn_producer(bootstrap.clone(), 40, 4).await.unwrap();
    assert_eq!(
        d.lost_and_doubled(&expected, "gone-back-test").await,
        (0, 0),
        "{}",
        role.log_tail()
    );
    wait_for(
        Duration::from_secs(30),
        || async { gone_back().await == Some(0.0) },
        || format!("no topk_kafka_partitions_gone_back 0\n{}", role.log_tail()),
    )
    .await;

    role.kill();
    d.broker.restart();
    d.broker.create_topic(TOPIC, 4);
    spawn_producer(bootstrap.clone(), 8, 4).await.unwrap();
    let role = d.env.ingest_unchecked("kafka", 0, &settings);
    wait_for(
        Duration::from_secs(40),
        || async { gone_back().await.unwrap_or(0.0) >= 1.0 },
        || format!("not reported gone back\n{}", role.log_tail()),
    )
    .await;
    assert!(
        role.log_tail().contains("offsets went back"),
        "{}",
        role.log_tail()
    );
    assert_eq!(
        crate::faults::counted(&d.store, Window::All).await,
        expected,
        "the recreated topic's records are dropped, not counted"
    );
}
