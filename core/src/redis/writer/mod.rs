//! The log writer: what the receiver and the Kafka role may do with Redis.
//!
//! - `append`: a batch into the per-partition log (one script on a node; on a cluster one per partition,
//!   made whole by the batch's `Idempotency-Key`, claimed first for the whole batch).
//! - `source`: a source's records (Kafka's) into one partition's log exactly once, by source offset, with
//!   event times; malformed records into the dead-letter stream.
//! - `source_batch`: a batch of records into every partition's log in one call, and what the logs took.

mod append;
mod source;
mod source_batch;

pub use append::AppendOutcome;
pub use source::{
    DeadLetter, SourceAppended, SourcePartition, SourceRecord, DEAD_LETTERS_KEPT,
    DEAD_LETTER_VALUE_BYTES,
};
pub use source_batch::{SourceBatchAppended, SourceViews};

use super::store::{handle, Shared};

handle!(
    /// Appends to the log: the receiver's and the Kafka role's handle.
    LogWriter
);
