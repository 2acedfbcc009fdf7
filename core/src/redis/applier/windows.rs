//! The window scripts: apply an aggregated batch with its acknowledgement, retire slices that left a
//! window (refilling its leader set where needed), and seal closed minutes. Each runs on one partition.

use crate::aggregate::AggregatedBatch;
use crate::batch::EntryId;
use crate::domain::Window;
use crate::keys::{Partition, CONSUMER_GROUP};
use crate::redis::{Result, StoreError, WindowApplier};
use crate::slices::{self, minute_of, retire_target};

/// What became of an apply call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The batch was counted and its entries acknowledged, in one step.
    Applied { views: u64 },
    /// Another worker claimed at least one entry meanwhile; nothing was changed.
    NotOwned,
}

/// How many leaders each window keeps beside its hash (`lua/leaders.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderCaps {
    /// Leaders that must stay at or above the threshold (unless every video of the window is one).
    pub min: u32,
    /// Leaders kept after a trim.
    pub keep: u32,
    /// Leaders that trigger a trim.
    pub max: u32,
}

impl LeaderCaps {
    /// Leader sets sized for one partition's share of the largest top K (`MAX_K`): at least 2 x K / P + 16
    /// leaders above the threshold (twice the share, and a margin for small shares), never more than K; a trim
    /// keeps half as many again once the set passes two and a half times as many. The ranking reads check that
    /// the partitions together hold the top K (`ranking::partitions_to_scan`) and read a partition's hash when
    /// they do not, so the size is a matter of cost, not of exactness. Every leader a batch touches is a
    /// sorted-set update, so a set of the whole K on every partition (what exactness per partition needed) made
    /// most views a leader update at P = 64; the share cut Redis time per view by a quarter at P = 16
    /// (BENCHMARKS.md).
    pub fn for_partitions(partitions: Partition) -> Self {
        let k = crate::domain::MAX_K as u32;
        let min = (2 * k)
            .div_ceil(u32::from(partitions.max(1)))
            .saturating_add(16)
            .min(k);
        Self {
            min,
            keep: 3 * min / 2,
            max: 5 * min / 2,
        }
    }

    fn args(self) -> [String; 3] {
        [
            self.min.to_string(),
            self.keep.to_string(),
            self.max.to_string(),
        ]
    }
}

/// Videos a refill step reads from a window's hash: short enough that Redis never blocks for long.
const FILL_STEP: u32 = 2_000;

impl WindowApplier {
    /// Applies an aggregated batch of partition `p` and acknowledges its entries, atomically (`lua/apply.lua`).
    pub async fn apply(
        &self,
        p: Partition,
        consumer: &str,
        batch: &AggregatedBatch,
    ) -> Result<ApplyOutcome> {
        if batch.ids.is_empty() {
            return Ok(ApplyOutcome::Applied { views: 0 });
        }
        let k = &self.keys;
        let mut keys = vec![k.log(p), k.cursors(p), k.leader_state(p)];
        keys.extend(Window::ALL.map(|w| k.window(p, w)));
        keys.extend(Window::ALL.map(|w| k.leaders(p, w)));
        keys.extend([
            k.slice5_index(p),
            k.minute_index(p),
            k.open_minutes(p),
            k.late(p),
        ]);
        let mut args = vec![CONSUMER_GROUP.to_owned(), consumer.to_owned()];
        args.extend(self.caps.args());
        // In ascending order: the script checks ownership over the ids' range in one call.
        let mut ids = batch.ids.clone();
        ids.sort_unstable();
        args.push(ids.len().to_string());
        args.extend(ids.iter().map(EntryId::to_string));
        args.push(batch.slices.len().to_string());
        for slice in &batch.slices {
            keys.push(k.slice5(p, slice.slice5));
            keys.push(k.minute(p, slice.minute));
            args.push(slice.slice5.to_string());
            args.push(slice.minute.to_string());
            args.push(crate::lines::encode(
                slice.increments.iter().map(|(v, n)| (v.as_str(), *n)),
            ));
            args.push(slice.increments.len().to_string());
            for (video, n) in &slice.increments {
                args.push(video.clone());
                args.push(n.to_string());
            }
        }
        let views: i64 = self.eval(&self.scripts.apply, keys, args).await?;
        Ok(match u64::try_from(views) {
            Ok(views) => ApplyOutcome::Applied { views },
            Err(_) => ApplyOutcome::NotOwned,
        })
    }

