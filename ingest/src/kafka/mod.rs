//! The Kafka source (`TOPK_INGEST_ROLE=kafka`): consumes a topic in a consumer group and forwards each
//! record's views into the log exactly once, with the record's timestamp as their event time.
//!
//! A record's value is what one element of a `POST /v1/views` body is (`{"videoId": "x", "count": 3}`), or an
//! array of them, validated by the same parser as HTTP's ([`topk_core::wire`]). [`forward()`] is the one step:
//! it hands a batch of records to core ([`topk_core::redis::LogWriter::append_source_records`]), which splits
//! them by topk partition and appends each partition's part by Kafka offset, dropping what that partition's
//! log already took from the record's Kafka partition (the offset is kept beside the log and checked in the same script). Kafka
//! offsets are committed only after, so a consumer killed at any point, a rebalance, or two consumers briefly
//! owning a partition replay records that the logs then drop. A record that is not a valid view (or array of
//! views) goes to the dead-letter stream with the reason, once (by offset, as the logs take records), and is
//! committed like the others: it never stops the consumer.
//!
//! - [`mod@forward`]: one batch of records into the logs and the dead letters.
//! - [`client`]: the consumer's settings (with the operator's properties file) and offset commits.
//! - [`source_loop`]: the loop ([`run`]): batches, backpressure, commits, shutdown.

pub mod client;
pub mod forward;
pub mod source_loop;

pub use client::{read_properties, KafkaProperties};
pub use forward::{forward, parse_record, Forwarded, Outcome, Outcomes, Record};
pub use source_loop::{run, GoneBack, COMMIT_EVERY};

use std::time::Duration;

/// A partition of the Kafka topic (Kafka's own numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KafkaPartition(pub i32);

/// An offset within a Kafka partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KafkaOffset(pub i64);

impl KafkaOffset {
    /// The offset after this one: what a consumer commits once it has handled this record.
    pub fn next(self) -> Self {
        KafkaOffset(self.0 + 1)
    }
}

impl std::fmt::Display for KafkaPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for KafkaOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

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
    /// The operator's librdkafka properties (`TOPK_KAFKA_CONFIG_FILE`), applied after topk's own.
    pub properties: KafkaProperties,
    /// How often the assigned partitions' end offsets are compared with what the logs have taken
    /// ([`source_loop::partitions_gone_back`]).
    pub offsets_check_every: Duration,
}
