//! What only the benchmark needs (behind core's `bench` feature, out of the services' store API): the naive
//! baseline's writes, the card's union query, and measurements of Redis's time and memory.

use crate::domain::{RankedVideo, TopK, Window};
use crate::keys::hash_slot;
use crate::redis::connection::client::Route;
use crate::redis::writer::primary_of;
use crate::redis::Info;
use crate::redis::{Result, Shared};
use crate::sealed;
use ::redis::FromRedisValue;

use super::store::handle;

handle!(
    /// The benchmark's baselines and measurements (feature `bench`).
    Measures, store.measures
);

impl Measures {
    /// The naive ingest baseline: one ZINCRBY per view into every sorted set in `keys`, pipelined, with no log
    /// and no aggregation.
    pub async fn naive_increment(&self, keys: &[String], videos: &[&str]) -> Result<()> {
        let mut pipe = ::redis::pipe();
        for video in videos {
            for key in keys {
                pipe.zincr(key.as_str(), *video, 1).ignore();
            }
        }
        // The baseline's keys share the `{baseline}` tag: one node.
        let node = keys.first().cloned().unwrap_or_default();
        self.conn.query_pipeline(&pipe, Route::Key(node)).await
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
        let _: i64 = self.on_first_key("ZUNIONSTORE", args).await?;
        let top = self.range_rev(scratch.clone(), k).await;
        let _: i64 = self.on_first_key("DEL", vec![scratch]).await?;
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

    /// Calls and microseconds of every command since the server started (INFO commandstats), summed over
    /// the primaries. A script's own commands are counted in their own rows as well as in EVALSHA's.
    pub async fn command_stats(&self) -> Result<std::collections::BTreeMap<String, (u64, u64)>> {
        let mut out = std::collections::BTreeMap::new();
        for node in self.primaries().await? {
            let text: String = self
                .on_node(node, "INFO", vec!["commandstats".to_owned()])
                .await?;
            for line in text.lines() {
                let Some((name, stats)) = line.trim().split_once(':') else {
                    continue;
                };
                let Some(name) = name.strip_prefix("cmdstat_") else {
                    continue;
                };
                let field = |f: &str| {
                    stats
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                let entry = out.entry(name.to_owned()).or_insert((0, 0));
                entry.0 += field("calls");
                entry.1 += field("usec");
            }
        }
        Ok(out)
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

    /// CPU seconds each primary has used so far (one entry, named "", on a single node).
    pub async fn server_cpu_seconds_per_node(&self) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        for node in self.primaries().await? {
            let info: String = self
                .on_node(node.clone(), "INFO", vec!["cpu".to_owned()])
                .await?;
            let info = Info::parse(&info);
            let used = ["used_cpu_user", "used_cpu_sys"]
                .iter()
                .filter_map(|f| info.number(f))
                .sum();
            out.push((node.unwrap_or_default(), used));
        }
        Ok(out)
    }

    /// The primaries: every node of a cluster, or `None` for the one node.
    async fn primaries(&self) -> Result<Vec<Option<String>>> {
        if !self.cluster {
            return Ok(vec![None]);
        }
        let mut primaries: Vec<String> = self
            .slot_ranges(&self.keys.log(0))
            .await?
            .into_iter()
            .map(|r| r.addr)
            .collect();
        primaries.sort();
        primaries.dedup();
        Ok(primaries.into_iter().map(Some).collect())
    }

    /// The primary that owns each partition (the slot of its keys' `{p}` tag), in partition order, named as in
    /// [`Self::server_cpu_seconds_per_node`]: "" for every partition on one node.
    pub async fn partition_nodes(&self) -> Result<Vec<String>> {
        if !self.cluster {
            return Ok(vec![String::new(); usize::from(self.keys.partitions())]);
        }
        let ranges = self.slot_ranges(&self.keys.log(0)).await?;
        Ok(self
            .keys
            .all_partitions()
            .map(|p| {
                let slot = hash_slot(self.keys.log(p).as_bytes());
                primary_of(&ranges, slot).map_or_else(String::new, |r| r.addr.clone())
            })
            .collect())
    }

    /// Whether a replica has not yet acknowledged all of its primary's writes (INFO replication: a replica's
    /// `offset` below `master_repl_offset`): it is still replaying them, using a core (a replayed ZUNIONSTORE
    /// of the benchmark's baseline takes seconds). Replicas acknowledge once a second.
    pub async fn replicas_behind(&self) -> Result<bool> {
        for node in self.primaries().await? {
            let info: String = self
                .on_node(node, "INFO", vec!["replication".to_owned()])
                .await?;
            let info = Info::parse(&info);
            let primary = info.number("master_repl_offset").unwrap_or(0.0);
            let behind = info.replicas().iter().any(|r| (r.offset as f64) < primary);
            if behind {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A command on one node (`None`: the one node).
    async fn on_node<R: FromRedisValue>(
        &self,
        node: Option<String>,
        name: &'static str,
        args: Vec<String>,
    ) -> Result<R> {
        let mut cmd = ::redis::cmd(name);
        cmd.arg(args);
        let route = match node {
            Some(node) => Route::Node(node),
            None => Route::Key(self.keys.log(0)),
        };
        self.conn.query(&cmd, route).await
    }

    /// The numeric values of `fields` in `INFO section`, summed over the primaries.
    async fn server_info(&self, section: &str, fields: &[&str]) -> Result<Vec<f64>> {
        let mut sums = vec![0.0; fields.len()];
        for node in self.primaries().await? {
            let info: String = self.on_node(node, "INFO", vec![section.to_owned()]).await?;
            let info = Info::parse(&info);
            for (sum, field) in sums.iter_mut().zip(fields) {
                *sum += info.number(field).unwrap_or(0.0);
            }
        }
        Ok(sums)
    }
}

impl Measures {
    /// Bytes Redis uses for every window (its hash and its leader set, MEMORY USAGE with every element
    /// sampled) and how many (video, window) pairs they hold.
    pub async fn window_memory(&self) -> Result<(u64, u64)> {
        let (mut bytes, mut videos) = (0u64, 0u64);
        for p in self.keys.all_partitions() {
            for w in Window::ALL {
                bytes += self.memory_usage(self.keys.window(p, w)).await?;
                bytes += self.memory_usage(self.keys.leaders(p, w)).await?;
                let n: i64 = self
                    .on_first_key("HLEN", vec![self.keys.window(p, w)])
                    .await?;
                videos += n.max(0) as u64;
            }
        }
        Ok((bytes, videos))
    }

    /// Bytes Redis uses for the sealed minutes of the day window's tail, and how many (video, minute) pairs
    /// they hold.
    pub async fn sealed_minute_memory(&self) -> Result<(u64, u64)> {
        let (mut bytes, mut pairs) = (0u64, 0u64);
        for key in self
            .scan_everywhere(&self.keys.sealed_minute_pattern())
            .await?
        {
            bytes += self.memory_usage(key.clone()).await?;
            let blob: Option<String> = self.on_first_key("GET", vec![key]).await?;
            pairs += sealed::decode(blob.as_deref().unwrap_or("")).count() as u64;
        }
        Ok((bytes, pairs))
    }

    async fn memory_usage(&self, key: String) -> Result<u64> {
        let used: Option<i64> = self
            .on_key(
                "MEMORY",
                &key.clone(),
                vec!["USAGE".to_owned(), key, "SAMPLES".into(), "0".into()],
            )
            .await?;
        Ok(used.unwrap_or(0).max(0) as u64)
    }

    /// Every key under this deployment's prefix whose name matches `pattern` after the prefix (SCAN).
    pub async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>> {
        self.scan_everywhere(&self.keys.pattern(pattern)).await
    }

    /// Every key matching a full SCAN pattern, on every primary.
    async fn scan_everywhere(&self, pattern: &str) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for node in self.primaries().await? {
            let route = node.map_or_else(|| Route::Key(self.keys.log(0)), Route::Node);
            found.extend(self.scan(route, pattern).await?);
        }
        Ok(found)
    }

    /// Deletes every key under this deployment's prefix (benchmark clean-up; never used by the services).
    pub async fn delete_all_keys(&self) -> Result<u64> {
        let keys = self.keys_matching("*").await?;
        let mut deleted = 0;
        // One key per command: on a cluster the keys of one DEL must share a slot.
        for chunk in keys.chunks(1000) {
            let counts = futures::future::join_all(
                chunk
                    .iter()
                    .map(|key| self.on_first_key::<i64>("DEL", vec![key.clone()])),
            )
            .await;
            for n in counts {
                deleted += n?.max(0) as u64;
            }
        }
        Ok(deleted)
    }
}
