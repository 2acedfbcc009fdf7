//! `rebuild-redis` after back-dated views: with Redis's windows lost but its log kept (as in
//! `rebuild::rebuild_replays_the_log_after_the_checkpoint`), the rebuild, the workers replaying the log and the
//! snapshotter running again leave every view counted once in the day and all-time windows, in `video_stats` at
//! its own minute and in `video_totals`. Checked against a brute-force model over random schedules that
//! rebuild at random moments: back-dated entries applied with their late views written, applied with them
//! still in the late stream, or not yet applied; on-time entries among them; before and after the checkpoint.

use crate::helpers::{
    block_on, database, log_backdated, per_minute, redis, stats, totals, MIN, T0,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use topk_core::domain::{VideoId, Window};
use topk_core::redis::RedisStore;
use topk_snapshotter::jobs::snapshot_minutes;
use topk_snapshotter::rebuild::rebuild;
use topk_snapshotter::verify::verify;
use topk_testkit::fixtures::{apply_log, brute_force_window, window_counts};

const DAY: i64 = 24 * 60 * MIN;

/// One step: time moves on, views are logged (maybe back-dated by their source), and maybe the workers, the
/// retirer, the snapshotter and a rebuild run, in that order.
#[derive(Debug, Clone)]
struct Step {
    advance_ms: i64,
    views: Vec<(u8, u64)>,
    backdate_ms: Option<i64>,
    apply: bool,
    retire: bool,
    snapshot: bool,
    rebuild: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![
            6 => 0i64..3 * MIN,
            2 => 20 * MIN..70 * MIN,
            1 => DAY - 5 * MIN..DAY + 30 * MIN,
        ],
        proptest::collection::vec((0u8..5, 1u64..4), 0..4),
        prop_oneof![
            3 => Just(None),
            2 => (0i64..5 * MIN).prop_map(Some),
            1 => (20 * MIN..70 * MIN).prop_map(Some),
            1 => (DAY - 5 * MIN..DAY + 30 * MIN).prop_map(Some),
        ],
        prop::bool::weighted(0.5),
        prop::bool::weighted(0.4),
        prop::bool::weighted(0.5),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(advance_ms, views, backdate_ms, apply, retire, snapshot, rebuild)| Step {
                advance_ms,
                views,
                backdate_ms,
                apply,
                retire,
                snapshot,
                rebuild,
            },
        )
}

/// Logs `views` at `now`, dated `event_ms` by a source (a Kafka record) or, without one, at `now`.
async fn log(
    store: &RedisStore,
    views: &[(VideoId, u64)],
    now: i64,
    event_ms: Option<i64>,
    offset: &mut i64,
) {
    let Some(event_ms) = event_ms else {
        store.append_at(views, now).await.unwrap();
        return;
    };
    log_backdated(store, views, *offset, now, event_ms).await;
    *offset += 1;
}

async fn check(steps: Vec<Step>, case: usize) {
    let label = format!("rebuild_late{case}");
    let store = redis(&topk_testkit::servers().redis_url, &label, 2).await;
    let pool = database(&label).await;
    // A day in, so that back-dated views stay after the epoch of the model's minutes.
    let mut now = T0 + 2 * DAY;
    snapshot_minutes(&store, &pool, now).await.unwrap();
    let mut events = Vec::new();
    let mut offset = 0;
    for s in &steps {
        now += s.advance_ms;
        let event_ms = s.backdate_ms.map(|back| now - back);
        for (v, n) in &s.views {
            let video = format!("v{v}");
            log(
                &store,
                &[(VideoId::parse(&video).unwrap(), *n)],
                now,
                event_ms,
                &mut offset,
            )
            .await;
            events.push((event_ms.unwrap_or(now), video, *n));
        }
        if s.apply {
            apply_log(&store, "w", 3).await;
        }
        if s.retire {
            store.retire_all(now).await.unwrap();
            store.seal_all(now).await.unwrap();
        }
        if s.snapshot {
            snapshot_minutes(&store, &pool, now).await.unwrap();
        }
        if s.rebuild {
            // Redis's windows lost, the log kept: the rebuild replaces everything of each partition but its
            // log, late stream and source offsets, and the workers replay the log after the checkpoint.
            rebuild(&store, &pool, now, false).await.unwrap();
        }
    }
    now += 2 * MIN;
    apply_log(&store, "w", 3).await;
    store.retire_all(now).await.unwrap();
    store.seal_all(now).await.unwrap();
    snapshot_minutes(&store, &pool, now).await.unwrap();

    assert_eq!(stats(&pool).await, per_minute(&events, now), "video_stats");
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for (_, v, n) in &events {
        *want.entry(v.clone()).or_default() += *n as i64;
    }
    assert_eq!(totals(&pool).await, want, "video_totals");
    let all: BTreeMap<String, i64> = window_counts(&store, Window::All)
        .await
        .into_iter()
        .map(|(v, n)| (v, n as i64))
        .collect();
    assert_eq!(all, want, "the all-time window");
    let day: HashMap<String, u64> = window_counts(&store, Window::Day).await;
    assert_eq!(
        day,
        brute_force_window(&events, Window::Day, now),
        "the day window"
    );
    let diffs = verify(&store, &pool, now).await.unwrap();
    assert!(diffs.is_empty(), "verify: {diffs:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Views on time and back-dated by up to more than a day, applied late or not yet, with the retirer, the
    /// snapshotter and `rebuild-redis` at random moments: in the end Postgres and the day and all-time windows
    /// hold every view once, as the model counts them.
    #[test]
    fn rebuild_counts_every_back_dated_view_once(steps in proptest::collection::vec(step(), 1..16)) {
        static CASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let case = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        block_on(check(steps, case));
    }
}
