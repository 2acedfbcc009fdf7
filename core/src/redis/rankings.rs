//! Ranking reads for the API: the exact global top K of a window from the partitions' leader sets, and one
//! video's counts.

use crate::domain::{RankedVideo, TopK, VideoId, Window};
use crate::keys::Partition;
use crate::ranking::{first_read_len, lists_to_extend, merge_rankings};
use crate::redis::connection::client::{Value, ValueExt};
use crate::redis::{Result, Shared, StoreError};

use super::store::handle;

handle!(
    /// The global top K and one video's counts: the API's handle.
    RankingReads, store.rankings
);

impl RankingReads {
    /// The global top `k` of `window`, exact: the partitions' leader sets read (`ZRANGE ... REV`) only as far as
    /// the top K can reach into each, then merged.
    pub async fn top(&self, window: Window, k: TopK) -> Result<Vec<RankedVideo>> {
        // A short prefix of each partition's leaders first, then the whole top K of the few partitions that
        // could hide more of it (see `lists_to_extend`). Each partition's list is one read, as before; a list
        // read again replaces the first, and the check is repeated on what was read, so a ranking that moved
        // in between is still checked against the lists merged.
        let first = first_read_len(k, usize::from(self.keys.partitions()));
        let read = |p: Partition, n: usize| {
            self.range_rev(
                self.keys.leaders(p, window),
                Some(TopK::new(n).expect("1..=k")),
            )
        };
        let mut lists =
            futures::future::try_join_all(self.keys.all_partitions().map(|p| read(p, first)))
                .await?;
        let mut asked = vec![first; lists.len()];
        loop {
            let more = lists_to_extend(&lists, &asked, k);
            if more.is_empty() {
                break;
            }
            let again =
                futures::future::try_join_all(more.iter().map(|&i| read(i as Partition, k.get())))
                    .await?;
            for (i, list) in more.into_iter().zip(again) {
                lists[i] = list;
                asked[i] = k.get();
            }
        }
        Ok(merge_rankings(lists, k))
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
}
