//! The Kafka source against a real broker (tansu) and real Redis:
//! - [`broker`]: the Kafka client (rdkafka over the librdkafka it builds) and the broker: records keep their
//!   timestamps, a consumer group resumes after the offsets it committed, a durable broker keeps them across
//!   a restart.
//! - [`role`]: the kafka role's loop: each record forwarded once at its own time, malformed ones
//!   dead-lettered once, a full replay adding nothing, backpressure, the binary's settings and metrics.
//! - [`faults`]: real processes broken under load: the role SIGKILLed at random moments, consumers joining
//!   and leaving the group, the broker killed and restarted; 0 lost and 0 doubled each time.

mod broker;
mod faults;
mod role;

const T0: i64 = 1_700_000_000_000;
const TOPIC: &str = "views";

/// What every producer of these tests sets: one record per batch. tansu 0.6's memory storage serves a fetch
/// only from batches that start at or after the fetch offset, so a consumer resuming from an offset inside a
/// batch would never get the rest of that batch (Apache Kafka sends the whole batch and the client skips).
const ONE_RECORD_PER_BATCH: (&str, &str) = ("batch.num.messages", "1");
