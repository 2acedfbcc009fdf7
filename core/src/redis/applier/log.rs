//! The log: one Redis stream per partition and the workers' consumer group on it. Reading and claiming
//! entries, trimming what is applied (appending: `append.rs`; where the group stands: `group.rs`).

use crate::batch::{EntryId, LogEntry};
use crate::keys::{Partition, CONSUMER_GROUP};
use crate::redis::connection::client::{Value, ValueExt};
use crate::redis::{Result, Shared, StoreError, WindowApplier};
use std::time::Duration;

/// How long late views wait in Redis for a snapshotter before they are dropped.
pub const LATE_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// Which log entries a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRead {
    /// Entries never delivered to any worker.
    New,
    /// Entries delivered to this consumer and not yet acknowledged (after a restart or a lost race).
    OwnPending,
}

impl WindowApplier {
    /// Creates the consumer group on every partition's log (and the log itself), if missing, after checking
    /// the deployment's layout ([`crate::redis::RedisStore::check_layout`]), and marks every partition as keeping history
    /// from now on.
    pub async fn ensure_log_groups(&self) -> Result<()> {
        self.check_layout().await?;
        for p in self.keys.all_partitions() {
            match self.create_group(self.keys.log(p), "0".into()).await {
                Ok(()) => {}
                Err(StoreError::Redis(e)) if e.to_string().contains("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
            self.keep_history(p).await?;
        }
        Ok(())
    }

    /// Gives partition `p` a snapshot cursor (-1: no minute closed yet) if it has none. From then on every view
    /// the windows do not carry to history (one behind the day window, or a minute retired from it before the
    /// snapshotter closed it) is kept in the late stream for the snapshotter, even before its first minute
    /// job: a backfill older than a day on a new deployment reaches history. Without the cursor such views
    /// were kept for nobody.
    async fn keep_history(&self, p: Partition) -> Result<()> {
        let cursors = self.keys.cursors(p);
        let _: i64 = self
            .on_key("HSETNX", &cursors, vec![cursors.as_str(), "snapshot", "-1"])
            .await?;
        Ok(())
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
        let log = self.keys.log(p);
        let reply: Value = self
            .on_key(
                "XREADGROUP",
                &log,
                vec![
                    "GROUP".to_owned(),
                    CONSUMER_GROUP.into(),
                    consumer.into(),
                    "COUNT".into(),
                    count.to_string(),
                    "STREAMS".into(),
                    log.clone(),
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
            .on_first_key(
                "XAUTOCLAIM",
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
        let deleted: Vec<String> = parts.next().map(Value::into_strings).unwrap_or_default();
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
    /// views older than `LATE_RETENTION` that no snapshotter took (a backstop: the snapshotter trims what it
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

impl Shared {
    /// `XGROUP <subcommand> <log> <group> <args>...` on the log's one consumer group.
    pub(in crate::redis) async fn xgroup(
        &self,
        subcommand: &str,
        log: &str,
        args: &[&str],
    ) -> Result<Value> {
        let mut all = vec![subcommand, log, CONSUMER_GROUP];
        all.extend_from_slice(args);
        self.on_key("XGROUP", log, all).await
    }

    /// Creates the consumer group on `log` starting after `start` (and the log itself when missing).
    pub(in crate::redis) async fn create_group(&self, log: String, start: String) -> Result<()> {
        self.xgroup("CREATE", &log, &[&start, "MKSTREAM"]).await?;
        Ok(())
    }
}

impl Shared {
    /// Deletes the entries of the stream at `key` older than `min_id` (XTRIM MINID); returns how many.
    pub(in crate::redis) async fn trim_before(&self, key: String, min_id: String) -> Result<u64> {
        let removed: i64 = self
            .on_key("XTRIM", &key.clone(), vec![key, "MINID".into(), min_id])
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
    let fields = parts.next().unwrap_or(Value::Nil);
    if fields.is_null() {
        return Ok(LogEntry {
            id,
            event_ms: id.ms,
            views: Err("entry was trimmed from the log".to_owned()),
        });
    }
    let flat: Vec<String> = fields
        .into_array()
        .into_iter()
        .map(|v| v.as_string().unwrap_or_default())
        .collect();
    let pairs = flat
        .chunks(2)
        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
        .collect();
    Ok(LogEntry::decode(id, pairs))
}
