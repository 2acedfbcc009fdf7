//! Every use of the Redis client (fred) lives here, so the client can be swapped without touching the services.
//!
//! [`RedisStore`] speaks the domain: append a batch to the log, read and claim log entries, apply an aggregated
//! batch, retire slices, read rankings. Writes that must be atomic are Lua scripts (`lua/`), because a script
//! runs without interleaving and, unlike MULTI, can decide from what it reads (ownership, cursors).

use crate::batch::{
    decode_fields, encode_lines, lines_of, AggregatedBatch, EntryId, LogEntry, LINES_FIELD,
};
use crate::config::RedisConfig;
use crate::domain::{
    first_read_len, lists_to_extend, merge_rankings, RankedVideo, TopK, VideoId, Window,
};
use crate::keys::{KeySchema, Partition, CONSUMER_GROUP};
use crate::sealed;
use crate::slices::{self, retire_target, window_slices};
use fred::cmd;
use fred::prelude::*;
use fred::types::scripts::Script;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A Redis failure, as the services need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("unexpected reply from redis: {0}")]
    Reply(String),
    /// The append reached Redis after its caller's deadline (Redis was frozen or slow) and wrote nothing.
    #[error("redis ran the append after its deadline; nothing was written")]
    TooLate,
}

impl StoreError {
    /// The log's consumer group is missing: Redis lost its data (restarted empty) since the group was created.
    pub fn is_missing_group(&self) -> bool {
        matches!(self, StoreError::Redis(e) if e.details().contains("NOGROUP"))
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What became of an apply call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The batch was counted and its entries acknowledged, in one step.
    Applied { views: u64 },
    /// Another worker claimed at least one entry meanwhile; nothing was changed.
    NotOwned,
}

/// The consumer group's position on one partition's log.
#[derive(Debug, Clone, Copy, Default)]
struct GroupState {
    /// Entries delivered and not yet acknowledged.
    pending: u64,
    oldest_pending: Option<EntryId>,
    last_delivered: Option<EntryId>,
    /// Entries not yet delivered.
    lag: u64,
}

/// Which log entries a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRead {
    /// Entries never delivered to any worker.
    New,
    /// Entries delivered to this consumer and not yet acknowledged (after a restart or a lost race).
    OwnPending,
}

/// A script that uses the leader-set functions: `lua/leaders.lua` prepended to it (Redis scripts cannot share
/// code otherwise, short of Redis Functions).
macro_rules! window_script {
    ($file:literal) => {
        Script::from_lua(concat!(
            include_str!("lua/leaders.lua"),
            include_str!($file)
        ))
    };
}

/// How many leaders each window keeps beside its hash (`lua/leaders.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderCaps {
    /// Leaders that must stay at or above the threshold: the largest K a ranking can ask for.
    pub min: u32,
    /// Leaders kept after a trim.
    pub keep: u32,
    /// Leaders that trigger a trim.
    pub max: u32,
}

impl Default for LeaderCaps {
    /// Room for the largest K (1000) with a margin, so thresholds rarely move: a trim every ~1000 new leaders,
    /// a refill only when a retirement would leave fewer than 1000 above the threshold. Every leader a batch
    /// touches is a sorted-set update, a quarter of Redis's time under load: 1500 to 2500 leaders instead of
    /// 2000 to 4000 cut Redis time per view by ~7 % (BENCHMARKS.md).
    fn default() -> Self {
        Self {
            min: crate::domain::MAX_K as u32,
            keep: 3 * crate::domain::MAX_K as u32 / 2,
            max: 5 * crate::domain::MAX_K as u32 / 2,
        }
    }
}

impl LeaderCaps {
    fn args(self) -> [String; 3] {
        [
            self.min.to_string(),
            self.keep.to_string(),
            self.max.to_string(),
        ]
    }
}

/// How often the estimate of Redis's clock against ours is refreshed (it only drifts).
const CLOCK_RESYNC: Duration = Duration::from_secs(10);

/// Redis's clock minus ours, so an append can carry its deadline on Redis's clock.
#[derive(Debug, Default)]
struct ClockOffset {
    offset_ms: std::sync::atomic::AtomicI64,
    synced: std::sync::Mutex<Option<std::time::Instant>>,
}

fn wall_clock_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Videos a refill step reads from a window's hash: short enough that Redis never blocks for long.
const FILL_STEP: u32 = 2_000;

