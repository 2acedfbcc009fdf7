//! Ranking reads for the API: the exact global top K of a window from the partitions' leader sets (and, in the
//! rare case one may hide part of it, that partition's window hash), and one video's counts.

use crate::domain::{RankedVideo, TopK, VideoId, Window};
use crate::keys::Partition;
use crate::ranking::{NextRead, TopKRead};
use crate::redis::connection::client::{Value, ValueExt};
use crate::redis::{Result, Shared, StoreError};
use std::collections::HashMap;

use super::store::handle;

handle!(
    /// The global top K and one video's counts: the API's handle.
    RankingReads, store.rankings
);

/// A global top K as [`RankingReads::top_read`] read it.
#[derive(Debug, Clone)]
pub struct TopRead {
    pub ranking: Vec<RankedVideo>,
    /// Partitions whose window hash was read because their leader set might have hidden part of the top K.
    pub scanned: usize,
}

impl RankingReads {
    /// The global top `k` of `window`, exact: the partitions' leader sets read (with their thresholds) only as
    /// far as the top K can reach into each, then merged; a partition whose leader set may hide part of the top
    /// K (its threshold is above the K-th count read) has its window hash read for it. The steps are
    /// `ranking::TopKRead`'s.
    pub async fn top(&self, window: Window, k: TopK) -> Result<Vec<RankedVideo>> {
        Ok(self.top_read(window, k).await?.ranking)
    }

    /// [`Self::top`], and how many partitions' hashes it read (the benchmark reports how rare that is).
    pub async fn top_read(&self, window: Window, k: TopK) -> Result<TopRead> {
        let mut reads = TopKRead::new(k, usize::from(self.keys.partitions()));
        loop {
            match reads.next() {
                NextRead::Leaders { partitions, n } => {
                    let got = futures::future::try_join_all(
                        partitions
                            .iter()
                            .map(|&i| self.leaders_read(i as Partition, window, n)),
                    )
                    .await?;
                    for (i, (complete, list)) in partitions.into_iter().zip(got) {
                        reads.leaders(i, n, complete, list);
                    }
                }
                NextRead::Hashes(plan) => {
                    metrics::counter!("topk_ranking_scans_total", "window" => window.as_str())
                        .increment(plan.partitions.len() as u64);
                    tracing::debug!(
                        window = window.as_str(),
                        floor = plan.floor,
                        partitions = plan.partitions.len(),
                        "a leader set may hide part of the top k: reading its window hash"
                    );
                    let found = futures::future::try_join_all(
                        plan.partitions
                            .iter()
                            .map(|&i| self.counted_at_least(i as Partition, window, plan.floor)),
                    )
                    .await?;
                    for (i, list) in plan.partitions.into_iter().zip(found) {
                        reads.hash(i, plan.floor, list);
                    }
                }
                NextRead::Done => break,
            }
        }
        let scanned = reads.scanned();
        Ok(TopRead {
            ranking: reads.ranking(),
            scanned,
        })
    }

    /// The first `n` leaders of `window` on partition `p`, and the threshold at or above which every video of
    /// the partition is a leader, read in one transaction: a trim or a refill between two separate reads would
    /// pair the list with another moment's threshold. (A script would do as well, at several times the Redis
    /// CPU: it passes every member and score through Lua. It serves while the partition's slot moves between
    /// cluster nodes, when the transaction is refused: a script is one command, which follows the slot.)
    async fn leaders_read(
        &self,
        p: Partition,
        window: Window,
        n: usize,
    ) -> Result<(u64, Vec<RankedVideo>)> {
        let (set, state) = (self.keys.leaders(p, window), self.keys.leader_state(p));
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HGET")
            .arg(&state)
            .arg(format!("{}:complete", window.as_str()))
            .cmd("ZRANGE")
            .arg(&set)
            .arg(0)
            .arg(n as i64 - 1)
            .arg("REV")
            .arg("WITHSCORES");
        let replies = match self.transaction(&pipe, &set).await {
            Ok(replies) => replies,
            Err(e) if e.is_aborted_transaction() => {
                let args = vec![n.to_string(), window.as_str().to_owned()];
                self.eval(&self.scripts.leaders_read, vec![set, state], args)
                    .await?
            }
            Err(e) => return Err(e),
        };
        let mut replies = replies.into_iter();
        let (Some(complete), Some(members)) = (replies.next(), replies.next()) else {
            return Err(StoreError::Reply("a leaders read lost a reply".into()));
        };
        // No threshold yet: the window was never trimmed, every video is a leader.
        let complete = match complete.as_string() {
            None => 1,
            Some(text) => text
                .parse::<u64>()
                .map_err(|_| StoreError::Reply(format!("threshold {text:?} is not a count")))?,
        };
        Ok((complete, ranked(members.into_array())?))
    }

