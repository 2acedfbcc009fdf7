//! The Kafka source (`TOPK_INGEST_ROLE=kafka`): consumes a topic in a consumer group and forwards each
//! record's views into the log exactly once, with the record's timestamp as their event time.
//!
//! A record's value is what one element of a `POST /v1/views` body is (`{"videoId": "x", "count": 3}`), or an
//! array of them, validated by the receiver's own parser. [`forward`] is the one step: it splits a batch of
//! records by topk partition and appends each partition's part with [`RedisStore::append_source`], which drops
//! what that partition's log already took from the record's Kafka partition (the offset is kept beside the
//! log and checked in the same script). Kafka offsets are committed only after, so a consumer killed at any
//! point, a rebalance, or two consumers briefly owning a partition replay records that the logs then drop.
//! A record that is not a valid view (or array of views) goes to the dead-letter stream with the reason, once
//! (by offset, as the logs take records), and is committed like the others: it never stops the consumer.
//!
//! Backpressure: while the log's backlog is over `TOPK_INGEST_MAX_BACKLOG`, the loop stops reading (Kafka
//! keeps the records) instead of failing.

use crate::backpressure::Backlog;
use crate::receiver::parse_batch;
use anyhow::Context;
use futures::future::try_join_all;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::domain::VideoId;
use topk_core::keys::Partition;
use topk_core::redis::{RedisStore, SourcePartition, SourceRecord, StoreError};

/// Where and what the kafka role consumes.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    pub topic: String,
    /// The consumer group: its committed offsets are where a restarted consumer resumes.
    pub group: String,
    /// How long the group waits for a silent consumer before giving its partitions to others.
    pub session_timeout: Duration,
    /// Records forwarded in one step at most.
    pub max_records: usize,
    /// How long a step waits for more records after the first, so that the log gets fewer, larger entries.
    pub batch_wait: Duration,
    /// Most elements one record's array may have (the receiver's batch limit).
    pub max_batch_len: usize,
}

/// A record as the consumer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (its create or log-append time, ms); `None` when it has none.
    pub timestamp_ms: Option<i64>,
    pub value: Option<Vec<u8>>,
}

/// What one [`forward`] step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// Records whose views are in the log (now, or already from an earlier read).
    pub records: u64,
    /// Records kept as dead letters.
    pub malformed: u64,
    /// Per Kafka partition, the offset to commit: the one after the last record handled.
    pub commit: BTreeMap<i32, i64>,
}

/// Validates a record's value: one view object, or an array of them, exactly as a `POST /v1/views` body's
/// elements (the same parser), at most `max_len` of them. The error is the reason for the dead letter.
pub fn parse_record(value: Option<&[u8]>, max_len: usize) -> Result<Vec<(VideoId, u64)>, String> {
    let value = value.ok_or("the record has no value")?;
    let first = value.iter().find(|b| !b.is_ascii_whitespace());
    let parsed = if first == Some(&b'{') {
        // One element: read as a batch of one, so that it is checked by the very same code.
        let mut batch = Vec::with_capacity(value.len() + 2);
        batch.push(b'[');
        batch.extend_from_slice(value);
        batch.push(b']');
        parse_batch(&batch, 1)
    } else {
        parse_batch(value, max_len)
    };
    parsed.map_err(|e| e.message().to_owned())
}

