//! The log: one Redis stream per partition and the workers' consumer group on it. Appending a batch,
//! reading and claiming entries, trimming what is applied (where the group stands: `group.rs`).

use super::{RedisStore, Result, StoreError};
use crate::batch::{decode_fields, encode_lines, EntryId, LogEntry, LINES_FIELD};
use crate::domain::{IdempotencyKey, VideoId};
use crate::keys::{Partition, CONSUMER_GROUP};
use fred::cmd;
use fred::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long late views wait in Redis for a snapshotter before they are dropped.
pub const LATE_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// What became of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The batch's entries are in the log now.
    Stored,
    /// An earlier request with the same `Idempotency-Key` stored this batch; nothing was written again.
    AlreadyStored,
}

/// Which log entries a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRead {
    /// Entries never delivered to any worker.
    New,
    /// Entries delivered to this consumer and not yet acknowledged (after a restart or a lost race).
    OwnPending,
}

impl RedisStore {
    /// Creates the consumer group on every partition's log (and the log itself), if missing, after checking
    /// the deployment's layout ([`RedisStore::check_layout`]).
    pub async fn ensure_log_groups(&self) -> Result<()> {
        self.check_layout().await?;
        for p in self.keys.all_partitions() {
            match self.create_group(self.keys.log(p), "0".into()).await {
                Ok(()) => {}
                Err(StoreError::Redis(e)) if e.details().contains("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates the consumer group on `log` starting after `start` (and the log itself when missing).
    pub(super) async fn create_group(&self, log: String, start: String) -> Result<()> {
        let _: Value = self
            .client
            .custom(
                cmd!("XGROUP"),
                vec![
                    "CREATE".to_owned(),
                    log,
                    CONSUMER_GROUP.into(),
                    start,
                    "MKSTREAM".into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Appends a validated batch to the log: one entry per partition it touches, all in one script
    /// (`lua/append.lua`), so the batch is stored whole or not at all. Returns once Redis has the entries.
    pub async fn append(&self, views: &[(VideoId, u64)]) -> Result<()> {
        self.append_with(views, "*", None).await.map(|_| ())
    }

    /// [`Self::append`] under a producer's `Idempotency-Key`, recorded on each partition with its entry for
    /// `retention`: a batch sent again with the same key within it is not stored again
    /// ([`AppendOutcome::AlreadyStored`]); the same key with another batch is refused
    /// ([`StoreError::KeyReused`]) and stores nothing.
    pub async fn append_idempotent(
        &self,
        views: &[(VideoId, u64)],
        key: &IdempotencyKey,
        retention: Duration,
    ) -> Result<AppendOutcome> {
        self.append_with(views, "*", Some((key, retention))).await
    }

    /// [`Self::append`] with the event time given: the entries get ids `<at_ms>-<seq>`. Redis refuses a time
    /// before the log's last entry. For replays and tests that inject time.
    pub async fn append_at(&self, views: &[(VideoId, u64)], at_ms: i64) -> Result<()> {
        self.append_with(views, &format!("{at_ms}-*"), None)
            .await
            .map(|_| ())
    }

    async fn append_with(
        &self,
        views: &[(VideoId, u64)],
        id: &str,
        key: Option<(&IdempotencyKey, Duration)>,
    ) -> Result<AppendOutcome> {
        let mut by_partition: BTreeMap<Partition, Vec<(&VideoId, u64)>> = BTreeMap::new();
        for (video, n) in views {
            by_partition
                .entry(self.keys.partition_of(video))
                .or_default()
                .push((video, *n));
        }
        let mut keys = Vec::with_capacity(2 * by_partition.len());
        let mut records = Vec::new();
        // At least 1 ms: 0 means "no key" to the script.
        let retention_ms = key.map_or(0, |(_, r)| r.as_millis().max(1));
        let mut args = vec![
            self.append_deadline_ms().await?.to_string(),
            id.to_owned(),
            LINES_FIELD.to_owned(),
            retention_ms.to_string(),
        ];
        for (p, views) in by_partition {
            keys.push(self.keys.log(p));
            if let Some((key, _)) = key {
                records.push(self.keys.idempotency(p, key));
            }
            args.push(encode_lines(views));
        }
        keys.extend(records);
        let written: i64 = self
            .scripts
            .append
            .evalsha_with_reload(&self.client, keys, args)
            .await?;
        match written {
            -1 => {
                // Redis was frozen or slow: read its clock again before the next deadline.
                self.clock.forget();
                Err(StoreError::TooLate)
            }
            -2 => Err(StoreError::KeyReused),
            0 if key.is_some() => Ok(AppendOutcome::AlreadyStored),
            n if n > 0 => Ok(AppendOutcome::Stored),
            other => Err(StoreError::Reply(format!("append script answered {other}"))),
        }
    }

    /// Reads up to `count` entries of partition `p`'s log for `consumer`.
    pub async fn read_log(
        &self,
        p: Partition,
        consumer: &str,
        from: LogRead,
        count: usize,
    ) -> Result<Vec<LogEntry>> {
        let id = match from {
            LogRead::New => ">",
            LogRead::OwnPending => "0",
        };
        let reply: Value = self
            .client
            .custom(
                cmd!("XREADGROUP"),
                vec![
                    "GROUP".to_owned(),
                    CONSUMER_GROUP.into(),
                    consumer.into(),
                    "COUNT".into(),
                    count.to_string(),
                    "STREAMS".into(),
                    self.keys.log(p),
                    id.into(),
                ],
            )
            .await?;
        if reply.is_null() {
            return Ok(Vec::new());
        }
        // [[key, [entry, ...]]]
        let streams = reply.into_array();
        let Some(stream) = streams.into_iter().next() else {
            return Ok(Vec::new());
        };
        let mut parts = stream.into_array().into_iter();
        let entries = parts.nth(1).map(Value::into_array).unwrap_or_default();
        entries.into_iter().map(parse_entry).collect()
    }

    /// Takes over entries that another consumer left pending for at least `min_idle` (a dead worker's).
    pub async fn claim_stale(
        &self,
        p: Partition,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<LogEntry>> {
        let reply: Value = self
            .client
            .custom(
                cmd!("XAUTOCLAIM"),
                vec![
                    self.keys.log(p),
                    CONSUMER_GROUP.into(),
                    consumer.into(),
                    min_idle.as_millis().to_string(),
                    "0-0".into(),
                    "COUNT".into(),
                    count.to_string(),
                ],
            )
            .await?;
        // [next-start, [entry, ...], [deleted ids]]
        let mut parts = reply.into_array().into_iter().skip(1);
        let entries = parts.next().map(Value::into_array).unwrap_or_default();
        // Entries that were pending but are gone from the log (deleted by hand, or trimmed by an older build
        // that could trim pending entries): Redis has dropped them from the pending list, and their views can
        // no longer be applied. Said loudly, never silently skipped.
        let deleted: Vec<String> = parts
            .next()
            .map(Value::into_array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| id.as_string())
            .collect();
        if !deleted.is_empty() {
            tracing::error!(
                partition = p,
                entries = deleted.len(),
                ids = ?deleted,
                "pending log entries were deleted before they were applied; their views are lost"
            );
        }
        entries.into_iter().map(parse_entry).collect()
    }

    /// Removes acknowledged log entries older than `keep_since_ms`, never an entry still pending or not yet
    /// delivered. Returns the number removed.
    pub async fn trim_log(&self, p: Partition, keep_since_ms: i64) -> Result<u64> {
        let state = self.group_state(p).await?;
        let mut min_keep = EntryId {
            ms: keep_since_ms.max(0),
            seq: 0,
        };
        if let Some(oldest) = state.oldest_pending {
            min_keep = min_keep.min(oldest);
        }
        // Entries after the group's last delivered id have not been read yet.
        if let Some(last) = state.last_delivered {
            min_keep = min_keep.min(last.successor());
        }
        let removed = self
            .trim_before(self.keys.log(p), min_keep.to_string())
            .await?;
        Ok(removed)
    }

    /// Removes acknowledged log entries older than `retention` before `now_ms` on every partition, and late
    /// views older than [`LATE_RETENTION`] that no snapshotter took (a backstop: the snapshotter trims what it
    /// adds to history within seconds).
    pub async fn trim_all(&self, now_ms: i64, retention: Duration) -> Result<u64> {
        let mut removed = 0;
        for p in self.keys.all_partitions() {
            removed += self
                .trim_log(p, now_ms - retention.as_millis() as i64)
                .await?;
            let oldest_kept = now_ms - LATE_RETENTION.as_millis() as i64;
            self.trim_before(self.keys.late(p), oldest_kept.max(0).to_string())
                .await?;
        }
        Ok(removed)
    }
}

impl RedisStore {
    /// Deletes the entries of the stream at `key` older than `min_id` (XTRIM MINID); returns how many.
    pub(super) async fn trim_before(&self, key: String, min_id: String) -> Result<u64> {
        let removed: i64 = self
            .client
            .custom(cmd!("XTRIM"), vec![key, "MINID".into(), min_id])
            .await?;
        Ok(removed.max(0) as u64)
    }
}

/// `[id, [field, value, ...]]`; fields are nil for an entry trimmed while pending.
fn parse_entry(entry: Value) -> Result<LogEntry> {
    let mut parts = entry.into_array().into_iter();
    let raw_id = parts.next().and_then(|v| v.as_string()).unwrap_or_default();
    let id = EntryId::parse(&raw_id)
        .ok_or_else(|| StoreError::Reply(format!("bad stream id {raw_id:?}")))?;
    let fields = parts.next().unwrap_or(Value::Null);
    let views = if fields.is_null() {
        Err("entry was trimmed from the log".to_owned())
    } else {
        let flat: Vec<String> = fields
            .into_array()
            .into_iter()
            .map(|v| v.as_string().unwrap_or_default())
            .collect();
        let pairs = flat
            .chunks(2)
            .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
            .collect();
        decode_fields(pairs)
    };
    Ok(LogEntry { id, views })
}
