//! What only the benchmark needs (behind core's `bench` feature, out of the services' store API): the naive
//! baseline's writes, the card's union query, and measurements of Redis's time and memory.

use super::{RedisStore, Result};
use crate::domain::{RankedVideo, TopK, Window};
use crate::sealed;
use fred::cmd;
use fred::prelude::*;

impl RedisStore {
    /// The naive ingest baseline: one ZINCRBY per view into every sorted set in `keys`, pipelined, with no log
    /// and no aggregation.
    pub async fn naive_increment(&self, keys: &[String], videos: &[&str]) -> Result<()> {
        let pipe = self.client.pipeline();
        for video in videos {
            for key in keys {
                let _: () = pipe.zincrby(key.as_str(), 1.0, *video).await?;
            }
        }
        let _: Vec<Value> = pipe.all().await?;
        Ok(())
    }

    /// ZUNIONSTORE of `sources` into `scratch`, then its top `k` (all members when `None`); `scratch` is
    /// deleted afterwards. The card's query strategy, kept as the reference and the benchmark's baseline.
    pub async fn union_top(
        &self,
        scratch: String,
        sources: &[String],
        k: Option<TopK>,
    ) -> Result<Vec<RankedVideo>> {
        let mut args = vec![scratch.clone(), sources.len().to_string()];
        args.extend(sources.iter().cloned());
        let _: i64 = self.client.custom(cmd!("ZUNIONSTORE"), args).await?;
        let top = self.range_rev(scratch.clone(), k).await;
        let _: i64 = self.client.del(scratch).await?;
        top
    }

    /// CPU seconds the Redis server has used so far (user + system, from INFO cpu): the benchmark divides its
    /// growth by the views applied to get Redis time per view.
    pub async fn server_cpu_seconds(&self) -> Result<f64> {
        Ok(self
            .server_info("cpu", &["used_cpu_user", "used_cpu_sys"])
            .await?
            .into_iter()
            .sum())
    }

    /// Whether Redis is writing a snapshot or rewriting its append-only file (a forked child using a core).
    pub async fn persistence_busy(&self) -> Result<bool> {
        let busy = self
            .server_info(
                "persistence",
                &["rdb_bgsave_in_progress", "aof_rewrite_in_progress"],
            )
            .await?;
        Ok(busy.into_iter().any(|v| v > 0.0))
    }

    /// The numeric values of `fields` in `INFO section`.
    async fn server_info(&self, section: &str, fields: &[&str]) -> Result<Vec<f64>> {
        let info: String = self
            .client
            .custom(cmd!("INFO"), vec![section.to_owned()])
            .await?;
        Ok(info
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| fields.contains(k))
            .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
            .collect())
    }

    /// Bytes Redis uses for every window (its hash and its leader set, MEMORY USAGE with every element
    /// sampled) and how many (video, window) pairs they hold.
    pub async fn window_memory(&self) -> Result<(u64, u64)> {
        let (mut bytes, mut videos) = (0u64, 0u64);
        for p in self.keys.all_partitions() {
            for w in Window::ALL {
                bytes += self.memory_usage(self.keys.window(p, w)).await?;
                bytes += self.memory_usage(self.keys.leaders(p, w)).await?;
                let n: i64 = self.client.hlen(self.keys.window(p, w)).await?;
                videos += n.max(0) as u64;
            }
        }
        Ok((bytes, videos))
    }

    /// Bytes Redis uses for the sealed minutes of the day window's tail, and how many (video, minute) pairs
    /// they hold.
    pub async fn sealed_minute_memory(&self) -> Result<(u64, u64)> {
        let (mut bytes, mut pairs) = (0u64, 0u64);
        for key in self.scan(&self.keys.sealed_minute_pattern()).await? {
            bytes += self.memory_usage(key.clone()).await?;
            let blob: Option<String> = self.client.get(key).await?;
            pairs += sealed::decode(blob.as_deref().unwrap_or("")).count() as u64;
        }
        Ok((bytes, pairs))
    }

    async fn memory_usage(&self, key: String) -> Result<u64> {
        let used: Option<i64> = self
            .client
            .custom(
                cmd!("MEMORY"),
                vec!["USAGE".to_owned(), key, "SAMPLES".into(), "0".into()],
            )
            .await?;
        Ok(used.unwrap_or(0).max(0) as u64)
    }

    /// Every key under this deployment's prefix whose name matches `pattern` after the prefix (SCAN).
    pub async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>> {
        self.scan(&self.keys.pattern(pattern)).await
    }

    /// Deletes every key under this deployment's prefix (benchmark clean-up; never used by the services).
    pub async fn delete_all_keys(&self) -> Result<u64> {
        let keys = self.keys_matching("*").await?;
        let mut deleted = 0;
        for chunk in keys.chunks(1000) {
            let n: i64 = self.client.del(chunk.to_vec()).await?;
            deleted += n.max(0) as u64;
        }
        Ok(deleted)
    }
}
