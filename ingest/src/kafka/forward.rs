//! One step of the Kafka source: a batch of records validated and appended to the logs exactly once.

use crate::receiver::parse_batch;
use futures::future::join_all;
use std::collections::BTreeMap;
use topk_core::domain::VideoId;
use topk_core::keys::Partition;
use topk_core::redis::{RedisStore, SourcePartition, SourceRecord, StoreError};

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
    pub commit: BTreeMap<i32, i64>,
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
pub type Outcomes = BTreeMap<(i32, i64), Outcome>;

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

/// Forwards `records` of `topic` (any of its partitions) into the log: each valid record's views with its
/// timestamp as event time (`now_ms` when it has none), exactly once per topk partition; each malformed one
/// into the dead-letter stream. Returns the offsets to commit and what became of the records. An error
/// leaves some parts appended and others not: forwarding the same records again, with the same `outcomes`,
/// completes it and counts each record once.
pub async fn forward(
    store: &RedisStore,
    topic: &str,
    records: &[Record],
    now_ms: i64,
    max_batch_len: usize,
    outcomes: &mut Outcomes,
) -> Result<Forwarded, StoreError> {
    let mut out = Forwarded::default();
    // Per (topk partition, Kafka partition), the records' parts.
    let mut parts: BTreeMap<(Partition, i32), Vec<SourceRecord>> = BTreeMap::new();
    // Per record of this batch (Kafka partition, offset), how many parts it has (0: malformed).
    let mut parts_of: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for r in records {
        let record = (r.partition, r.offset);
        // The same record twice in a batch (a client that rewound): the second is a replay.
        if parts_of.contains_key(&record) {
            out.replayed += 1;
            continue;
        }
        let source = SourcePartition {
            topic: topic.to_owned(),
            partition: r.partition,
        };
        match parse_record(r.value.as_deref(), max_batch_len) {
            Ok(views) => {
                let event_ms = r.timestamp_ms.filter(|t| *t >= 0).unwrap_or(now_ms);
                let lines = store.lines_by_partition(&views);
                parts_of.insert(record, lines.len());
                for (p, lines) in lines {
                    parts
                        .entry((p, r.partition))
                        .or_default()
                        .push(SourceRecord {
                            offset: r.offset,
                            event_ms,
                            lines,
                        });
                }
            }
            Err(reason) => {
                parts_of.insert(record, 0);
                // Unless an earlier attempt kept it, or found it kept.
                if let std::collections::btree_map::Entry::Vacant(undecided) =
                    outcomes.entry(record)
                {
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
                    undecided.insert(if kept {
                        Outcome::Malformed
                    } else {
                        Outcome::Replayed
                    });
                }
            }
        }
        let next = out.commit.entry(r.partition).or_insert(r.offset + 1);
        *next = (*next).max(r.offset + 1);
    }
    // In offset order, as the append script wants them: it then drops a first run of them (those at or below
    // the offset its log had taken) and appends the rest.
    for part in parts.values_mut() {
        part.sort_by_key(|r| r.offset);
    }
    // Partitions are independent (on a cluster, other nodes): their appends go out together, and each one
    // that succeeds is counted even if another fails.
    let appended = join_all(parts.iter().map(|((p, kafka_partition), part)| {
        let source = SourcePartition {
            topic: topic.to_owned(),
            partition: *kafka_partition,
        };
        async move { store.append_source(*p, &source, part).await }
    }))
    .await;
    let mut dropped: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let mut failed = None;
    for (((_, kafka_partition), part), done) in parts.iter().zip(appended) {
        let done = match done {
            Ok(done) => done,
            Err(e) => {
                failed.get_or_insert(e);
                continue;
            }
        };
        let taken_before = part.len().saturating_sub(done.records as usize);
        for r in &part[..taken_before] {
            *dropped.entry((*kafka_partition, r.offset)).or_default() += 1;
        }
        for r in &part[taken_before..] {
            outcomes.insert((*kafka_partition, r.offset), Outcome::Forwarded);
        }
    }
    // A record every log of its views had taken already is a replay, unless an earlier attempt forwarded
    // some of it.
    for (record, n) in &parts_of {
        if *n > 0 && dropped.get(record) == Some(n) {
            outcomes.entry(*record).or_insert(Outcome::Replayed);
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    for record in parts_of.keys() {
        match outcomes.get(record) {
            // Every record is decided once no append failed.
            Some(Outcome::Forwarded) | None => out.records += 1,
            Some(Outcome::Malformed) => out.malformed += 1,
            Some(Outcome::Replayed) => out.replayed += 1,
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
