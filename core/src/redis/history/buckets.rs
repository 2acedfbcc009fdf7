//! Slice and minute buckets read back: the closed minutes the snapshotter writes to Postgres, and the sums of
//! a window's slices that verification compares the maintained windows against.

use crate::domain::{RankedVideo, Window};
use crate::keys::Partition;
use crate::redis::{HistoryFeed, Result, StoreError};
use crate::slices::{self, window_slices};
use std::collections::HashMap;

impl HistoryFeed {
    /// Minutes of partition `p` that have a bucket, in `(after, before)`, oldest first.
    pub async fn bucket_minutes(&self, p: Partition, after: i64, before: i64) -> Result<Vec<i64>> {
        let found: Vec<String> = self
            .on_first_key(
                "ZRANGEBYSCORE",
                vec![
                    self.keys.minute_index(p),
                    format!("({after}"),
                    format!("({before}"),
                ],
            )
            .await?;
        Ok(found.iter().filter_map(|m| m.parse().ok()).collect())
    }

    /// Every video's views in one minute of partition `p` (open or sealed), most viewed first.
    pub async fn minute_counts(&self, p: Partition, minute: i64) -> Result<Vec<RankedVideo>> {
        let counts = self.slice_counts(p, Window::Hour, minute).await?;
        Ok(crate::domain::rank(counts))
    }

    /// The reference strategy, exact by definition: per partition, the sum of the window's slice buckets at
    /// `now_ms` (the card's union, done by the caller). Slow at scale (it is what the maintained windows
    /// avoid); used by tests and verification. The all-time window has no slices and is not supported here.
    pub async fn reference_counts(
        &self,
        p: Partition,
        window: Window,
        now_ms: i64,
    ) -> Result<HashMap<String, u64>> {
        let spec = slices::spec(window).ok_or_else(|| {
            StoreError::Reply("the all-time window has no slices to union".into())
        })?;
        let range = window_slices(spec, now_ms);
        // Only slices that have a bucket are indexed; reading the index spares 1,440 reads for a day.
        let found: Vec<i64> = self
            .on_first_key(
                "ZRANGEBYSCORE",
                vec![
                    self.keys.slice_index(p, window),
                    range.start().to_string(),
                    range.end().to_string(),
                ],
            )
            .await?;
        let mut sum: HashMap<String, u64> = HashMap::new();
        for slice in found {
            for (video, n) in self.slice_counts(p, window, slice).await? {
                *sum.entry(video).or_default() += n;
            }
        }
        Ok(sum)
    }

    /// Every video's views in one slice of `window`: its open lines plus, for minutes, its sealed blob.
    async fn slice_counts(
        &self,
        p: Partition,
        window: Window,
        slice: i64,
    ) -> Result<HashMap<String, u64>> {
        let k = &self.keys;
        let hash = k.slice_bucket(p, window, slice);
        let sealed = k.sealed_slice_bucket(p, window, slice);
        let flag = if sealed.is_some() { "1" } else { "0" };
        let keys = vec![hash.clone(), sealed.unwrap_or(hash)];
        let flat: Vec<String> = self
            .eval(&self.scripts.read_bucket, keys, vec![flag.to_owned()])
            .await?;
        Ok(flat
            .chunks(2)
            .filter_map(|c| Some((c[0].clone(), c.get(1)?.parse().ok()?)))
            .collect())
    }
}