/// The domain's view of Redis.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    keys: KeySchema,
    caps: LeaderCaps,
    timeout: Duration,
    clock: std::sync::Arc<ClockOffset>,
    append_script: Script,
    apply_script: Script,
    retire_script: Script,
    fill_script: Script,
    seal_script: Script,
    read_bucket_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .finish()
    }
}

impl RedisStore {
    /// Builds the client and starts connecting. Returns at once: while Redis is unreachable every command
    /// fails within the configured timeout, and the client keeps reconnecting in the background.
    pub async fn connect(cfg: &RedisConfig) -> Result<Self> {
        let mut config = Config::from_url(&cfg.redis_url)?;
        // fred's default gives up for good when the first connection fails (Redis down, or still loading its
        // data and answering LOADING); a service started before Redis must keep trying, like after a drop.
        config.fail_fast = false;
        let timeout = cfg.timeout();
        let client = Builder::from_config(config)
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                // A command is never resent after a connection drop: a resent XADD could log a batch twice.
                c.max_command_attempts = 1;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build()?;
        client.connect();
        // Give the first connection a moment so a healthy start is ready at once; not fatal when Redis is down.
        let _ = tokio::time::timeout(timeout, client.wait_for_connect()).await;
        Ok(Self {
            client,
            keys: KeySchema::new(cfg.key_prefix.clone(), cfg.partitions),
            caps: LeaderCaps::default(),
            timeout,
            clock: Default::default(),
            append_script: Script::from_lua(include_str!("lua/append.lua")),
            apply_script: window_script!("lua/apply.lua"),
            retire_script: window_script!("lua/retire.lua"),
            fill_script: window_script!("lua/fill.lua"),
            seal_script: window_script!("lua/seal.lua"),
            read_bucket_script: window_script!("lua/read_bucket.lua"),
        })
    }

    /// The same store with other leader caps: tests use tiny ones so that trims and refills happen often.
    pub fn with_leader_caps(mut self, caps: LeaderCaps) -> Self {
        assert!(
            0 < caps.min && caps.min <= caps.keep && caps.keep < caps.max,
            "leader caps must satisfy 0 < min <= keep < max"
        );
        self.caps = caps;
        self
    }

    pub fn keys(&self) -> &KeySchema {
        &self.keys
    }

