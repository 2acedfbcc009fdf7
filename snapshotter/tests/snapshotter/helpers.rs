//! Shared arrange and assert helpers: private Redis prefixes, fresh databases, the real worker step, and
//! the rows as Postgres holds them.

use sqlx::PgPool;
use std::collections::BTreeMap;
use topk_core::db::minute_start;
use topk_core::db::range::MinuteRange;
use topk_core::domain::{RankedVideo, VideoId, Window};
use topk_core::redis::{AppendRequest, RedisStore, SourcePartition, SourceRecord};
use topk_core::wire::DatedViews;
use topk_snapshotter::jobs::{close_minutes, snapshot_minutes};
use topk_snapshotter::rebuild::rebuild;
use topk_testkit::fixtures;

/// A minute in ms.
pub const MIN: i64 = 60_000;
/// A minute boundary in the past, the origin of the fed events' times.
pub const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % MIN;

/// Logs `views` at `now`, dated `event_ms` (back-dated when before `now`), by either producer that dates its
/// views, so both paths meet the same model: at an even `offset` as one record of a source (a Kafka topic's
/// partition 0) at that offset, at an odd one as a `POST /v1/views` batch whose elements say `"at"` (the
/// receiver's append). Either way one entry on each partition the views touch, its event time beside it.
pub async fn log_backdated(
    store: &RedisStore,
    views: &[(VideoId, u64)],
    offset: i64,
    now: i64,
    event_ms: i64,
) {
    if offset % 2 == 1 {
        let dated = [DatedViews {
            event_ms,
            views: views.to_vec(),
        }];
        let request = AppendRequest {
            views: &[],
            dated: &dated,
            key: None,
        };
        store
            .writer()
            .append_request_at(request, now)
            .await
            .unwrap();
        return;
    }
    let source = SourcePartition {
        topic: "views".into(),
        partition: 0,
    };
    for (p, lines) in store.writer().lines_by_partition(views) {
        let record = SourceRecord {
            offset,
            event_ms,
            lines,
        };
        store
            .writer()
            .append_source_at(p, &source, &[record], now)
            .await
            .unwrap();
    }
}

/// One step of a random schedule: time moves on, views (`(video number, count)`, video `v<number>`) are logged
/// at the new time, and maybe the workers, the retirer, the snapshotter and `rebuild-redis` run at it, in that
/// order. Workers that skip steps apply views late, after time has moved on by up to a day or more.
#[derive(Debug, Clone)]
pub struct Step {
    pub advance_ms: i64,
    pub views: Vec<(u8, u64)>,
    /// The views come from a producer that dates them this long before they are logged ([`log_backdated`]).
    pub backdate_ms: Option<i64>,
    pub apply: bool,
    /// The retirer, sealing the minutes it passes.
    pub retire: bool,
    pub snapshot: bool,
    /// The snapshotter's run (if any) stops between closing its minutes and writing them (a crash, Postgres
    /// lost): the next run redoes it.
    pub interrupted: bool,
    /// Redis's windows lost, the log kept: `rebuild-redis` replaces everything of each partition but its log,
    /// late stream and source offsets, and the workers replay the log after the checkpoint.
    pub rebuild: bool,
}

/// Where a random schedule stands: its time, the source offsets it used, and every view logged as an event
/// `(event time, video, count)` for the brute-force model.
pub struct Played {
    pub now: i64,
    offset: i64,
    pub events: Vec<(i64, String, u64)>,
}

impl Played {
    /// A schedule starting at `now`, nothing logged yet.
    pub fn from(now: i64) -> Self {
        Self {
            now,
            offset: 0,
            events: Vec::new(),
        }
    }

    /// Plays `step` on `store` and `pool` (see [`Step`]).
    pub async fn step(&mut self, store: &RedisStore, pool: &PgPool, step: &Step) {
        self.now += step.advance_ms;
        let now = self.now;
        for (v, n) in &step.views {
            let video = format!("v{v}");
            let one = [(VideoId::parse(&video).unwrap(), *n)];
            let event_ms = match step.backdate_ms {
                None => {
                    store.writer().append_at(&one, now).await.unwrap();
                    now
                }
                Some(back) => {
                    log_backdated(store, &one, self.offset, now, now - back).await;
                    self.offset += 1;
                    now - back
                }
            };
            self.events.push((event_ms, video, *n));
        }
        if step.apply {
            fixtures::apply_log(store, "w", 7).await;
        }
        if step.retire {
            retire_and_seal(store, now).await;
        }
        if step.snapshot && step.interrupted {
            close_minutes(store, pool, now).await.unwrap();
        } else if step.snapshot {
            snapshot_minutes(store, pool, now).await.unwrap();
        }
        if step.rebuild {
            rebuild(store, pool, now, false).await.unwrap();
        }
    }

    /// The end of the schedule, two minutes on: the whole log applied, retired, sealed and written, so that
    /// every minute of the events is closed.
    pub async fn settle(&mut self, store: &RedisStore, pool: &PgPool) {
        self.now += 2 * MIN;
        fixtures::apply_log(store, "w", 7).await;
        retire_and_seal(store, self.now).await;
        snapshot_minutes(store, pool, self.now).await.unwrap();
    }
}