    /// Every video of `window` on partition `p` counted at or above `floor`, in ranking order: the window's
    /// hash read with `HSCAN`, for a partition whose leader set stops above `floor`. The scan's steps are
    /// separate reads, like the partitions' lists: each count read is exact at its moment, and the caller
    /// checks the merge again on what it got. (A slot that moves to another node during the scan would make the
    /// cursor meaningless there: that one read could miss videos; see docs/known-limits.md.)
    async fn counted_at_least(
        &self,
        p: Partition,
        window: Window,
        floor: u64,
    ) -> Result<Vec<RankedVideo>> {
        let key = self.keys.window(p, window);
        let mut cursor = "0".to_owned();
        // By video: HSCAN may return a field twice (the hash changed between steps); the later count wins.
        let mut found: HashMap<String, u64> = HashMap::new();
        loop {
            let (next, fields): (String, Vec<(String, i64)>) = self
                .on_first_key(
                    "HSCAN",
                    vec![key.clone(), cursor, "COUNT".into(), "1000".into()],
                )
                .await?;
            for (video, n) in fields {
                if n >= 0 && n as u64 >= floor {
                    found.insert(video, n as u64);
                } else {
                    found.remove(&video);
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        Ok(crate::domain::rank(found))
    }

    /// One video's views in every window, from its partition.
    pub async fn video_counts(&self, video: &VideoId) -> Result<Vec<(Window, u64)>> {
        let p = self.keys.partition_of(video);
        let counts: Vec<Option<i64>> = futures::future::try_join_all(Window::ALL.map(|w| {
            self.on_first_key(
                "HGET",
                vec![self.keys.window(p, w), video.as_str().to_owned()],
            )
        }))
        .await?;
        Ok(Window::ALL
            .into_iter()
            .zip(counts)
            .map(|(w, n)| (w, n.unwrap_or(0).max(0) as u64))
            .collect())
    }
}

impl Shared {
    pub(in crate::redis) async fn range_rev(
        &self,
        key: String,
        k: Option<TopK>,
    ) -> Result<Vec<RankedVideo>> {
        let stop = k.map_or(-1, |k| k.get() as i64 - 1);
        let reply: Vec<Value> = self
            .on_first_key(
                "ZRANGE",
                vec![
                    key,
                    "0".into(),
                    stop.to_string(),
                    "REV".into(),
                    "WITHSCORES".into(),
                ],
            )
            .await?;
        ranked(reply)
    }
}

/// A `WITHSCORES` reply (member, score, member, score, ...) as ranked videos, in the reply's order.
fn ranked(reply: Vec<Value>) -> Result<Vec<RankedVideo>> {
    let mut out = Vec::with_capacity(reply.len() / 2);
    let mut it = reply.into_iter();
    while let (Some(member), Some(score)) = (it.next(), it.next()) {
        let video_id = member
            .as_string()
            .ok_or_else(|| StoreError::Reply("member is not text".into()))?;
        let views = score
            .as_string()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| StoreError::Reply("score is not a number".into()))?;
        out.push(RankedVideo {
            video_id,
            views: views as u64,
        });
    }
    Ok(out)
}
