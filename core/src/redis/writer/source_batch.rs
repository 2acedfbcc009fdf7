//! A batch of a source's records (Kafka's) into the logs in one call: each record's views split by topk
//! partition, each partition's part appended by source offset (`source.rs`), all partitions at once, and per
//! record what the logs took.

use super::source::{SourcePartition, SourceRecord};
use crate::domain::VideoId;
use crate::keys::Partition;
use crate::redis::{LogWriter, StoreError};
use futures::future::join_all;
use std::collections::{BTreeMap, BTreeSet};

/// One record of a source as the logs take it: where it is in the source, when its views happened, and
/// its views.
#[derive(Debug, Clone, Copy)]
pub struct SourceViews<'a> {
    /// The record's partition in the source (a Kafka partition).
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// When its views happened, ms since the epoch.
    pub event_ms: i64,
    pub views: &'a [(VideoId, u64)],
}

/// What the logs took of a batch of records.
#[derive(Debug, Default)]
pub struct SourceBatchAppended {
    /// The records (source partition, offset) some log took views of in this call; a record of the batch
    /// not here had been taken whole before (a replay).
    pub taken: BTreeSet<(i32, i64)>,
    /// The first failure when a partition's append failed: the others' parts are appended (and in `taken`);
    /// appending the batch again completes it and counts each record once.
    pub failed: Option<StoreError>,
}

impl LogWriter {
    /// Appends `records` of `topic` to the logs: per topk partition and source partition one script
    /// ([`LogWriter::append_source`]), all at once (on a cluster they are other nodes). Each drops what its
    /// log had taken from that source partition, so a batch appended again (after a crash, a rebalance, a
    /// failure here) counts each record once.
    pub async fn append_source_records(
        &self,
        topic: &str,
        records: &[SourceViews<'_>],
    ) -> SourceBatchAppended {
        let mut parts: BTreeMap<(Partition, i32), Vec<SourceRecord>> = BTreeMap::new();
        for r in records {
            for (p, lines) in self.split(r.views) {
                parts
                    .entry((p, r.partition))
                    .or_default()
                    .push(SourceRecord {
                        offset: r.offset,
                        event_ms: r.event_ms,
                        lines,
                    });
            }
        }
        // In offset order, as the script wants them: it drops a first run (what its log had taken) and
        // takes the rest.
        for part in parts.values_mut() {
            part.sort_by_key(|r| r.offset);
        }
        let appended = join_all(parts.iter().map(|((p, partition), part)| {
            let source = SourcePartition {
                topic: topic.to_owned(),
                partition: *partition,
            };
            async move { self.append_source(*p, &source, part).await }
        }))
        .await;
        let mut out = SourceBatchAppended::default();
        for (((_, partition), part), done) in parts.iter().zip(appended) {
            match done {
                Ok(done) => {
                    let taken_before = part.len().saturating_sub(done.records as usize);
                    out.taken
                        .extend(part[taken_before..].iter().map(|r| (*partition, r.offset)));
                }
                Err(e) => {
                    out.failed.get_or_insert(e);
                }
            }
        }
        out
    }
}
