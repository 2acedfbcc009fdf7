//! Event time and late views: every view reaches history at its own minute exactly once, however late it is
//! applied (after the snapshotter wrote its minute, or after the day window retired it), and `verify` agrees
//! with what Postgres and Redis hold. Checked against a brute-force model over random event times, some of them
//! back-dated by the producer that logged them (a Kafka record's timestamp, or `"at"` in a `POST /v1/views`
//! batch). The schedule and the model serve `rebuild_late.rs` too, which adds `rebuild-redis` at random
//! moments.

use crate::helpers::{
    all_time, assert_verify_finds, block_on_case, database, log_backdated, per_minute, redis,
    stats, totals, Played, Step, MIN, T0,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use topk_core::domain::{VideoId, Window};
use topk_snapshotter::jobs::{close_minutes, snapshot_minutes};
use topk_testkit::fixtures::{apply_log, brute_force_window, window_counts};

const DAY: i64 = 24 * 60 * MIN;

/// A schedule of one step to fewer than `max_steps`, each rebuilding at `rebuild_odds`, and whether the
/// snapshotter runs first (see [`check`]).
pub(crate) fn schedule(
    rebuild_odds: f64,
    max_steps: usize,
) -> impl Strategy<Value = (Vec<Step>, bool)> {
    (
        proptest::collection::vec(step(rebuild_odds), 1..max_steps),
        prop::bool::weighted(0.5),
    )
}

/// A step, with a rebuild at `rebuild_odds`.
fn step(rebuild_odds: f64) -> impl Strategy<Value = Step> {
    (
        prop_oneof![
            6 => 0i64..3 * MIN,
            2 => 50 * MIN..70 * MIN,
            1 => DAY - 5 * MIN..DAY + 90 * MIN,
        ],
        proptest::collection::vec((0u8..6, 1u64..4), 0..4),
        prop::bool::weighted(0.4),
        prop::bool::weighted(0.5),
        prop::bool::weighted(0.5),
        prop_oneof![
            4 => Just(None),
            1 => (0i64..5 * MIN).prop_map(Some),
            1 => (50 * MIN..70 * MIN).prop_map(Some),
            1 => (DAY - 5 * MIN..2 * DAY).prop_map(Some),
        ],
        prop::bool::weighted(rebuild_odds),
        prop::bool::weighted(0.25),
    )
        .prop_map(
            |(advance_ms, views, apply, retire, snapshot, backdate_ms, rebuild, interrupted)| {
                Step {
                    advance_ms,
                    views,
                    apply,
                    retire,
                    snapshot,
                    backdate_ms,
                    rebuild,
                    interrupted,
                }
            },
        )
}

/// Runs `steps` on a store and database of their own (named after `label`), then checks Postgres, the day and
/// all-time windows and `verify` against the model. With `snapshotter_first`, the snapshotter runs once before
/// any view is logged (as `run` does from the start); without, views (a backfill older than a day among them)
/// may be applied before the partition's first minute job.
pub(crate) async fn check(steps: Vec<Step>, snapshotter_first: bool, label: &str) {
    let store = redis(&topk_testkit::servers().redis_url, label, 2).await;
    let pool = database(label).await;
    // Two days in, so that back-dated views stay after T0.
    let mut played = Played::from(T0 + 2 * DAY);
    if snapshotter_first {
        snapshot_minutes(&store, &pool, played.now).await.unwrap();
    }
    for s in &steps {
        played.step(&store, &pool, s).await;
    }
    played.settle(&store, &pool).await;

    let Played { now, events, .. } = played;
    history_holds(&store, &pool, &events, now).await;
    let day: HashMap<String, u64> = window_counts(&store, Window::Day).await;
    assert_eq!(
        day,
        brute_force_window(&events, Window::Day, now),
        "the day window"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Views logged at random times and applied late (time moves on by minutes, an hour or more than a day
    /// between workers' runs), with the retirer and the snapshotter running at random moments: Postgres ends
    /// with every view once at its own minute and in the totals, as the model counts them.
    #[test]
    fn every_view_reaches_history_at_its_minute_once((steps, first) in schedule(0.0, 20)) {
        block_on_case("late", |label| async move { check(steps, first, &label).await });
    }
}

/// The checks of a run: `video_stats`, `video_totals` and the all-time window hold `events`, and `verify`
/// finds nothing, at `now`.
async fn history_holds(
    store: &topk_core::redis::RedisStore,
    pool: &sqlx::PgPool,
    events: &[(i64, String, u64)],
    now: i64,
) {
    assert_eq!(stats(pool).await, per_minute(events, now), "video_stats");
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for (_, v, n) in events {
        *want.entry(v.clone()).or_default() += *n as i64;
    }
    assert_eq!(totals(pool).await, want, "video_totals");
    assert_eq!(all_time(store).await, want, "the all-time window");
    assert_verify_finds(store, pool, now, &[]).await;
}

/// A minute job closes a minute that has no views yet, then stops before writing it; a back-dated view for
/// that minute is applied; the next run must count the view once (it is in the minute's bucket and in the
/// late stream: only one of them may reach history).
#[tokio::test]
async fn a_rerun_of_an_interrupted_minute_job_counts_a_late_view_once() {
    let store = redis(&topk_testkit::servers().redis_url, "rerun_late", 1).await;
    let pool = database("rerun_late").await;
    let mut now = T0 + 2 * DAY;
    snapshot_minutes(&store, &pool, now).await.unwrap();
    now += 3 * MIN;
    // Closes the two minutes just ended, both empty, and stops there.
    close_minutes(&store, &pool, now).await.unwrap();
    let minute_ms = now - 2 * MIN + 7_000;
    let views = [(VideoId::parse("late").unwrap(), 3)];
    log_backdated(&store, &views, 0, now, minute_ms).await;
    apply_log(&store, "w", 10).await;
    now += MIN;
    store.applier().retire_all(now).await.unwrap();
    snapshot_minutes(&store, &pool, now).await.unwrap();
    history_holds(&store, &pool, &[(minute_ms, "late".into(), 3)], now).await;
}

/// A backfill on a new deployment: views older than a day applied before any minute job has run on the
/// partition reach history at their minutes once the snapshotter runs.
#[tokio::test]
async fn views_older_than_a_day_applied_before_the_first_minute_job_reach_history() {
    let store = redis(&topk_testkit::servers().redis_url, "backfill", 2).await;
    let pool = database("backfill").await;
    let now = T0 + 3 * DAY;
    let old = now - 2 * DAY;
    let views = [(VideoId::parse("old").unwrap(), 4)];
    log_backdated(&store, &views, 0, now, old).await;
    apply_log(&store, "w", 10).await;
    // The retirer runs every few hundred ms, before the first minute job: it takes the view out of the
    // windows it is too old for.
    store.applier().retire_all(now).await.unwrap();
    snapshot_minutes(&store, &pool, now).await.unwrap();
    history_holds(&store, &pool, &[(old, "old".into(), 4)], now).await;
}