    /// Closes the connection after in-flight commands finish.
    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }

    /// Round trip to Redis (readiness).
    pub async fn ping(&self) -> Result<()> {
        let _: String = self.client.ping(None).await?;
        Ok(())
    }

    /// Redis's clock in milliseconds: the clock that stamps log entries, so retirement uses the same one.
    pub async fn now_ms(&self) -> Result<i64> {
        let (secs, micros): (i64, i64) = self
            .client
            .custom(cmd!("TIME"), Vec::<String>::new())
            .await?;
        let redis_ms = secs * 1000 + micros / 1000;
        // Taking the reply's arrival as the moment Redis read its clock under-estimates the offset by at most
        // the round trip: deadlines then come early (a refusal too many), never late (a write after a 503).
        self.clock.offset_ms.store(
            redis_ms - wall_clock_ms(),
            std::sync::atomic::Ordering::Relaxed,
        );
        *self.clock.synced.lock().expect("clock lock") = Some(std::time::Instant::now());
        Ok(redis_ms)
    }

    /// The latest time on Redis's clock at which an append sent now may still be written: three quarters of
    /// the command timeout, so that the reply has the last quarter to come back before the caller gives up.
    async fn append_deadline_ms(&self) -> Result<i64> {
        let synced = *self.clock.synced.lock().expect("clock lock");
        if synced.is_none_or(|t| t.elapsed() > CLOCK_RESYNC) {
            self.now_ms().await?;
        }
        let offset = self
            .clock
            .offset_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        Ok(wall_clock_ms() + offset + (self.timeout.as_millis() as i64) * 3 / 4)
    }

    /// Creates the consumer group on every partition's log (and the log itself), if missing.
    pub async fn ensure_log_groups(&self) -> Result<()> {
        for p in self.keys.all_partitions() {
            let created: Result<Value, _> = self
                .client
                .custom(
                    cmd!("XGROUP"),
                    vec![
                        "CREATE".to_owned(),
                        self.keys.log(p),
                        CONSUMER_GROUP.into(),
                        "0".into(),
                        "MKSTREAM".into(),
                    ],
                )
                .await;
            match created {
                Ok(_) => {}
                Err(e) if e.details().contains("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Appends a validated batch to the log: one entry per partition it touches, all in one script
    /// (`lua/append.lua`), so the batch is stored whole or not at all. Returns once Redis has the entries.
    pub async fn append(&self, views: &[(VideoId, u64)]) -> Result<()> {
        self.append_with_id(views, "*").await
    }

    /// [`Self::append`] with the event time given: the entries get ids `<at_ms>-<seq>`. Redis refuses a time
    /// before the log's last entry. For replays and tests that inject time.
    pub async fn append_at(&self, views: &[(VideoId, u64)], at_ms: i64) -> Result<()> {
        self.append_with_id(views, &format!("{at_ms}-*")).await
    }

    async fn append_with_id(&self, views: &[(VideoId, u64)], id: &str) -> Result<()> {
        let mut by_partition: BTreeMap<Partition, Vec<(&VideoId, u64)>> = BTreeMap::new();
        for (video, n) in views {
            by_partition
                .entry(self.keys.partition_of(video))
                .or_default()
                .push((video, *n));
        }
        let mut keys = Vec::with_capacity(by_partition.len());
        let mut args = vec![
            self.append_deadline_ms().await?.to_string(),
            id.to_owned(),
            LINES_FIELD.to_owned(),
        ];
        for (p, views) in by_partition {
            keys.push(self.keys.log(p));
            args.push(encode_lines(views));
        }
        let written: i64 = self
            .append_script
            .evalsha_with_reload(&self.client, keys, args)
            .await?;
        if written < 0 {
            // Redis was frozen or slow: measure the clocks again before the next deadline.
            *self.clock.synced.lock().expect("clock lock") = None;
            return Err(StoreError::TooLate);
        }
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
        let reply: Value = self
            .client
            .custom(
                cmd!("XREADGROUP"),
                vec![
                    "GROUP".to_owned(),
                    CONSUMER_GROUP.into(),
                    consumer.into(),
                    "COUNT".into(),
                    count.to_string(),
                    "STREAMS".into(),
                    self.keys.log(p),
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
            .client
            .custom(
                cmd!("XAUTOCLAIM"),
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
        let entries = reply
            .into_array()
            .into_iter()
            .nth(1)
            .map(Value::into_array)
            .unwrap_or_default();
        entries.into_iter().map(parse_entry).collect()
    }

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
        keys.extend([k.slice5_index(p), k.minute_index(p), k.open_minutes(p)]);
        let mut args = vec![CONSUMER_GROUP.to_owned(), consumer.to_owned()];
        args.extend(self.caps.args());
        args.push(batch.ids.len().to_string());
        args.extend(batch.ids.iter().map(EntryId::to_string));
        args.push(batch.slices.len().to_string());
        for slice in &batch.slices {
            keys.push(k.slice5(p, slice.slice5));
            keys.push(k.minute(p, slice.minute));
            args.push(slice.slice5.to_string());
            args.push(slice.minute.to_string());
            args.push(lines_of(
                slice.increments.iter().map(|(v, n)| (v.as_str(), *n)),
            ));
            args.push(slice.increments.len().to_string());
            for (video, n) in &slice.increments {
                args.push(video.clone());
                args.push(n.to_string());
            }
        }
        let views: i64 = self
            .apply_script
            .evalsha_with_reload(&self.client, keys, args)
            .await?;
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
        // day windows and the snapshotter: after the day window retires one it lingers an hour for snapshots.
        let (after, drop_from_index) = match window {
            Window::Minute => ("del", "1"),
            Window::Hour => ("0", "0"),
            _ => ("3600", "1"),
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
            let keys = vec![
                k.cursors(p),
                k.leader_state(p),
                k.window(p, window),
                k.leaders(p, window),
                k.slice_index(p, window),
                bucket.clone(),
                sealed.unwrap_or(bucket),
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
            let (code, slice): (i64, String) = self
                .retire_script
                .evalsha_with_reload(&self.client, keys, args)
                .await?;
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
                .fill_script
                .evalsha_with_reload(&self.client, keys.clone(), step_args)
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
            .client
            .custom(
                cmd!("ZRANGEBYSCORE"),
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
                .seal_script
                .evalsha_with_reload(
                    &self.client,
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
        let pipe = self.client.pipeline();
        for w in Window::ALL {
            let _: () = pipe.hget(self.keys.window(p, w), video.as_str()).await?;
        }
        let counts: Vec<Option<i64>> = pipe.all().await?;
        Ok(Window::ALL
            .into_iter()
            .zip(counts)
            .map(|(w, n)| (w, n.unwrap_or(0).max(0) as u64))
            .collect())
    }

    /// Every video's count in `window` of partition `p` (tests, verification).
    pub async fn window_counts(
        &self,
        p: Partition,
        window: Window,
    ) -> Result<HashMap<String, u64>> {
        self.hash_counts(self.keys.window(p, window)).await
    }

    /// The leaders of `window` on partition `p` with their scores (tests check them against the hash).
    pub async fn leader_counts(
        &self,
        p: Partition,
        window: Window,
    ) -> Result<HashMap<String, u64>> {
        let all = self.range_rev(self.keys.leaders(p, window), None).await?;
        Ok(all.into_iter().map(|r| (r.video_id, r.views)).collect())
    }

    /// Every way `window`'s leader set on partition `p` breaks the rules of `lua/leaders.lua` (empty when it
    /// holds them, so its top K is exact): tests and `verify` call it.
    pub async fn leader_violations(&self, p: Partition, window: Window) -> Result<Vec<String>> {
        let counts = self.window_counts(p, window).await?;
        let leaders = self.leader_counts(p, window).await?;
        let name = window.as_str();
        let state: Vec<Option<u64>> = self
            .client
            .hmget(
                self.keys.leader_state(p),
                vec![format!("{name}:enter"), format!("{name}:complete")],
            )
            .await?;
        let enter = state.first().copied().flatten().unwrap_or(1);
        let complete = state.get(1).copied().flatten().unwrap_or(1);
        let mut out = Vec::new();
        if enter > complete {
            out.push(format!("enter {enter} is above complete {complete}"));
        }
        for (video, score) in &leaders {
            match counts.get(video) {
                Some(n) if n == score && *n >= enter => {}
                n => out.push(format!(
                    "leader {video} has score {score}, count {n:?}, enter {enter}"
                )),
            }
        }
        for (video, n) in &counts {
            if *n >= complete && !leaders.contains_key(video) {
                out.push(format!(
                    "{video} counts {n} >= complete {complete} but is no leader"
                ));
            }
        }
        let above = leaders.values().filter(|n| **n >= complete).count();
        if above < self.caps.min as usize && complete > 1 {
            out.push(format!(
                "only {above} leaders >= complete {complete} of {} videos",
                counts.len()
            ));
        }
        Ok(out)
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
            .client
            .zrangebyscore(
                self.keys.slice_index(p, window),
                *range.start(),
                *range.end(),
                false,
                None,
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
            .read_bucket_script
            .evalsha_with_reload(&self.client, keys, vec![flag.to_owned()])
            .await?;
        Ok(flat
            .chunks(2)
            .filter_map(|c| Some((c[0].clone(), c.get(1)?.parse().ok()?)))
            .collect())
    }

    /// A hash of counts per video (HGETALL).
    async fn hash_counts(&self, key: String) -> Result<HashMap<String, u64>> {
        let all: HashMap<String, i64> = self.client.hgetall(key).await?;
        Ok(all
            .into_iter()
            .map(|(video, n)| (video, n.max(0) as u64))
            .collect())
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
            min_keep = min_keep.min(EntryId {
                ms: last.ms,
                seq: last.seq + 1,
            });
        }
        let removed: i64 = self
            .client
            .custom(
                cmd!("XTRIM"),
                vec![self.keys.log(p), "MINID".into(), min_keep.to_string()],
            )
            .await?;
        Ok(removed.max(0) as u64)
    }

    /// Entries of partition `p`'s log not yet acknowledged, delivered or not (backlog for health and tests).
    pub async fn log_backlog(&self, p: Partition) -> Result<u64> {
        let state = self.group_state(p).await?;
        Ok(state.pending + state.lag)
    }

    /// Entries of partition `p`'s log delivered to a worker and not yet acknowledged.
    pub async fn pending(&self, p: Partition) -> Result<u64> {
        Ok(self.group_state(p).await?.pending)
    }

    /// Where the workers' consumer group stands on partition `p`'s log (XPENDING summary and XINFO GROUPS).
    async fn group_state(&self, p: Partition) -> Result<GroupState> {
        let log = self.keys.log(p);
        // [count, smallest pending id, greatest pending id, consumers]
        let summary = self
            .client
            .custom::<Value, _>(cmd!("XPENDING"), vec![log.clone(), CONSUMER_GROUP.into()]);
        let groups = self
            .client
            .custom::<Value, _>(cmd!("XINFO"), vec!["GROUPS".to_owned(), log]);
        let (summary, groups) = futures::future::try_join(summary, groups).await?;
        let summary = summary.into_array();
        let mut state = GroupState {
            pending: summary.first().and_then(Value::as_i64).unwrap_or(0).max(0) as u64,
            oldest_pending: summary
                .get(1)
                .and_then(Value::as_string)
                .and_then(|s| EntryId::parse(&s)),
            ..GroupState::default()
        };
        for group in groups.into_array() {
            let fields = group.into_array();
            if !fields
                .iter()
                .any(|f| f.as_str().as_deref() == Some(CONSUMER_GROUP))
            {
                continue;
            }
            let mut it = fields.iter();
            while let (Some(name), Some(value)) = (it.next(), it.next()) {
                match name.as_str().as_deref() {
                    Some("last-delivered-id") => {
                        state.last_delivered = value.as_string().and_then(|s| EntryId::parse(&s))
                    }
                    // Redis reports no lag after deletions inside the unread range; then look.
                    Some("lag") => state.lag = value.as_i64().map_or(u64::MAX, |l| l.max(0) as u64),
                    _ => {}
                }
            }
        }
        if state.lag == u64::MAX {
            state.lag = u64::from(
                self.first_undelivered(p, state.last_delivered)
                    .await?
                    .is_some(),
            );
        }
        Ok(state)
    }

    /// The first entry of partition `p`'s log after `last_delivered` (any entry when `None`).
    async fn first_undelivered(
        &self,
        p: Partition,
        last_delivered: Option<EntryId>,
    ) -> Result<Option<EntryId>> {
        let start = last_delivered.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let next: Vec<Value> = self
            .client
            .custom(
                cmd!("XRANGE"),
                vec![
                    self.keys.log(p),
                    start,
                    "+".into(),
                    "COUNT".into(),
                    "1".into(),
                ],
            )
            .await?;
        Ok(next
            .into_iter()
            .next()
            .and_then(|e| e.into_array().into_iter().next())
            .and_then(|v| v.as_string())
            .and_then(|s| EntryId::parse(&s)))
    }

    async fn range_rev(&self, key: String, k: Option<TopK>) -> Result<Vec<RankedVideo>> {
        let stop = k.map_or(-1, |k| k.get() as i64 - 1);
        let reply: Vec<Value> = self
            .client
            .custom(
                cmd!("ZRANGE"),
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
                .into_string()
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

/// `[id, [field, value, ...]]`; fields are nil for an entry trimmed while pending.
fn parse_entry(entry: Value) -> Result<LogEntry> {
    let mut parts = entry.into_array().into_iter();
    let raw_id = parts.next().and_then(|v| v.as_string()).unwrap_or_default();
    let id = EntryId::parse(&raw_id)
        .ok_or_else(|| StoreError::Reply(format!("bad stream id {raw_id:?}")))?;
    let fields = parts.next().unwrap_or(Value::Null);
    let views = if fields.is_null() {
        Err("entry was trimmed from the log".to_owned())
    } else {
        let flat: Vec<String> = fields
            .into_array()
            .into_iter()
            .map(|v| v.as_string().unwrap_or_default())
            .collect();
        let pairs = flat
            .chunks(2)
            .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
            .collect();
        decode_fields(pairs)
    };
    Ok(LogEntry { id, views })
}

/// Reading closed minutes for the snapshotter, and restoring Redis from Postgres.
impl RedisStore {
    /// The time up to which partition `p` has applied its log: the event time of its oldest entry not yet
    /// acknowledged, or `None` when nothing is waiting (the partition is past any time up to now).
    pub async fn applied_through_ms(&self, p: Partition) -> Result<Option<i64>> {
        let state = match self.group_state(p).await {
            // No log yet (ingest never ran, or Redis lost its data): nothing is waiting to be applied.
            Err(e) if e.is_missing_group() => return Ok(None),
            other => other?,
        };
        let undelivered = self.first_undelivered(p, state.last_delivered).await?;
        Ok([state.oldest_pending, undelivered]
            .into_iter()
            .flatten()
            .map(|id| id.ms)
            .min())
    }

    /// Minutes of partition `p` that have a bucket, in `(after, before)`, oldest first.
    pub async fn bucket_minutes(&self, p: Partition, after: i64, before: i64) -> Result<Vec<i64>> {
        let found: Vec<String> = self
            .client
            .custom(
                cmd!("ZRANGEBYSCORE"),
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
        let mut out: Vec<RankedVideo> = counts
            .into_iter()
            .map(|(video_id, views)| RankedVideo { video_id, views })
            .collect();
        out.sort_by(crate::domain::ranking_order);
        Ok(out)
    }

    /// Replaces partition `p`'s counts with what Postgres holds (`rebuild-redis`): minute buckets of the day
    /// window's span, the hour and day windows as their sums, the all-time window, and cursors at `now_ms`.
    /// The minute window is left empty (Postgres has minutes, not 5-second slices): the log replay refills it.
    /// The log itself is kept; its consumer group restarts right after `replay_from` (the checkpoint).
    pub async fn restore_partition(
        &self,
        p: Partition,
        minutes: &BTreeMap<i64, Vec<(String, u64)>>,
        totals: &[(String, u64)],
        now_ms: i64,
        replay_after: Option<EntryId>,
    ) -> Result<()> {
        let k = &self.keys;
        // Clear everything of the partition but its log.
        let doomed: Vec<String> = self
            .scan(&k.partition_pattern(p))
            .await?
            .into_iter()
            .filter(|key| *key != k.log(p))
            .collect();
        for chunk in doomed.chunks(1000) {
            let _: i64 = self.client.del(chunk.to_vec()).await?;
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
        // anything at or before the checkpoint is already in the restored sums.
        let replay_ms = replay_after.map_or(now_ms, |id| id.ms + 1);
        let minute_cursor = slices::slice5_of(replay_ms) - 1;
        let minute_cursor = minute_cursor.max(retire_target(
            slices::spec(Window::Minute).expect("minute slices"),
            now_ms,
        ));
        let _: Value = self
            .client
            .custom(
                cmd!("HSET"),
                vec![
                    k.cursors(p),
                    "minute".into(),
                    minute_cursor.to_string(),
                    "hour".into(),
                    hour_from.to_string(),
                    "day".into(),
                    day_from.to_string(),
                ],
            )
            .await?;
        // Restart the consumer group after the checkpoint, dropping its pending list: every entry after the
        // checkpoint is delivered again exactly once (workers must be stopped meanwhile).
        let log = k.log(p);
        let _: Result<Value, _> = self
            .client
            .custom(
                cmd!("XGROUP"),
                vec!["DESTROY".to_owned(), log.clone(), CONSUMER_GROUP.into()],
            )
            .await;
        let start = replay_after.map_or_else(|| "$".to_owned(), |id| id.to_string());
        let _: Value = self
            .client
            .custom(
                cmd!("XGROUP"),
                vec![
                    "CREATE".to_owned(),
                    log,
                    CONSUMER_GROUP.into(),
                    start,
                    "MKSTREAM".into(),
                ],
            )
            .await?;
        Ok(())
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
        let _: i64 = self.client.del(vec![hash.clone(), set.clone()]).await?;
        let mut counts: Vec<(&str, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        for chunk in counts.chunks(1000) {
            let mut args = vec![hash.clone()];
            for (video, n) in chunk {
                args.push((*video).to_owned());
                args.push(n.to_string());
            }
            let _: i64 = self.client.custom(cmd!("HSET"), args).await?;
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
            .client
            .custom(
                cmd!("HSET"),
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
            .client
            .hdel(k.leader_state(p), format!("{name}:fill"))
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
        let _: () = self
            .client
            .set(
                k.sealed_minute(p, minute),
                sealed::encode(counts),
                None,
                None,
                false,
            )
            .await?;
        let _: Value = self
            .client
            .custom(
                cmd!("ZADD"),
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
                    .client
                    .custom(
                        cmd!("ZADD"),
                        std::mem::replace(&mut args, vec![key.clone()]),
                    )
                    .await?;
            }
        }
        if args.len() > 1 {
            let _: i64 = self.client.custom(cmd!("ZADD"), args).await?;
        }
        Ok(())
    }
}

/// What the benchmark needs besides the service's own calls: the naive baseline's writes, and measurements.
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
        for key in self.keys_matching("{*}:mz:*").await? {
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

    /// Every key matching a full SCAN pattern.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let mut cursor = "0".to_owned();
        let mut found = Vec::new();
        loop {
            let (next, keys): (String, Vec<String>) = self
                .client
                .custom(
                    cmd!("SCAN"),
                    vec![
                        cursor,
                        "MATCH".into(),
                        pattern.to_owned(),
                        "COUNT".into(),
                        "1000".into(),
                    ],
                )
                .await?;
            found.extend(keys);
            if next == "0" {
                return Ok(found);
            }
            cursor = next;
        }
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
