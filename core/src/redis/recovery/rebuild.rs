//! Restoring Redis from Postgres (`rebuild-redis`), and seeding window state directly (restores, benchmark
//! fills, tests).

use crate::batch::{EntryId, LogEntry};
use crate::domain::Window;
use crate::keys::{Partition, CONSUMER_GROUP};
use crate::redis::connection::client::{Route, Value, ValueExt};
use crate::redis::{HistoryFeed, Recovery, Result, Shared, StepPlan, StoreError, WindowApplier};
use crate::slices::{self, retire_target};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The consumer a rebuild redoes the applied entries as.
const REDO_CONSUMER: &str = "rebuild";

/// What the workers had applied of a partition's log: every entry through `through` but those `pending`; and
/// the late stream's newest entry then (0-0: empty; `None`: not recorded), so that a rerun knows which late
/// entries an interrupted redo wrote.
struct Applied {
    through: EntryId,
    pending: HashSet<EntryId>,
    late_before: Option<EntryId>,
}

/// Minute rows and totals with the waiting late views added.
type LateMerged = (BTreeMap<i64, Vec<(String, u64)>>, Vec<(String, u64)>);

impl Recovery {
    /// Replaces partition `p`'s counts with what Postgres holds (`rebuild-redis`): minute buckets of the day
    /// window's span, the hour and day windows as their sums, the all-time window, and cursors at `now_ms`.
    /// The minute window is left empty (Postgres has minutes, not 5-second slices): the log replay refills it.
    /// The log itself is kept; its consumer group restarts right after `replay_after` (the checkpoint), or at
    /// the log's start when the partition has no checkpoint. Safe to run again after an interruption.
    ///
    /// Back-dated entries past the checkpoint may be in Postgres already (in a minute's bucket when it was
    /// written, or added from the late stream) or in the late stream, waiting: so the late views after
    /// `late_through` of minutes through the checkpoint count as Postgres's own, the later ones are dropped,
    /// and the entries the workers had applied past the checkpoint are redone here, without their views of
    /// minutes through the checkpoint. The workers then take the log from where they had left it.
    pub async fn restore_partition(
        &self,
        p: Partition,
        minutes: &BTreeMap<i64, Vec<(String, u64)>>,
        totals: &[(String, u64)],
        now_ms: i64,
        replay_after: Option<EntryId>,
        late_through: Option<EntryId>,
    ) -> Result<()> {
        let k = &self.keys;
        let written_through = replay_after.map(|id| slices::minute_of(id.ms));
        let applied = self.applied_log(p).await?;
        let late = self
            .take_late(
                p,
                late_through,
                written_through,
                applied.as_ref().and_then(|a| a.late_before),
                minutes,
                totals,
            )
            .await?;
        let (minutes, totals) = match &late {
            Some((m, t)) => (m, t.as_slice()),
            None => (minutes, totals),
        };
        // Clear everything of the partition but its log, its late views not yet in Postgres, the source
        // offsets its log has taken (without them a Kafka consumer's replay would log records again) and what
        // the workers had applied.
        let kept = [k.log(p), k.late(p), k.source_offsets(p), k.replay(p)];
        let doomed: Vec<String> = self
            .scan_partition(p, &k.partition_pattern(p))
            .await?
            .into_iter()
            .filter(|key| !kept.contains(key))
            .collect();
        for chunk in doomed.chunks(1000) {
            let _: i64 = self.on_first_key("DEL", chunk.to_vec()).await?;
        }
        let hour = slices::spec(Window::Hour).expect("hour slices");
        let day = slices::spec(Window::Day).expect("day slices");
        let (hour_from, day_from) = (retire_target(hour, now_ms), retire_target(day, now_ms));
        let mut hour_sum: HashMap<&str, u64> = HashMap::new();
        let mut day_sum: HashMap<&str, u64> = HashMap::new();
        for (&minute, rows) in minutes {
            if minute <= day_from || rows.is_empty() {
                continue;
            }
            self.seed_sealed_minute(p, minute, rows).await?;
            for (v, n) in rows {
                *day_sum.entry(v).or_default() += n;
                if minute > hour_from {
                    *hour_sum.entry(v).or_default() += n;
                }
            }
        }
        self.seed_window(p, Window::Hour, hour_sum).await?;
        self.seed_window(p, Window::Day, day_sum).await?;
        self.seed_window(p, Window::All, totals.iter().map(|(v, n)| (v.as_str(), *n)))
            .await?;
        // Replayed entries after the checkpoint belong to slices newer than these cursors, so they are added;
        // anything at or before the checkpoint is already in the restored sums. Without a checkpoint Postgres
        // holds nothing of the partition, so the whole surviving log is replayed.
        let replay_ms = replay_after.map_or(0, |id| id.ms + 1);
        let minute_cursor = slices::slice5_of(replay_ms) - 1;
        let minute_cursor = minute_cursor.max(retire_target(
            slices::spec(Window::Minute).expect("minute slices"),
            now_ms,
        ));
        let mut cursors = vec![
            k.cursors(p),
            "minute".into(),
            minute_cursor.to_string(),
            "hour".into(),
            hour_from.to_string(),
            "day".into(),
            day_from.to_string(),
        ];
        // Every minute through the checkpoint is in Postgres: closed, so that the day window never hands the
        // restored minutes to the late stream (they would be written twice). Without a checkpoint none is
        // closed (-1), and history is kept from here as on a new deployment (`ensure_log_groups`).
        let snapshot = replay_after.map_or(-1, |id| slices::minute_of(id.ms));
        cursors.extend(["snapshot".into(), snapshot.to_string()]);
        let _: Value = self.on_first_key("HSET", cursors).await?;
        // Restart the consumer group after the checkpoint, dropping its pending list: every entry after the
        // checkpoint is delivered again exactly once (workers must be stopped meanwhile).
        let log = k.log(p);
        let _ = self.xgroup("DESTROY", &log, &[]).await;
        let start = replay_after.map_or_else(|| "0".to_owned(), |id| id.to_string());
        self.create_group(log, start).await?;
        if let Some(applied) = applied {
            self.redo_applied(p, &applied, written_through).await?;
        }
        let _: i64 = self.on_first_key("DEL", vec![k.replay(p)]).await?;
        Ok(())
    }

