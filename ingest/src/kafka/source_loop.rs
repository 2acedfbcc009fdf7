//! The Kafka source's loop: reads batches, forwards them ([`super::forward()`]), commits their offsets at most
//! every [`COMMIT_EVERY`], and pauses while the log is backlogged.
//!
//! Backpressure: while the log's backlog is over `TOPK_INGEST_MAX_BACKLOG`, the assigned partitions are
//! paused (Kafka keeps the records) and the consumer keeps polling, so that the group keeps it as a member
//! however long the backlog lasts (librdkafka leaves the group when a consumer stops polling for
//! `max.poll.interval.ms`, 5 minutes by default, which would move its partitions back and forth).

use super::client::{commit, consumer, SourceConsumer};
use super::forward::{forward, Outcomes, Record};
use super::{KafkaOffset, KafkaOptions, KafkaPartition};
use crate::backpressure::Backlog;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::redis::LogWriter;
use topk_core::supervise::{Liveness, Supervisor};

/// How often the offsets of forwarded records are committed: one commit request a second instead of one per
/// batch. Safe because appends are idempotent by offset: a crash replays at most this much, which the logs
/// drop (and the kill test relies on: its kills land in this window).
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// Waits for the next record (until `stop`), then takes what follows within `options.batch_wait`, up to
/// `options.max_records`. Consumer errors (a broker down, a rebalance) are logged: librdkafka recovers.
async fn next_batch(
    consumer: &SourceConsumer,
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
                batch.push(record_of(&m));
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
    writer: LogWriter,
    options: KafkaOptions,
    backlog: Arc<Backlog>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let consumer = Arc::new(consumer(&options)?);
    // The offsets watch beside the loop, so that a slow broker answer never holds up forwarding; both
    // supervised: either one dying stops the other and the process.
    let mut tasks = Supervisor::new(stop.clone(), Liveness::default());
    tasks.spawn(
        "kafka offsets watch",
        watch_offsets(
            writer.clone(),
            consumer.clone(),
            options.topic.clone(),
            options.offsets_check_every,
            stop.clone(),
        ),
    );
    tasks.spawn(
        "kafka consumer",
        consume(writer, consumer, options, backlog, stop),
    );
    tasks.wait().await
}

