//! Typed async fixtures over topk's own types, so that test files do not rewrite them: a store on the shared
//! Redis (or on a server of the test's own), a migrated database, the whole log applied, and the brute-force
//! window oracle that the maintained windows are checked against.

use crate::process::unique_name;
use crate::servers::{fresh_database, servers};
use sqlx::PgPool;
use std::collections::HashMap;
use topk_core::batch::LogEntry;
use topk_core::config::{DatabaseConfig, RedisConfig};
use topk_core::domain::{TopK, VideoId, Window};
use topk_core::redis::{LeaderCaps, LogRead, RedisStore};
use topk_core::slices::in_window;

/// The views of `batches` summed by video, as [`window_counts`] reads them back: what a window must hold once
/// they are applied, each once.
pub fn views_by_video<'a>(
    batches: impl IntoIterator<Item = &'a (VideoId, u64)>,
) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for (video, n) in batches {
        *out.entry(video.as_str().to_owned()).or_default() += n;
    }
    out
}

/// The command timeout of fixture stores: long enough for two busy cores, short enough to fail a test fast.
pub const TIMEOUT_MS: u64 = 5_000;

/// Settings for a deployment of `partitions` on the Redis at `url`, under a key prefix of its own.
pub fn redis_config_at(url: &str, label: &str, partitions: u16) -> RedisConfig {
    RedisConfig {
        redis_url: url.parse().expect("a Redis URL"),
        partitions,
        key_prefix: unique_name(label),
        redis_timeout_ms: TIMEOUT_MS,
        wait_replicas: 0,
        redis_ca_file: None,
    }
}

/// Settings for a deployment of `partitions` on the shared Redis, under a key prefix of its own.
pub fn redis_config(label: &str, partitions: u16) -> RedisConfig {
    redis_config_at(&servers().redis_url, label, partitions)
}

/// A connected store with its log groups created.
pub async fn store_for(cfg: &RedisConfig) -> RedisStore {
    let store = RedisStore::connect(cfg).await.expect("connect the store");
    store
        .applier()
        .ensure_log_groups()
        .await
        .expect("create the log groups");
    store
}

/// A store of `partitions` on the shared Redis under a key prefix of its own, log groups created.
pub async fn store(label: &str, partitions: u16) -> RedisStore {
    store_for(&redis_config(label, partitions)).await
}

/// The error a ping through a store on `cfg` ends with; panics if it succeeds. The store connects lazily, so
/// connecting itself succeeds whatever `cfg` names.
pub async fn ping_error(cfg: &RedisConfig) -> String {
    let store = RedisStore::connect(cfg)
        .await
        .expect("a store connects lazily");
    let err = store.ping().await.expect_err("the ping must fail");
    err.to_string()
}

/// Settings for a fresh, empty database of this test.
pub fn database_config(label: &str) -> DatabaseConfig {
    DatabaseConfig {
        database_url: fresh_database(label),
    }
}

/// A pool on the database at `url`, migrated.
pub async fn migrated_pool_at(url: &str) -> PgPool {
    let pool = topk_core::db::pool(&DatabaseConfig {
        database_url: url.to_owned(),
    })
    .expect("database pool");
    topk_core::db::migrate(&pool)
        .await
        .expect("migrate the test database");
    pool
}

/// A fresh database of this test, migrated, and a pool on it.
pub async fn migrated_pool(label: &str) -> PgPool {
    migrated_pool_at(&database_config(label).database_url).await
}

/// Runs the workers' apply step ([`topk_core::redis::WindowApplier::step`]) as `consumer`, `chunk` entries at a
/// time, on every partition until its log is drained. Returns the views applied; panics if the lone consumer
/// loses an entry.
pub async fn apply_log(store: &RedisStore, consumer: &str, chunk: usize) -> u64 {
    let applier = store.applier();
    let mut views = 0;
    for p in store.keys().all_partitions() {
        loop {
            let step = applier
                .step(p, consumer, chunk, Default::default())
                .await
                .expect("apply a step");
            assert!(!step.not_owned, "a lone consumer lost its entries");
            if step.entries == 0 {
                break;
            }
            views += step.views;
        }
    }
    views
}

/// Up to `count` entries of partition `p`'s log, read as `consumer` from where `from` says.
pub async fn read_log(
    store: &RedisStore,
    p: u16,
    consumer: &str,
    from: LogRead,
    count: usize,
) -> Vec<LogEntry> {
    store
        .applier()
        .read_log(p, consumer, from, count)
        .await
        .expect("read the log")
}

/// Every video's count in `window` summed over the partitions, as the maintained hashes hold it.
pub async fn window_counts(store: &RedisStore, window: Window) -> HashMap<String, u64> {
    let mut all = HashMap::new();
    for p in store.keys().all_partitions() {
        all.extend(
            store
                .recovery()
                .window_counts(p, window)
                .await
                .expect("read a window"),
        );
    }
    all
}

/// The top `k` of `window` as the services rank it: (video, views), most viewed first.
pub async fn top(store: &RedisStore, window: Window, k: usize) -> Vec<(String, u64)> {
    let k = TopK::new(k).expect("a valid k");
    let top = store
        .rankings()
        .top(window, k)
        .await
        .expect("read the ranking");
    top.into_iter().map(|r| (r.video_id, r.views)).collect()
}

/// The oracle: every video's views in `window` at `now`, counted one event `(time, video, views)` at a time.
pub fn brute_force_window(
    events: &[(i64, String, u64)],
    window: Window,
    now: i64,
) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for (at, video, n) in events {
        if *at <= now && in_window(window, *at, now) {
            *out.entry(video.clone()).or_default() += n;
        }
    }
    out
}

/// Leader caps so small that trims, refills and the rankings' hash reads happen all the time (3 kept above the
/// threshold, trimmed past 6).
pub const TINY_LEADER_CAPS: LeaderCaps = LeaderCaps {
    min: 3,
    keep: 4,
    max: 6,
};

/// Seeds `window` of partitions `0..partitions` with `per` videos each, `p{p}v{i}` counted `views(p, i)`, and
/// returns every (video, views) seeded.
pub async fn seed_partitions(
    store: &RedisStore,
    window: Window,
    partitions: u16,
    per: u64,
    views: impl Fn(u16, u64) -> u64,
) -> Vec<(String, u64)> {
    let mut all = Vec::new();
    for p in 0..partitions {
        let members: Vec<(String, u64)> = (0..per)
            .map(|i| (format!("p{p}v{i}"), views(p, i)))
            .collect();
        store
            .recovery()
            .seed_window(p, window, members.iter().map(|(v, n)| (v.as_str(), *n)))
            .await
            .unwrap();
        all.extend(members);
    }
    all
}