/// The retirer's step at `now`, the minutes it passes sealed, as the workers' process runs it.
async fn retire_and_seal(store: &RedisStore, now: i64) {
    store.applier().retire_all(now).await.unwrap();
    store.applier().seal_all(now).await.unwrap();
}

/// Runs one property case on a runtime of its own (proptest's cases are synchronous).
pub fn block_on(case: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(case);
}

/// Runs one property case (as [`block_on`]) under a label of its own, `prefix` and a case number, so that the
/// store and database of a failed case can be told apart.
pub fn block_on_case<F: std::future::Future<Output = ()>>(
    prefix: &str,
    case: impl FnOnce(String) -> F,
) {
    static CASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    block_on(case(format!("{prefix}{n}")));
}

/// A store on a private key prefix of the Redis at `url`, its log groups created as ingest does.
pub async fn redis(url: &str, label: &str, partitions: u16) -> RedisStore {
    fixtures::store_for(&fixtures::redis_config_at(url, label, partitions)).await
}

/// A fresh, migrated database.
pub async fn database(label: &str) -> PgPool {
    fixtures::migrated_pool(label).await
}

/// The usual arrangement: a store of `partitions` on the shared Redis, a fresh database, and `count` events
/// spread over `over_ms` from T0, fed and applied. Returns the store, the database and the events.
pub async fn fed(
    label: &str,
    partitions: u16,
    count: i64,
    over_ms: i64,
) -> (RedisStore, PgPool, Vec<(i64, String, u64)>) {
    let store = redis(&topk_testkit::servers().redis_url, label, partitions).await;
    let pool = database(label).await;
    let events = feed(&store, &spread(count, over_ms)).await;
    drain(&store).await;
    (store, pool, events)
}

/// Applies everything in the log with the real worker step.
pub async fn drain(store: &RedisStore) {
    for p in store.keys().all_partitions() {
        while store
            .applier()
            .step(p, "w", 50, Default::default())
            .await
            .unwrap()
            .entries
            > 0
        {}
    }
}

/// Runs the retirer's step at `now`.
pub async fn retire(store: &RedisStore, now: i64) {
    store.applier().retire_all(now).await.unwrap();
}

/// Appends 1 to 3 views of one of seven videos at each of `times` (offsets from T0, in ms); returns the events
/// as (time, video, views).
pub async fn feed(store: &RedisStore, times: &[i64]) -> Vec<(i64, String, u64)> {
    let mut events = Vec::new();
    for (i, &t) in times.iter().enumerate() {
        let video = format!("v{}", i % 7);
        let n = (i % 3 + 1) as u64;
        store
            .writer()
            .append_at(&[(VideoId::parse(&video).unwrap(), n)], T0 + t)
            .await
            .unwrap();
        events.push((T0 + t, video, n));
    }
    events
}

/// `video_stats` as (video, bucket start in ms, views), in order.
pub async fn stats(pool: &PgPool) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT video_id, (extract(epoch from bucket_start) * 1000)::bigint, views FROM video_stats ORDER BY 1, 2")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// `video_totals` per video.
pub async fn totals(pool: &PgPool) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("SELECT video_id, total_views FROM video_totals")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Asserts that `verify` at `now` reports exactly the differences `want`, each as (window, video).
pub async fn assert_verify_finds(
    store: &RedisStore,
    pool: &PgPool,
    now: i64,
    want: &[(Window, &str)],
) {
    let diffs = topk_snapshotter::verify::verify(store, pool, now)
        .await
        .unwrap();
    let found: Vec<(Window, &str)> = diffs
        .iter()
        .map(|d| (d.window, d.video_id.as_str()))
        .collect();
    assert_eq!(found, want, "verify: {diffs:?}");
}

/// The all-time window of every partition, as [`totals`] reads `video_totals`: to compare the two.
pub async fn all_time(store: &RedisStore) -> BTreeMap<String, i64> {
    fixtures::window_counts(store, Window::All)
        .await
        .into_iter()
        .map(|(v, n)| (v, n as i64))
        .collect()
}

/// The `video_stats` rows that `events` make for the minutes that end by `before_ms`.
pub fn per_minute(events: &[(i64, String, u64)], before_ms: i64) -> Vec<(String, i64, i64)> {
    let mut m: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (t, v, n) in events {
        let start = t - t.rem_euclid(MIN);
        if start + MIN <= before_ms {
            *m.entry((v.clone(), start)).or_default() += *n as i64;
        }
    }
    m.into_iter().map(|((v, s), n)| (v, s, n)).collect()
}

/// `count` offsets evenly spread over `over_ms`.
pub fn spread(count: i64, over_ms: i64) -> Vec<i64> {
    (0..count).map(|i| i * over_ms / count).collect()
}

/// The plain SQL over `video_stats`, the benchmark's baseline: exact by definition.
pub async fn sql_top(pool: &PgPool, range: MinuteRange, k: usize) -> Vec<RankedVideo> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT video_id, sum(views)::bigint FROM video_stats \
         WHERE bucket_start >= $1 AND bucket_start < $2 \
         GROUP BY video_id ORDER BY 2 DESC, 1 DESC LIMIT $3",
    )
    .bind(minute_start(range.from()))
    .bind(minute_start(range.to()))
    .bind(k as i64)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(video_id, views)| RankedVideo {
            video_id,
            views: views as u64,
        })
        .collect()
}