/// The consumer's loop ([`run`]).
async fn consume(
    writer: LogWriter,
    consumer: Arc<SourceConsumer>,
    options: KafkaOptions,
    backlog: Arc<Backlog>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut committed = BTreeMap::new();
    // Offsets of records in the log, not yet committed: they go to Kafka at most every COMMIT_EVERY (the
    // append is idempotent, so what a crash leaves uncommitted is read again and dropped by the logs).
    let mut pending: BTreeMap<KafkaPartition, KafkaOffset> = BTreeMap::new();
    let mut last_commit = tokio::time::Instant::now();
    // Records received while paused, forwarded first once the backlog clears.
    let mut held: Vec<Record> = Vec::new();
    let mut paused = false;
    tracing::info!(brokers = %options.brokers, topic = %options.topic, group = %options.group, "Kafka source starting");
    while !stop.is_cancelled() {
        // Before the backlog check: a long pause still commits what was forwarded before it.
        if !pending.is_empty() && last_commit.elapsed() >= COMMIT_EVERY {
            commit(&consumer, &options.topic, &pending, CommitMode::Async);
            committed.append(&mut pending);
            last_commit = tokio::time::Instant::now();
        }
        if let Some(entries) = backlog.over_limit() {
            if !paused {
                tracing::info!(entries, "log backlogged: Kafka consumption paused");
                paused = true;
            }
            // Again each turn: partitions assigned meanwhile (a rebalance) are paused too.
            set_paused(&consumer, true);
            // Polling serves the group; a record fetched before the pause may still come, and is held (a
            // batch at most: beyond that, only the group is served late).
            tokio::select! {
                m = consumer.recv(), if held.len() < options.max_records => match m {
                    Ok(m) => held.push(record_of(&m)),
                    Err(e) => tracing::warn!(error = %e, "Kafka consumer error"),
                },
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.cancelled() => {}
            }
            continue;
        }
        if paused {
            set_paused(&consumer, false);
            paused = false;
            tracing::info!("log under its backlog limit: Kafka consumption resumed");
        }
        let idle_until = (!pending.is_empty()).then(|| last_commit + COMMIT_EVERY);
        let batch = if held.is_empty() {
            next_batch(&consumer, &options, &stop, idle_until).await
        } else {
            std::mem::take(&mut held)
        };
        if batch.is_empty() {
            continue;
        }
        let mut pause = Duration::from_millis(100);
        let mut outcomes = Outcomes::new();
        let forwarded = loop {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            match forward(
                &writer,
                &options.topic,
                &batch,
                now_ms,
                options.max_batch_len,
                &mut outcomes,
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
        metrics::counter!("topk_kafka_records_total", "outcome" => "replayed")
            .increment(forwarded.replayed);
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

/// When [`watch_offsets`] looks first (or after `every`, if sooner).
const FIRST_OFFSETS_CHECK: Duration = Duration::from_secs(5);

/// Every `every`, [`partitions_gone_back`]: each partition found gone back is logged once as an error (again
/// if it recovers and goes back again), and their number is `topk_kafka_partitions_gone_back`.
async fn watch_offsets(
    writer: LogWriter,
    consumer: Arc<SourceConsumer>,
    topic: String,
    every: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut gone_back: Vec<KafkaPartition> = Vec::new();
    // The first look soon after the start: a role restarted after its topic was recreated says so at once.
    let mut wait = every.min(FIRST_OFFSETS_CHECK);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return Ok(()),
        }
        wait = every;
        let now_gone = partitions_gone_back(&writer, &consumer, &topic).await;
        for GoneBack {
            partition,
            end,
            taken,
        } in &now_gone
        {
            if !gone_back.contains(partition) {
                tracing::error!(
                    topic = %topic, partition = partition.0, end = end.0, taken = taken.0,
                    "Kafka partition's offsets went back below what the logs have taken (topic recreated, or \
                     records lost by the broker): its records are dropped as already forwarded until they pass \
                     the kept offset; see docs/known-limits.md"
                );
            }
        }
        gone_back = now_gone.iter().map(|g| g.partition).collect();
        metrics::gauge!("topk_kafka_partitions_gone_back").set(gone_back.len() as f64);
    }
}

fn record_of(m: &BorrowedMessage<'_>) -> Record {
    Record {
        partition: KafkaPartition(m.partition()),
        offset: KafkaOffset(m.offset()),
        timestamp_ms: m.timestamp().to_millis(),
        value: m.payload().map(<[u8]>::to_vec),
    }
}

/// Pauses (or resumes) fetching on every partition assigned now. Fetched records of a paused partition are
/// dropped by librdkafka and fetched again on resume, from after the last one delivered.
fn set_paused(consumer: &SourceConsumer, pause: bool) {
    let result = consumer.assignment().and_then(|assigned| {
        if pause {
            consumer.pause(&assigned)
        } else {
            consumer.resume(&assigned)
        }
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, pause, "pausing or resuming Kafka partitions failed");
    }
}

/// A partition whose end is at or below what the logs have taken from it ([`partitions_gone_back`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoneBack {
    pub partition: KafkaPartition,
    /// Its end offset (high watermark) now.
    pub end: KafkaOffset,
    /// The highest offset the logs have taken from it.
    pub taken: KafkaOffset,
}

/// Assigned partitions whose end offset (the high watermark, asked of the broker) is at or below the highest
/// offset the logs have taken from them. In a healthy topic the end is always past
/// every offset read from it, so this means the topic was recreated under its name or the broker lost
/// records, and the role is dropping new records as already forwarded. A partition whose end cannot be asked
/// now, or a failed Redis read, counts as healthy: the next check sees it.
pub async fn partitions_gone_back(
    writer: &LogWriter,
    consumer: &Arc<SourceConsumer>,
    topic: &str,
) -> Vec<GoneBack> {
    let Ok(assigned) = consumer.assignment() else {
        return Vec::new();
    };
    let partitions: Vec<i32> = assigned
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect();
    if partitions.is_empty() {
        return Vec::new();
    }
    let taken = match writer.source_offsets_taken(topic).await {
        Ok(taken) => taken,
        Err(e) => {
            tracing::debug!(error = %e, "reading the source offsets failed; checked again later");
            return Vec::new();
        }
    };
    // Asking the broker blocks: off the runtime's threads.
    let ends = tokio::task::spawn_blocking({
        let (consumer, topic) = (consumer.clone(), topic.to_owned());
        move || {
            partitions
                .into_iter()
                .filter_map(|p| {
                    let (_, end) = consumer
                        .fetch_watermarks(&topic, p, Duration::from_secs(5))
                        .ok()?;
                    Some((p, end))
                })
                .collect::<Vec<_>>()
        }
    })
    .await
    .unwrap_or_default();
    ends.into_iter()
        .filter_map(|(p, end)| {
            let kept = *taken.get(&p)?;
            (end >= 0 && end <= kept).then_some(GoneBack {
                partition: KafkaPartition(p),
                end: KafkaOffset(end),
                taken: KafkaOffset(kept),
            })
        })
        .collect()
}