    /// What the workers had applied of partition `p`'s log: as saved by an interrupted rebuild, else read from
    /// the consumer group and saved (the restore below recreates the group). `None` without a group.
    async fn applied_log(&self, p: Partition) -> Result<Option<Applied>> {
        let key = self.keys.replay(p);
        let saved: HashMap<String, String> =
            self.on_first_key("HGETALL", vec![key.clone()]).await?;
        if let Some(through) = saved.get("through").and_then(|s| EntryId::parse(s)) {
            let pending = saved
                .get("pending")
                .map(|s| s.split(',').filter_map(EntryId::parse).collect())
                .unwrap_or_default();
            // Missing in a state saved by an older build: then nothing is set apart.
            let late_before = saved.get("late").and_then(|s| EntryId::parse(s));
            return Ok(Some(Applied {
                through,
                pending,
                late_before,
            }));
        }
        let state = match self.group_state(p).await {
            Err(e) if e.is_missing_group() => return Ok(None),
            other => other?,
        };
        let Some(through) = state.last_delivered else {
            return Ok(None);
        };
        let log = self.keys.log(p);
        let reply: Vec<Value> = self
            .on_first_key(
                "XPENDING",
                vec![
                    log,
                    CONSUMER_GROUP.into(),
                    "-".into(),
                    "+".into(),
                    state.pending.max(1).to_string(),
                ],
            )
            .await?;
        let pending: HashSet<EntryId> = reply
            .into_iter()
            .filter_map(|e| e.into_array().into_iter().next())
            .filter_map(|v| v.as_string())
            .filter_map(|s| EntryId::parse(&s))
            .collect();
        let listed: Vec<String> = pending.iter().map(EntryId::to_string).collect();
        let newest_late: Vec<Value> = self
            .on_first_key(
                "XREVRANGE",
                vec![
                    self.keys.late(p),
                    "+".into(),
                    "-".into(),
                    "COUNT".into(),
                    "1".into(),
                ],
            )
            .await?;
        // 0-0 for an empty stream: every late entry after it is then the redo's.
        let late_before = newest_late
            .into_iter()
            .filter_map(|e| e.into_array().into_iter().next())
            .filter_map(|v| v.as_string())
            .find_map(|s| EntryId::parse(&s))
            .unwrap_or(EntryId { ms: 0, seq: 0 });
        let _: Value = self
            .on_first_key(
                "HSET",
                vec![
                    key,
                    "through".into(),
                    through.to_string(),
                    "pending".into(),
                    listed.join(","),
                    "late".into(),
                    late_before.to_string(),
                ],
            )
            .await?;
        Ok(Some(Applied {
            through,
            pending,
            late_before: Some(late_before),
        }))
    }

