//! The log writer: what the receiver and the Kafka role may do with Redis.
//!
//! - `append`: a batch into the per-partition log (one script on a node; on a cluster one per partition,
//!   made whole by the batch's `Idempotency-Key`, claimed first for the whole batch).
//! - `source`: a source's records (Kafka's) into the log exactly once, by source offset, with event times;
//!   malformed records into the dead-letter stream.

mod append;
mod source;

pub use append::AppendOutcome;
pub use source::{
    DeadLetter, SourceAppended, SourcePartition, SourceRecord, DEAD_LETTERS_KEPT,
    DEAD_LETTER_VALUE_BYTES,
};

use super::store::{handle, Shared};

handle!(
    /// Appends to the log: the receiver's and the Kafka role's handle.
    LogWriter
);
