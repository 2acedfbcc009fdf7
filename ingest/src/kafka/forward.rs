//! One step of the Kafka source: a batch of records validated and appended to the logs exactly once.

use super::{KafkaOffset, KafkaPartition};
use futures::future::{join, join_all};
use std::collections::{BTreeMap, BTreeSet};
use topk_core::domain::VideoId;
use topk_core::redis::{DeadLetter, LogWriter, SourcePartition, SourceViews, StoreError};
use topk_core::wire::parse_batch;

/// A record as the consumer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: KafkaPartition,
    pub offset: KafkaOffset,
    /// The record's timestamp (its create or log-append time, ms); `None` when it has none.
    pub timestamp_ms: Option<i64>,
    pub value: Option<Vec<u8>>,
}

/// What one [`forward`] step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// Records whose views the step put in the log (all of them, or the rest of a record a crash had left
    /// half forwarded).
    pub records: u64,
    /// Records the logs (or the dead letters) had taken whole before the step: dropped. Read again after a
    /// crash or a rebalance, twice in one batch, behind a partition's offsets gone back, or taken by an
    /// attempt of the step whose reply was lost.
    pub replayed: u64,
    /// Records kept as dead letters by the step.
    pub malformed: u64,
    /// Per Kafka partition, the offset to commit: the one after the last record handled.
    pub commit: BTreeMap<KafkaPartition, KafkaOffset>,
}

/// What became of a record in a step, across its attempts (a step is tried again while Redis fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Forwarded,
    Malformed,
    Replayed,
}

/// Per record (Kafka partition, offset), its outcome as far as a step's attempts have decided it: kept from
/// one attempt to the next, so that what an attempt that failed half way did counts as done, not replayed.
pub type Outcomes = BTreeMap<(KafkaPartition, KafkaOffset), Outcome>;

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
    parsed.map_err(|e| e.to_string())
}

/// Forwards `records` of `topic` (any of its partitions) into the log: each valid record's views with its
/// timestamp as event time (`now_ms` when it has none), exactly once per topk partition, in one call into
/// core ([`LogWriter::append_source_records`]); each malformed one into the dead-letter stream. Returns the
/// offsets to commit and what became of the records. An error leaves some parts appended and others not:
/// forwarding the same records again, with the same `outcomes`, completes it and counts each record once.
pub async fn forward(
    writer: &LogWriter,
    topic: &str,
    records: &[Record],
    now_ms: i64,
    max_batch_len: usize,
    outcomes: &mut Outcomes,
) -> Result<Forwarded, StoreError> {
    let mut out = Forwarded::default();
    // The records of this batch.
    let mut batch_records: BTreeSet<(KafkaPartition, KafkaOffset)> = BTreeSet::new();
    // The valid records' views, and per Kafka partition the malformed records no earlier attempt decided.
    let mut valid: Vec<(&Record, Vec<(VideoId, u64)>)> = Vec::new();
    let mut malformed: BTreeMap<KafkaPartition, Vec<(&Record, String)>> = BTreeMap::new();
    for r in records {
        let record = (r.partition, r.offset);
        // The same record twice in a batch (a client that rewound): the second is a replay.
        if !batch_records.insert(record) {
            out.replayed += 1;
            continue;
        }
        match parse_record(r.value.as_deref(), max_batch_len) {
            Ok(views) => valid.push((r, views)),
            // Unless an earlier attempt kept it, or found it kept.
            Err(reason) if !outcomes.contains_key(&record) => {
                malformed.entry(r.partition).or_default().push((r, reason));
            }
            Err(_) => {}
        }
        let next = out.commit.entry(r.partition).or_insert(r.offset.next());
        *next = (*next).max(r.offset.next());
    }
    for letters in malformed.values_mut() {
        letters.sort_by_key(|(r, _)| r.offset);
    }
    let views: Vec<SourceViews<'_>> = valid
        .iter()
        .map(|(r, views)| SourceViews {
            partition: r.partition.0,
            offset: r.offset.0,
            event_ms: r.timestamp_ms.filter(|t| *t >= 0).unwrap_or(now_ms),
            views,
        })
        .collect();
    let source = |partition: KafkaPartition| SourcePartition {
        topic: topic.to_owned(),
        partition: partition.0,
    };
    // The appends and the dead letters go out together; each that succeeds is counted even if another fails.
    let (appended, dead_lettered) = join(
        writer.append_source_records(topic, &views),
        join_all(malformed.iter().map(|(kafka_partition, letters)| {
            let source = source(*kafka_partition);
            async move {
                let letters: Vec<DeadLetter<'_>> = letters
                    .iter()
                    .map(|(r, reason)| DeadLetter {
                        offset: r.offset.0,
                        reason,
                        value: r.value.as_deref().unwrap_or_default(),
                    })
                    .collect();
                writer.keep_dead_letters(&source, &letters).await
            }
        })),
    )
    .await;
    for (partition, offset) in appended.taken {
        outcomes.insert(
            (KafkaPartition(partition), KafkaOffset(offset)),
            Outcome::Forwarded,
        );
    }
    let mut failed = appended.failed;
    for ((kafka_partition, letters), done) in malformed.iter().zip(dead_lettered) {
        match done {
            Ok(kept) => {
                let taken_before = letters.len().saturating_sub(kept as usize);
                for (i, (r, reason)) in letters.iter().enumerate() {
                    let outcome = if i < taken_before {
                        Outcome::Replayed
                    } else {
                        // A replayed one was logged when it was kept.
                        tracing::warn!(source = %source(*kafka_partition), offset = %r.offset, reason = %reason, "malformed Kafka record: dead-lettered");
                        Outcome::Malformed
                    };
                    outcomes.insert((*kafka_partition, r.offset), outcome);
                }
            }
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    for record in &batch_records {
        match outcomes.get(record) {
            Some(Outcome::Forwarded) => out.records += 1,
            Some(Outcome::Malformed) => out.malformed += 1,
            // Every log of its views had taken it already, in this attempt and any before.
            Some(Outcome::Replayed) | None => out.replayed += 1,
        }
    }
    Ok(out)
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
