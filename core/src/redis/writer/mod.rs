//! The log writer: what the receiver and the Kafka role may do with Redis.
//!
//! - `append`: batches into the per-partition log, alone or as a group that arrived together (one entry per
//!   partition for the group; one script on a node, one per primary on a cluster, each batch made whole by
//!   its `Idempotency-Key`).
//! - `append_cluster`: a group append on a cluster: one script per primary, per partition after a failure.
//! - `nodes`: on a cluster, which primary serves each partition, so a group append is one script per node.
//! - `replicas`: waiting for replicas to confirm a write (`TOPK_REDIS_WAIT_REPLICAS`).
//! - `source`: a source's records (Kafka's) into one partition's log exactly once, by source offset, with
//!   event times; malformed records into the dead-letter stream.
//! - `source_batch`: a batch of records into every partition's log in one call, and what the logs took.

mod append;
mod append_cluster;
mod nodes;
mod replicas;
mod source;
mod source_batch;

pub use append::{AppendOutcome, AppendRequest};
#[cfg(feature = "bench")]
pub(in crate::redis) use nodes::primary_of;
pub(in crate::redis) use nodes::NodeMap;
pub use source::{
    DeadLetter, SourceAppended, SourcePartition, SourceRecord, DEAD_LETTERS_KEPT,
    DEAD_LETTER_VALUE_BYTES,
};
pub use source_batch::{SourceBatchAppended, SourceViews};

use super::store::{handle, Shared};

handle!(
    /// Appends to the log: the receiver's and the Kafka role's handle.
    LogWriter, store.writer
);