/// Forwards `records` of `topic` (any of its partitions, each partition's in offset order) into the log:
/// each valid record's views with its timestamp as event time (`now_ms` when it has none), exactly once per
/// topk partition; each malformed one into the dead-letter stream. Returns the offsets to commit. An error
/// leaves some parts appended and others not: forwarding the same records again completes it.
pub async fn forward(
    store: &RedisStore,
    topic: &str,
    records: &[Record],
    now_ms: i64,
    max_batch_len: usize,
) -> Result<Forwarded, StoreError> {
    let mut out = Forwarded::default();
    // Per (topk partition, Kafka partition), the records' parts in offset order.
    let mut parts: BTreeMap<(Partition, i32), Vec<SourceRecord>> = BTreeMap::new();
    for r in records {
        let source = SourcePartition {
            topic: topic.to_owned(),
            partition: r.partition,
        };
        match parse_record(r.value.as_deref(), max_batch_len) {
            Ok(views) => {
                let event_ms = r.timestamp_ms.filter(|t| *t >= 0).unwrap_or(now_ms);
                for (p, lines) in store.lines_by_partition(&views) {
                    parts
                        .entry((p, r.partition))
                        .or_default()
                        .push(SourceRecord {
                            offset: r.offset,
                            event_ms,
                            lines,
                        });
                }
                out.records += 1;
            }
            Err(reason) => {
                let kept = store
                    .dead_letter(
                        &source,
                        r.offset,
                        &reason,
                        r.value.as_deref().unwrap_or_default(),
                    )
                    .await?;
                // A replayed one was logged when it was kept.
                if kept {
                    tracing::warn!(source = %source, offset = r.offset, reason = %reason, "malformed Kafka record: dead-lettered");
                }
                out.malformed += 1;
            }
        }
        let next = out.commit.entry(r.partition).or_insert(r.offset + 1);
        *next = (*next).max(r.offset + 1);
    }
    // Partitions are independent (on a cluster, other nodes): their appends go out together.
    try_join_all(parts.iter().map(|((p, kafka_partition), part)| {
        let source = SourcePartition {
            topic: topic.to_owned(),
            partition: *kafka_partition,
        };
        async move { store.append_source(*p, &source, part).await }
    }))
    .await?;
    Ok(out)
}

/// How often the offsets of forwarded records are committed: one commit request a second instead of one per
/// batch. Safe because appends are idempotent by offset: a crash replays at most this much, which the logs
/// drop (and the kill test relies on: its kills land in this window).
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// A consumer in `options.group`, subscribed to `options.topic`, that commits only when told.
pub fn consumer(options: &KafkaOptions) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &options.brokers)
        .set("group.id", &options.group)
        // Offsets are committed after the records are in the log, never before.
        .set("enable.auto.commit", "false")
        // A new group starts at the topic's start: history is backfilled at each record's time.
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            options.session_timeout.as_millis().to_string(),
        )
        .create()
        .context("create the Kafka consumer (TOPK_KAFKA_BROKERS)")?;
    consumer
        .subscribe(&[&options.topic])
        .with_context(|| format!("subscribe to the Kafka topic {:?}", options.topic))?;
    Ok(consumer)
}

