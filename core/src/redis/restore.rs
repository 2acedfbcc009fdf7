//! Restoring Redis from Postgres (`rebuild-redis`), and seeding window state directly (restores, benchmark
//! fills, tests).

use super::client::{Route, Value};
use super::{RedisStore, Result};
use crate::batch::EntryId;
use crate::domain::Window;
use crate::keys::{Partition, CONSUMER_GROUP};
use crate::sealed;
use crate::slices::{self, retire_target};
use std::collections::{BTreeMap, HashMap};

impl RedisStore {
    /// Replaces partition `p`'s counts with what Postgres holds (`rebuild-redis`): minute buckets of the day
    /// window's span, the hour and day windows as their sums, the all-time window, and cursors at `now_ms`.
    /// The minute window is left empty (Postgres has minutes, not 5-second slices): the log replay refills it.
    /// The log itself is kept; its consumer group restarts right after `replay_after` (the checkpoint), or at
    /// the log's start when the partition has no checkpoint. Safe to run again after an interruption.
    pub async fn restore_partition(
        &self,
        p: Partition,
        minutes: &BTreeMap<i64, Vec<(String, u64)>>,
        totals: &[(String, u64)],
        now_ms: i64,
        replay_after: Option<EntryId>,
    ) -> Result<()> {
        let k = &self.keys;
        // Clear everything of the partition but its log, its late views not yet in Postgres, and the source
        // offsets its log has taken (without them a Kafka consumer's replay would log records again).
        let kept = [k.log(p), k.late(p), k.source_offsets(p)];
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
            self.seed_sealed_minute(p, minute, rows.iter().map(|(v, n)| (v.as_str(), *n)))
                .await?;
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
        // restored minutes to the late stream (they would be written twice).
        if let Some(id) = replay_after {
            cursors.extend(["snapshot".into(), slices::minute_of(id.ms).to_string()]);
        }
        let _: Value = self.on_first_key("HSET", cursors).await?;
        // Restart the consumer group after the checkpoint, dropping its pending list: every entry after the
        // checkpoint is delivered again exactly once (workers must be stopped meanwhile).
        let log = k.log(p);
        let _: Result<Value, _> = self
            .on_key(
                "XGROUP",
                &log,
                vec!["DESTROY".to_owned(), log.clone(), CONSUMER_GROUP.into()],
            )
            .await;
        let start = replay_after.map_or_else(|| "0".to_owned(), |id| id.to_string());
        self.create_group(log, start).await
    }

    /// Replaces `window` of partition `p` with `counts`: its hash, its leader set and thresholds (restores,
    /// benchmark fills). Leaders are every video when they fit under the cap, else those at or above the
    /// KEEP-th count, which is then the threshold.
    pub async fn seed_window<'a>(
        &self,
        p: Partition,
        window: Window,
        counts: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<()> {
        let k = &self.keys;
        let (hash, set) = (k.window(p, window), k.leaders(p, window));
        let _: i64 = self
            .on_first_key("DEL", vec![hash.clone(), set.clone()])
            .await?;
        let mut counts: Vec<(&str, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        for chunk in counts.chunks(1000) {
            let mut args = vec![hash.clone()];
            for (video, n) in chunk {
                args.push((*video).to_owned());
                args.push(n.to_string());
            }
            let _: i64 = self.on_first_key("HSET", args).await?;
        }
        let mut threshold = 1;
        if counts.len() > self.caps.max as usize {
            counts.sort_unstable_by_key(|(_, n)| std::cmp::Reverse(*n));
            threshold = counts[self.caps.keep as usize - 1].1;
            counts.retain(|(_, n)| *n >= threshold);
        }
        self.zadd_chunks(set, counts.into_iter()).await?;
        let name = window.as_str();
        let _: Value = self
            .on_first_key(
                "HSET",
                vec![
                    k.leader_state(p),
                    format!("{name}:enter"),
                    threshold.to_string(),
                    format!("{name}:complete"),
                    threshold.to_string(),
                ],
            )
            .await?;
        let _: i64 = self
            .on_first_key("HDEL", vec![k.leader_state(p), format!("{name}:fill")])
            .await?;
        Ok(())
    }

    /// Writes one closed minute of partition `p` as a sealed blob and indexes it (restores, benchmark fills).
    pub async fn seed_sealed_minute<'a>(
        &self,
        p: Partition,
        minute: i64,
        counts: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<()> {
        let k = &self.keys;
        let _: Value = self
            .on_first_key(
                "SET",
                vec![k.sealed_minute(p, minute), sealed::encode(counts)],
            )
            .await?;
        let _: Value = self
            .on_first_key(
                "ZADD",
                vec![k.minute_index(p), minute.to_string(), minute.to_string()],
            )
            .await?;
        Ok(())
    }

    /// Adds `(member, score)` pairs to a sorted set, 1000 per command (leader sets, benchmark baselines).
    pub async fn zadd_chunks<'a>(
        &self,
        key: String,
        members: impl Iterator<Item = (&'a str, u64)>,
    ) -> Result<()> {
        let mut args = vec![key.clone()];
        for (video, n) in members {
            args.push(n.to_string());
            args.push(video.to_owned());
            if args.len() >= 2001 {
                let _: i64 = self
                    .on_first_key("ZADD", std::mem::replace(&mut args, vec![key.clone()]))
                    .await?;
            }
        }
        if args.len() > 1 {
            let _: i64 = self.on_first_key("ZADD", args).await?;
        }
        Ok(())
    }

    /// Every key of partition `p` matching a full SCAN pattern (scanned on the node that owns the partition).
    pub(super) async fn scan_partition(&self, p: Partition, pattern: &str) -> Result<Vec<String>> {
        self.scan(Route::Key(self.keys.log(p)), pattern).await
    }

    /// Every key matching a full SCAN pattern on the node `route` names.
    pub(super) async fn scan(&self, route: Route, pattern: &str) -> Result<Vec<String>> {
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