    /// Partition `p`'s late views not yet in Postgres (after `late_through`): those of minutes through
    /// `written_through` are added to `minutes` and `totals` (returned, when there are any), as Postgres will
    /// hold them; the others are deleted, as their entries are past the checkpoint and the replay logs them
    /// again (an entry's event time is never after its id). So are those after `redone_after`: an interrupted
    /// rebuild's redo wrote them, and this one's redo writes them again.
    async fn take_late(
        &self,
        p: Partition,
        late_through: Option<EntryId>,
        written_through: Option<i64>,
        redone_after: Option<EntryId>,
        minutes: &BTreeMap<i64, Vec<(String, u64)>>,
        totals: &[(String, u64)],
    ) -> Result<Option<LateMerged>> {
        const BATCH: usize = 10_000;
        let mut after = late_through.unwrap_or(EntryId { ms: 0, seq: 0 });
        let mut rows: BTreeMap<i64, HashMap<String, u64>> = BTreeMap::new();
        let mut dropped = Vec::new();
        loop {
            let entries = HistoryFeed::new(self.share())
                .read_late(p, after, BATCH)
                .await?;
            for e in &entries {
                // Written by an interrupted run's redo, which this run redoes: not Postgres's.
                let redone = redone_after.is_some_and(|before| e.id > before);
                if !redone && written_through.is_some_and(|w| e.minute <= w) {
                    let row = rows.entry(e.minute).or_default();
                    for (v, n) in &e.views {
                        *row.entry(v.as_str().to_owned()).or_default() += n;
                    }
                } else {
                    dropped.push(e.id.to_string());
                }
            }
            match entries.last() {
                Some(last) if entries.len() == BATCH => after = last.id,
                _ => break,
            }
        }
        for chunk in dropped.chunks(1000) {
            let mut args = vec![self.keys.late(p)];
            args.extend(chunk.iter().cloned());
            let _: i64 = self.on_first_key("XDEL", args).await?;
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let mut all: HashMap<String, u64> = totals.iter().cloned().collect();
        let mut merged = minutes.clone();
        for (minute, views) in rows {
            let mut row: HashMap<String, u64> = merged
                .remove(&minute)
                .unwrap_or_default()
                .into_iter()
                .collect();
            for (v, n) in views {
                *all.entry(v.clone()).or_default() += n;
                *row.entry(v).or_default() += n;
            }
            merged.insert(minute, row.into_iter().collect());
        }
        Ok(Some((merged, all.into_iter().collect())))
    }

    /// Redoes the entries of partition `p`'s log that the workers had applied past the checkpoint, as one
    /// consumer from the restarted group, up to the last one delivered then: their views of minutes through
    /// `written_through` are in Postgres or the late stream already and are left out; the rest counts as it
    /// did. Entries then pending (delivered, never applied) count whole.
    async fn redo_applied(
        &self,
        p: Partition,
        applied: &Applied,
        written_through: Option<i64>,
    ) -> Result<()> {
        let applier = WindowApplier::new(self.share());
        loop {
            // An entry the workers had applied is redone only where Postgres does not hold its minute yet.
            let counts = |e: &LogEntry| {
                let redone = e.id <= applied.through && !applied.pending.contains(&e.id);
                !(redone && written_through.is_some_and(|w| slices::minute_of(e.event_ms) <= w))
            };
            let step = applier
                .step_counting(p, REDO_CONSUMER, 1000, StepPlan::default(), counts)
                .await?;
            if step.not_owned {
                // Only a worker claiming them could: rebuild-redis runs with the workers stopped.
                return Err(StoreError::Reply(format!(
                    "rebuild: another consumer took partition {p}'s log entries being redone; stop the \
                     ingest workers and run rebuild-redis again"
                )));
            }
            match step.last {
                Some(last) if last < applied.through => {}
                _ => break,
            }
        }
        // Everything it read is acknowledged: drop it from the group, so that it does not look like a
        // running worker to the next rebuild-redis.
        self.xgroup("DELCONSUMER", &self.keys.log(p), &[REDO_CONSUMER])
            .await?;
        Ok(())
    }
}

impl Shared {
    /// Every key of partition `p` matching a full SCAN pattern (scanned on the node that owns the partition).
    pub(in crate::redis) async fn scan_partition(
        &self,
        p: Partition,
        pattern: &str,
    ) -> Result<Vec<String>> {
        self.scan(Route::Key(self.keys.log(p)), pattern).await
    }

    /// Every key matching a full SCAN pattern on the node `route` names.
    pub(in crate::redis) async fn scan(&self, route: Route, pattern: &str) -> Result<Vec<String>> {
        let mut cursor = "0".to_owned();
        let mut found = Vec::new();
        loop {
            let mut scan = ::redis::cmd("SCAN");
            scan.arg(&cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (String, Vec<String>) = self
                .retry_not_run(|| self.query_routed(&scan, route.clone()))
                .await?;
            found.extend(keys);
            if next == "0" {
                return Ok(found);
            }
            cursor = next;
        }
    }
}
