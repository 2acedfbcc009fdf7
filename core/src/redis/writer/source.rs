//! Records of an external source (a Kafka topic's partitions) appended to the log exactly once
//! (`lua/append_source.lua`).
//!
//! A source record may hold views of several topk partitions. Each topk partition keeps, beside its log, the
//! last offset of each source partition it has taken, and the append drops what is at or below it in the same
//! script. So the append of a record's part is idempotent per topk partition: a consumer killed between two
//! partitions' appends, or between the appends and its offset commit, replays from its committed offset and
//! adds only what is missing; two consumers that briefly own one source partition (a rebalance) add each
//! record once. Entries carry the records' event time (`batch::EVENT_TIME_FIELD`).

use crate::batch::{EVENT_TIME_FIELD, LINES_FIELD, MAX_EVENT_MS};
use crate::domain::VideoId;
use crate::keys::Partition;
use crate::redis::connection::client::{Value, ValueExt};
use crate::redis::{LogWriter, Result, StoreError};
use std::collections::BTreeMap;

/// A partition of a source topic: names its offsets beside every log, as `topic/partition` (a Kafka topic
/// name has no `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePartition {
    pub topic: String,
    pub partition: i32,
}

impl std::fmt::Display for SourcePartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// One source record's views for one topk partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// The record's offset in its source partition.
    pub offset: i64,
    /// When its views happened (ms since the epoch): the record's timestamp.
    pub event_ms: i64,
    /// Its views of this partition as `<video id> <count>\n` lines ([`LogWriter::lines_by_partition`]).
    pub lines: String,
}

/// How many dead letters the stream keeps (about: the oldest go first).
pub const DEAD_LETTERS_KEPT: u32 = 100_000;

/// The longest record value a dead letter keeps, in bytes; a longer one is cut.
pub const DEAD_LETTER_VALUE_BYTES: usize = 16 * 1024;

/// A source record that could not be read, for [`LogWriter::keep_dead_letters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetter<'a> {
    /// The record's offset in its source partition.
    pub offset: i64,
    /// Why it could not be read.
    pub reason: &'a str,
    /// Its value (cut at [`DEAD_LETTER_VALUE_BYTES`] when kept).
    pub value: &'a [u8],
}

/// What an append of source records did on one topk partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAppended {
    /// Log entries written (consecutive records of one 5-second slice share one).
    pub entries: u64,
    /// Records appended; the others were at or below the offset already forwarded, and dropped.
    pub records: u64,
    /// The last offset of the source partition this log has taken, after the append.
    pub last_offset: Option<i64>,
}

impl LogWriter {
    /// A record's views grouped by topk partition, as each partition's lines (repeated ids summed).
    pub fn lines_by_partition(&self, views: &[(VideoId, u64)]) -> Vec<(Partition, String)> {
        self.split(views)
    }

    /// Appends `records` of `source` (in offset order) to partition `p`'s log, dropping those at or below
    /// the offset this log has already taken from `source`, and moves that offset to the highest one, in one
    /// script. With `wait_replicas`, it returns once that many replicas have the log as it is after the
    /// script ([`StoreError::NotReplicated`] otherwise): only then may the source's offsets be committed.
    pub async fn append_source(
        &self,
        p: Partition,
        source: &SourcePartition,
        records: &[SourceRecord],
    ) -> Result<SourceAppended> {
        self.append_source_with(p, source, records, "*").await
    }

    /// [`Self::append_source`] with entries logged at `at_ms` (ids `<at_ms>-<seq>`): for tests that inject
    /// time. Redis refuses a time before the log's last entry.
    pub async fn append_source_at(
        &self,
        p: Partition,
        source: &SourcePartition,
        records: &[SourceRecord],
        at_ms: i64,
    ) -> Result<SourceAppended> {
        self.append_source_with(p, source, records, &format!("{at_ms}-*"))
            .await
    }

    async fn append_source_with(
        &self,
        p: Partition,
        source: &SourcePartition,
        records: &[SourceRecord],
        id: &str,
    ) -> Result<SourceAppended> {
        if records.is_empty() {
            return Ok(SourceAppended {
                entries: 0,
                records: 0,
                last_offset: self.source_offset(p, source).await?,
            });
        }
        let keys = vec![self.keys.log(p), self.keys.source_offsets(p)];
        let wait = self.wait_replicas > 0;
        let mut args = Vec::with_capacity(5 + 3 * records.len());
        args.extend([
            source.to_string(),
            id.to_owned(),
            LINES_FIELD.to_owned(),
            EVENT_TIME_FIELD.to_owned(),
            u8::from(wait).to_string(),
        ]);
        for r in records {
            args.extend([
                r.offset.to_string(),
                // Past the last representable time it is in the future anyway: the worker clamps it to the
                // entry's time (`LogEntry::decode`); here it only has to stay a number Lua reads exactly enough.
                r.event_ms.clamp(0, MAX_EVENT_MS).to_string(),
                r.lines.clone(),
            ]);
        }
        let log = keys[0].clone();
        let reply: Vec<Value> = self.eval(&self.scripts.append_source, keys, args).await?;
        let bad = || StoreError::Reply(format!("append_source answered {reply:?}"));
        let entries = reply.first().and_then(ValueExt::as_i64).ok_or_else(bad)?;
        let appended = reply.get(1).and_then(ValueExt::as_i64).ok_or_else(bad)?;
        let last = reply
            .get(2)
            .and_then(ValueExt::as_string)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(bad)?;
        if wait {
            let replid = reply.get(3).and_then(ValueExt::as_string).ok_or_else(bad)?;
            self.wait_for_replicas(BTreeMap::from([(replid, log)]))
                .await?;
        }
        Ok(SourceAppended {
            entries: entries.max(0) as u64,
            records: appended.max(0) as u64,
            last_offset: (last >= 0).then_some(last),
        })
    }