    /// Subtracts from `window` of partition `p` every slice that has left it at `now_ms`, each exactly once
    /// (`lua/retire.lua`), refilling the window's leader set first where a retirement needs it (`lua/fill.lua`).
    /// One script call per slice or refill step keeps each blocking step short. Returns the slices retired.
    pub async fn retire(&self, p: Partition, window: Window, now_ms: i64) -> Result<u32> {
        let Some(spec) = slices::spec(window) else {
            return Ok(0);
        };
        let k = &self.keys;
        let target = retire_target(spec, now_ms).to_string();
        // Minute slices serve only the minute window: deleted once retired. Minute buckets serve the hour and
        // day windows and history: the day window, their last user, deletes them, after handing a minute the
        // snapshotter has not closed yet to the late stream (`lua/retire.lua`).
        let (after, drop_from_index, hand_over) = match window {
            Window::Minute => ("del", "1", "0"),
            Window::Hour => ("0", "0", "0"),
            _ => ("del", "1", "1"),
        };
        let mut expected = String::new();
        let mut retired = 0;
        loop {
            let (bucket, sealed) = match expected.parse::<i64>() {
                Ok(slice) => (
                    k.slice_bucket(p, window, slice),
                    k.sealed_slice_bucket(p, window, slice),
                ),
                Err(_) => (k.slice_index(p, window), None),
            };
            let has_sealed = if sealed.is_some() { "1" } else { "0" };
            let frozen = match (window, expected.parse::<i64>()) {
                (Window::Day, Ok(minute)) => k.frozen_minute(p, minute),
                _ => bucket.clone(),
            };
            let keys = vec![
                k.cursors(p),
                k.leader_state(p),
                k.window(p, window),
                k.leaders(p, window),
                k.slice_index(p, window),
                bucket.clone(),
                sealed.unwrap_or(bucket),
                k.late(p),
                frozen,
            ];
            let mut args = vec![
                window.as_str().to_owned(),
                target.clone(),
                expected.clone(),
                after.into(),
                drop_from_index.into(),
                has_sealed.into(),
            ];
            args.extend(self.caps.args());
            args.push(hand_over.into());
            let (code, slice): (i64, String) = self.eval(&self.scripts.retire, keys, args).await?;
            match code {
                0 => return Ok(retired),
                1 => expected = slice,
                2 => {
                    retired += 1;
                    expected.clear();
                }
                3 => self.refill_leaders(p, window).await?,
                other => return Err(StoreError::Reply(format!("retire script answered {other}"))),
            }
        }
    }

    /// Retires, on every partition and sliding window, every slice that has left the window at `now_ms`.
    pub async fn retire_all(&self, now_ms: i64) -> Result<u32> {
        let mut retired = 0;
        for w in Window::SLIDING {
            retired += self.retire_window(w, now_ms).await?;
        }
        Ok(retired)
    }

    /// Retires, on every partition, every slice that has left `window` at `now_ms`.
    pub async fn retire_window(&self, window: Window, now_ms: i64) -> Result<u32> {
        let mut retired = 0;
        for p in self.keys.all_partitions() {
            retired += self.retire(p, window, now_ms).await?;
        }
        Ok(retired)
    }

    /// Runs the refill of `window`'s leader set on partition `p` to its end, one short step at a time.
    async fn refill_leaders(&self, p: Partition, window: Window) -> Result<()> {
        let k = &self.keys;
        let keys = vec![k.leader_state(p), k.window(p, window), k.leaders(p, window)];
        let mut args = vec![window.as_str().to_owned(), FILL_STEP.to_string()];
        args.extend(self.caps.args());
        let mut steps = 0u64;
        loop {
            // Each refill scans from the start: a cursor left by an earlier process may predate a Redis restart.
            let restart = if steps == 0 { "1" } else { "0" };
            let mut step_args = args.clone();
            step_args.push(restart.to_owned());
            let more: i64 = self
                .eval(&self.scripts.fill, keys.clone(), step_args)
                .await?;
            steps += 1;
            if more == 0 {
                tracing::debug!(
                    partition = p,
                    window = window.as_str(),
                    steps,
                    "leader set refilled"
                );
                return Ok(());
            }
        }
    }

    /// Seals partition `p`'s open minutes before `before_minute` (`lua/seal.lua`): each minute's appended
    /// lines become one packed blob. Returns the minutes sealed.
    pub async fn seal_minutes(&self, p: Partition, before_minute: i64) -> Result<u32> {
        let k = &self.keys;
        let open: Vec<String> = self
            .on_first_key(
                "ZRANGEBYSCORE",
                vec![
                    k.open_minutes(p),
                    "-inf".to_owned(),
                    format!("({before_minute}"),
                ],
            )
            .await?;
        let mut sealed = 0;
        for minute in open.iter().filter_map(|m| m.parse::<i64>().ok()) {
            let _: i64 = self
                .eval(
                    &self.scripts.seal,
                    vec![
                        k.open_minutes(p),
                        k.minute(p, minute),
                        k.sealed_minute(p, minute),
                    ],
                    vec![minute.to_string()],
                )
                .await?;
            sealed += 1;
        }
        Ok(sealed)
    }

    /// Seals, on every partition, the minutes that ended at least a minute before `now_ms`. A worker that lags
    /// more than that only reopens the minute's open string: sealing again later merges it.
    pub async fn seal_all(&self, now_ms: i64) -> Result<u32> {
        let mut sealed = 0;
        for p in self.keys.all_partitions() {
            sealed += self.seal_minutes(p, minute_of(now_ms) - 1).await?;
        }
        Ok(sealed)
    }
}