/// Waits for the next record (until `stop`), then takes what follows within `options.batch_wait`, up to
/// `options.max_records`. Consumer errors (a broker down, a rebalance) are logged: librdkafka recovers.
async fn next_batch(
    consumer: &StreamConsumer,
    options: &KafkaOptions,
    stop: &CancellationToken,
    idle_until: Option<tokio::time::Instant>,
) -> Vec<Record> {
    let mut batch = Vec::new();
    let mut deadline = None;
    while batch.len() < options.max_records {
        let received = match deadline {
            None => tokio::select! {
                m = consumer.recv() => m,
                _ = stop.cancelled() => break,
                // Offsets wait to be committed: give the loop a turn even if no record comes.
                _ = tokio::time::sleep_until(idle_until.unwrap_or_else(tokio::time::Instant::now)),
                    if idle_until.is_some() => break,
            },
            Some(at) => match tokio::time::timeout_at(at, consumer.recv()).await {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        match received {
            Ok(m) => {
                batch.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                    value: m.payload().map(<[u8]>::to_vec),
                });
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + options.batch_wait);
            }
            Err(e) => {
                tracing::warn!(error = %e, "Kafka consumer error");
                if deadline.is_some() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
    }
    batch
}

/// Consumes until `stop`: each batch is forwarded (again and again while Redis fails: the records stay in
/// hand, uncommitted) and then its offsets committed. The batch in hand is finished before it returns.
pub async fn run(
    store: RedisStore,
    options: KafkaOptions,
    backlog: Arc<Backlog>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let consumer = consumer(&options)?;
    let mut committed = BTreeMap::new();
    // Offsets of records in the log, not yet committed: they go to Kafka at most every COMMIT_EVERY (the
    // append is idempotent, so what a crash leaves uncommitted is read again and dropped by the logs).
    let mut pending: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_commit = tokio::time::Instant::now();
    tracing::info!(brokers = %options.brokers, topic = %options.topic, group = %options.group, "Kafka source starting");
    while !stop.is_cancelled() {
        if let Some(entries) = backlog.over_limit() {
            tracing::debug!(entries, "log backlogged: not reading Kafka");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.cancelled() => {}
            }
            continue;
        }
        if !pending.is_empty() && last_commit.elapsed() >= COMMIT_EVERY {
            commit(&consumer, &options.topic, &pending, CommitMode::Async);
            committed.append(&mut pending);
            last_commit = tokio::time::Instant::now();
        }
        let idle_until = (!pending.is_empty()).then(|| last_commit + COMMIT_EVERY);
        let batch = next_batch(&consumer, &options, &stop, idle_until).await;
        if batch.is_empty() {
            continue;
        }
        let mut pause = Duration::from_millis(100);
        let forwarded = loop {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            match forward(
                &store,
                &options.topic,
                &batch,
                now_ms,
                options.max_batch_len,
            )
            .await
            {
                Ok(f) => break f,
                Err(e) => {
                    tracing::warn!(error = %e, records = batch.len(), "forwarding Kafka records failed; retrying");
                    // Stopping here leaves the batch uncommitted: the next owner reads it again.
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.cancelled() => return Ok(()),
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        };
        metrics::counter!("topk_kafka_records_total", "outcome" => "forwarded")
            .increment(forwarded.records);
        metrics::counter!("topk_kafka_records_total", "outcome" => "malformed")
            .increment(forwarded.malformed);
        pending.extend(forwarded.commit);
    }
    // The last asynchronous commits may still be in flight, and the latest offsets wait: this one returns once
    // the broker has them all.
    committed.append(&mut pending);
    if !committed.is_empty() {
        commit(&consumer, &options.topic, &committed, CommitMode::Sync);
    }
    Ok(())
}

/// Commits `offsets` (the next offset to read, per partition). A failed commit only means that a later owner
/// reads those records again, and the logs drop them: it is logged, not fatal.
fn commit(consumer: &StreamConsumer, topic: &str, offsets: &BTreeMap<i32, i64>, mode: CommitMode) {
    let mut list = TopicPartitionList::new();
    for (partition, next) in offsets {
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::warn!(error = %e, partition, "bad Kafka offset to commit");
        }
    }
    if let Err(e) = consumer.commit(&list, mode) {
        tracing::warn!(error = %e, "committing Kafka offsets failed; those records will be read again and dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(value: &str) -> Result<Vec<(String, u64)>, String> {
        parse_record(Some(value.as_bytes()), 3).map(|views| {
            views
                .into_iter()
                .map(|(v, n)| (v.into_string(), n))
                .collect()
        })
    }

    #[test]
    fn a_record_is_one_view_or_an_array_of_them() {
        assert_eq!(parsed(r#"{"videoId": "a"}"#), Ok(vec![("a".into(), 1)]));
        assert_eq!(
            parsed(r#" {"videoId": "a", "count": 4}"#),
            Ok(vec![("a".into(), 4)])
        );
        assert_eq!(
            parsed(r#"[{"videoId": "a"}, {"videoId": "b", "count": 2}]"#),
            Ok(vec![("a".into(), 1), ("b".into(), 2)])
        );
    }

    #[test]
    fn a_malformed_record_says_why_as_the_receiver_would() {
        for (value, why) in [
            ("", "not valid JSON"),
            ("not json", "not valid JSON"),
            ("[]", "empty"),
            ("3", "JSON array"),
            (r#"{"videoId": "bad id"}"#, "element 0"),
            (r#"{"videoId": "a", "count": 0}"#, "count"),
            (r#"{"videoId": "a", "extra": 1}"#, "unknown field"),
            (r#"[{"videoId": "a"}] [1]"#, "not valid JSON"),
            (r#"{"videoId": "a"}]"#, "not valid JSON"),
            (
                r#"[{"videoId": "a"}, {"videoId": "a"}, {"videoId": "a"}, {"videoId": "a"}]"#,
                "at most 3",
            ),
        ] {
            let err = parsed(value).expect_err(value);
            assert!(err.contains(why), "{value:?}: {err}");
        }
        assert_eq!(
            parse_record(None, 3).unwrap_err(),
            "the record has no value"
        );
    }
}