    /// Keeps records of `source` that could not be read (in offset order), with why, in the dead-letter
    /// stream (the last [`DEAD_LETTERS_KEPT`] or so; a value cut at [`DEAD_LETTER_VALUE_BYTES`]), each once:
    /// a record at or below the last offset kept from `source` is dropped in the same script
    /// (`lua/dead_letter.lua`), so a replay after a crash keeps nothing twice. Returns how many were kept now:
    /// the last ones of `letters`. With `wait_replicas`, it returns once that many replicas have the stream
    /// ([`StoreError::NotReplicated`] otherwise), as [`Self::append_source`] does.
    pub async fn keep_dead_letters(
        &self,
        source: &SourcePartition,
        letters: &[DeadLetter<'_>],
    ) -> Result<u64> {
        if letters.is_empty() {
            return Ok(0);
        }
        let stream = self.keys.dead_letters();
        let keys = vec![stream.clone(), self.keys.dead_letter_offsets()];
        let wait = self.wait_replicas > 0;
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(3 + 3 * letters.len());
        args.extend([
            source.to_string().into_bytes(),
            DEAD_LETTERS_KEPT.to_string().into_bytes(),
            u8::from(wait).to_string().into_bytes(),
        ]);
        for letter in letters {
            let value = &letter.value[..letter.value.len().min(DEAD_LETTER_VALUE_BYTES)];
            args.extend([
                letter.offset.to_string().into_bytes(),
                letter.reason.as_bytes().to_vec(),
                value.to_vec(),
            ]);
        }
        let reply: Vec<Value> = self.eval(&self.scripts.dead_letter, keys, args).await?;
        let bad = || StoreError::Reply(format!("dead_letter answered {reply:?}"));
        let kept = reply.first().and_then(ValueExt::as_i64).ok_or_else(bad)?;
        if wait {
            let replid = reply.get(1).and_then(ValueExt::as_string).ok_or_else(bad)?;
            self.wait_for_replicas(BTreeMap::from([(replid, stream)]))
                .await?;
        }
        Ok(kept.max(0) as u64)
    }

    /// The dead letters kept, oldest first, up to `count`: `(source, offset, reason, value)` (for tests and
    /// operators).
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<(String, i64, String, String)>> {
        let key = self.keys.dead_letters();
        let reply: Value = self
            .on_key(
                "XRANGE",
                &key,
                vec![
                    key.clone(),
                    "-".into(),
                    "+".into(),
                    "COUNT".into(),
                    count.to_string(),
                ],
            )
            .await?;
        let mut out = Vec::new();
        for entry in reply.into_array() {
            let mut parts = entry.into_array().into_iter().skip(1);
            let flat: Vec<String> = parts
                .next()
                .map(Value::into_array)
                .unwrap_or_default()
                .iter()
                .map(|v| v.as_string().unwrap_or_default())
                .collect();
            let field = |name: &str| {
                flat.chunks(2)
                    .find(|c| c[0] == name)
                    .and_then(|c| c.get(1).cloned())
                    .unwrap_or_default()
            };
            out.push((
                field("source"),
                field("offset").parse().unwrap_or(-1),
                field("reason"),
                field("value"),
            ));
        }
        Ok(out)
    }

    /// Per partition of `topic`, the highest offset any partition's log has taken from it (one read of each
    /// partition's offsets, all at once): a source partition whose end is at or below this has gone back
    /// (the topic was recreated, or the broker lost records).
    pub async fn source_offsets_taken(&self, topic: &str) -> Result<BTreeMap<i32, i64>> {
        let reads = self.keys.all_partitions().map(|p| {
            let key = self.keys.source_offsets(p);
            async move {
                let all: std::collections::HashMap<String, String> =
                    self.on_key("HGETALL", &key, vec![key.clone()]).await?;
                Ok::<_, StoreError>(all)
            }
        });
        let mut taken: BTreeMap<i32, i64> = BTreeMap::new();
        for all in futures::future::try_join_all(reads).await? {
            for (source, offset) in all {
                let Some(partition) = source
                    .strip_prefix(topic)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .and_then(|n| n.parse::<i32>().ok())
                else {
                    continue;
                };
                let Ok(offset) = offset.parse::<i64>() else {
                    continue;
                };
                let kept = taken.entry(partition).or_insert(offset);
                *kept = (*kept).max(offset);
            }
        }
        Ok(taken)
    }

    /// The last offset of `source` that partition `p`'s log has taken (`None`: none yet).
    pub async fn source_offset(
        &self,
        p: Partition,
        source: &SourcePartition,
    ) -> Result<Option<i64>> {
        let key = self.keys.source_offsets(p);
        let raw: Option<String> = self
            .on_key("HGET", &key, vec![key.clone(), source.to_string()])
            .await?;
        raw.map(|raw| {
            raw.parse()
                .map_err(|_| StoreError::Reply(format!("bad source offset {raw:?} in {key}")))
        })
        .transpose()
    }
}
