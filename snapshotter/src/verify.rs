//! `verify`: checks Redis against itself and against Postgres, and reports every difference.
//!
//! - each sliding window of each partition equals the reference union of its slices at `now` (guarantee 2);
//! - the all-time window equals Postgres's `video_totals` plus the minutes Redis holds beyond the checkpoint
//!   (as frozen when the snapshotter closed them, else as they are) plus the late views not yet added;
//! - every window's leader set keeps the rules that make its top K exact ([`leader_problems`]);
//! - the period totals that ranges are read from equal `video_stats` wherever they cover it
//!   ([`period_problems`]).

use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use topk_core::db;
use topk_core::domain::{VideoId, Window};
use topk_core::redis::RedisStore;

/// One disagreement: where, which video, and the two counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The partition whose window disagrees.
    pub partition: u16,
    /// The window that disagrees.
    pub window: Window,
    /// The video whose counts differ.
    pub video_id: String,
    /// Its count in the window.
    pub redis: u64,
    /// The count the reference gives.
    pub expected: u64,
    /// What the window was compared with, as printed.
    pub against: &'static str,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "partition {} window {} video {}: redis {} but {} {}",
            self.partition, self.window, self.video_id, self.redis, self.against, self.expected
        )
    }
}

fn compare(
    out: &mut Vec<Difference>,
    partition: u16,
    window: Window,
    against: &'static str,
    redis: &HashMap<String, u64>,
    expected: &HashMap<String, u64>,
) {
    let ids: std::collections::BTreeSet<&String> = redis.keys().chain(expected.keys()).collect();
    for id in ids {
        let (r, e) = (
            redis.get(id).copied().unwrap_or(0),
            expected.get(id).copied().unwrap_or(0),
        );
        if r != e {
            out.push(Difference {
                partition,
                window,
                video_id: id.clone(),
                redis: r,
                expected: e,
                against,
            });
        }
    }
}

/// Every difference at `now_ms` (empty when Redis is consistent). Run it with the retirer caught up and the
/// snapshotter's last run finished, or in-flight work shows up as differences.
pub async fn verify(
    store: &RedisStore,
    pool: &PgPool,
    now_ms: i64,
) -> anyhow::Result<Vec<Difference>> {
    let keys = store.keys().clone();
    let mut out = Vec::new();
    let checkpoints = db::checkpoints(pool).await?;
    let mut totals: Vec<HashMap<String, u64>> =
        vec![HashMap::new(); usize::from(keys.partitions())];
    for (video, n) in db::totals(pool).await? {
        if let Ok(id) = VideoId::parse_stored(&video) {
            totals[usize::from(keys.partition_of(&id))].insert(video, n.max(0) as u64);
        }
    }
    for p in keys.all_partitions() {
        for w in Window::SLIDING {
            let (live, reference) = (
                store.recovery().window_counts(p, w).await?,
                store.history().reference_counts(p, w, now_ms).await?,
            );
            compare(
                &mut out,
                p,
                w,
                "the sum of its slices is",
                &live,
                &reference,
            );
        }
        let mut expected = std::mem::take(&mut totals[usize::from(p)]);
        let after = checkpoints
            .get(&p)
            .map_or(i64::MIN / 2, |c| c.minute_through);
        for minute in store
            .history()
            .bucket_minutes(p, after, i64::MAX / 2)
            .await?
        {
            // A closed minute's later views are in the late stream: its frozen copy is what history gets.
            let rows = if store.history().has_frozen_minute(p, minute).await? {
                store.history().frozen_minute_counts(p, minute).await?
            } else {
                store.history().minute_counts(p, minute).await?
            };
            for r in rows {
                *expected.entry(r.video_id).or_default() += r.views;
            }
        }
        let mut late_after = checkpoints
            .get(&p)
            .map_or(topk_core::batch::EntryId { ms: 0, seq: 0 }, |c| {
                c.late_through
            });
        loop {
            let late = store.history().read_late(p, late_after, 10_000).await?;
            let Some(last) = late.last().map(|e| e.id) else {
                break;
            };
            for e in &late {
                for (video, n) in &e.views {
                    *expected.entry(video.as_str().to_owned()).or_default() += n;
                }
            }
            if late.len() < 10_000 {
                break;
            }
            late_after = last;
        }
        let live = store.recovery().window_counts(p, Window::All).await?;
        compare(
            &mut out,
            p,
            Window::All,
            "Postgres plus unsnapshotted minutes and late views say",
            &live,
            &expected,
        );
    }
    Ok(out)
}

/// Every broken rule of a leader set, as `partition p window w: what` lines (empty when all are exact).
pub async fn leader_problems(store: &RedisStore) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for p in store.keys().all_partitions() {
        for w in Window::ALL {
            for problem in store.recovery().leader_violations(p, w).await? {
                out.push(format!("partition {p} window {w}: {problem}"));
            }
        }
    }
    Ok(out)
}

/// Every disagreement of the period totals (`video_stats_hourly`, `video_stats_daily`) with `video_stats`, as
/// lines (empty when they agree). Reads every covered period: a pass over the history.
pub async fn period_problems(pool: &PgPool) -> anyhow::Result<Vec<String>> {
    Ok(db::period_check::period_differences(pool)
        .await?
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// Groups differences per window for a short summary.
pub fn summary(diffs: &[Difference]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for d in diffs {
        *out.entry(d.window.as_str()).or_default() += 1;
    }
    out
}
