//! The exact top K of any range (`db::range::top_in_range`) against a brute-force sum over the views sent:
//! views at random event times (some back-dated, applied late, after their minute or their day was written),
//! the snapshotter, `rebuild-redis` and the roll-ups of `video_stats` at random moments, then ranges that cut
//! through minutes, hours and rolled-up days. Along the way the answer is checked against the plain SQL over
//! `video_stats`, and the period totals against `video_stats` (`verify`'s check).

use crate::helpers::{
    assert_verify_finds, block_on_case, database, redis, sql_top, Played, MIN, T0,
};
use proptest::prelude::*;
use sqlx::PgPool;
use topk_core::db::period_check::period_differences;
use topk_core::db::range::{top_in_range, Method, MinuteRange, RangeTop, Resolution};
use topk_core::db::retention::{maintain, RetentionPolicy};
use topk_core::domain::{RankedVideo, TopK};
use topk_snapshotter::jobs::snapshot_minutes;
use topk_snapshotter::verify::period_problems;

const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// Minute rows become hourly after a day and hourly rows daily after two, so a few days of schedule cross
/// both roll-ups; nothing is dropped.
const POLICY: RetentionPolicy = RetentionPolicy {
    hourly_after_days: 1,
    daily_after_days: 2,
    drop_after_days: 0,
};

/// One step: a schedule's [`helpers::Step`](crate::helpers::Step) (the workers and the retirer run together),
/// then maybe the roll-ups and a check against the SQL, in that order.
#[derive(Debug, Clone)]
struct Step {
    step: crate::helpers::Step,
    maintain: bool,
    /// A range (fractions of the history so far) and k, answered and compared with the SQL.
    check: Option<(f64, f64, usize)>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![
            6 => 0i64..3 * MIN,
            3 => 50 * MIN..70 * MIN,
            1 => DAY - 5 * MIN..DAY + 90 * MIN,
        ],
        // A few videos take most views, as on the real service; ties among the rest.
        proptest::collection::vec(
            (
                prop_oneof![3 => 0u8..3, 2 => 0u8..10, 1 => 0u8..40],
                1u64..30,
            ),
            0..6,
        ),
        prop_oneof![
            4 => Just(None),
            1 => (0i64..5 * MIN).prop_map(Some),
            1 => (50 * MIN..70 * MIN).prop_map(Some),
            1 => (DAY - 5 * MIN..3 * DAY).prop_map(Some),
        ],
        (
            prop::bool::weighted(0.5),
            prop::bool::weighted(0.5),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.3),
        ),
        proptest::option::weighted(0.15, (0.0..1.0f64, 0.0..1.0f64, 1usize..12)),
    )
        .prop_map(
            |(
                advance_ms,
                views,
                backdate_ms,
                (apply, snapshot, interrupted, rebuild, maintain),
                check,
            )| {
                Step {
                    step: crate::helpers::Step {
                        advance_ms,
                        views,
                        backdate_ms,
                        apply,
                        retire: apply,
                        snapshot,
                        interrupted,
                        rebuild,
                    },
                    maintain,
                    check,
                }
            },
        )
}

/// A range asked for at the end: fractions of the history, each end snapped to an hour or a day or not.
fn asked() -> impl Strategy<Value = (f64, f64, u8, u8, usize)> {
    (0.0..1.0f64, 0.0..1.0f64, 0u8..3, 0u8..3, 1usize..15)
}

/// `[from, to)` in minutes from fractions of `[first, last)` (ms), `from` snapped down and `to` up to a whole
/// hour (1) or day (2) when asked.
fn minutes(first: i64, last: i64, (a, b, snap_a, snap_b): (f64, f64, u8, u8)) -> MinuteRange {
    let snap = |m: i64, how: u8, up: bool| {
        let unit = [1, 60, 1440][usize::from(how)];
        if up {
            -(-m).div_euclid(unit) * unit
        } else {
            m.div_euclid(unit) * unit
        }
    };
    let from = (first + ((last - first) as f64 * a) as i64) / MIN;
    let to = from + 1 + ((last / MIN - from) as f64 * b) as i64;
    let (from, to) = (snap(from, snap_a, false), snap(to, snap_b, true));
    MinuteRange::new(from, to.max(from + 1)).unwrap()
}

/// The top `k` of `events` whose time falls in the minutes `[from, to)`.
fn brute_force(events: &[(i64, String, u64)], range: MinuteRange, k: usize) -> Vec<RankedVideo> {
    let mut sums: std::collections::HashMap<&str, u64> = Default::default();
    for (at, video, n) in events {
        if (range.from() * MIN..range.to() * MIN).contains(at) {
            *sums.entry(video).or_default() += n;
        }
    }
    let mut top = topk_core::domain::rank(sums);
    top.truncate(k);
    top
}

/// The range's answer, with the rounding it says it did checked: the range summed contains the one asked
/// for and its ends moved less than one period of its resolution.
async fn answer(pool: &PgPool, asked: MinuteRange, k: usize) -> RangeTop {
    let top = top_in_range(pool, asked, TopK::new(k).unwrap())
        .await
        .unwrap();
    let (got, unit) = (top.plan.range, top.plan.resolution.minutes());
    assert!(
        got.from() <= asked.from() && asked.from() - got.from() < unit,
        "{asked:?} -> {top:?}"
    );
    assert!(
        got.to() >= asked.to() && got.to() - asked.to() < unit,
        "{asked:?} -> {top:?}"
    );
    top
}

async fn run(steps: Vec<Step>, ranges: Vec<(f64, f64, u8, u8, usize)>, label: &str) {
    let store = redis(&topk_testkit::servers().redis_url, label, 2).await;
    let pool = database(label).await;
    // Three days in, so that back-dated views stay after T0.
    let mut played = Played::from(T0 + 3 * DAY);
    snapshot_minutes(&store, &pool, played.now).await.unwrap();
    for s in &steps {
        played.step(&store, &pool, &s.step).await;
        let now = played.now;
        if s.maintain {
            maintain(&pool, ms_time(now), POLICY).await.unwrap();
        }
        if let Some((a, b, k)) = s.check {
            let asked = minutes(T0, now, (a, b, 0, 0));
            let top = answer(&pool, asked, k).await;
            assert_eq!(
                top.videos,
                sql_top(&pool, top.plan.range, k).await,
                "{top:?}"
            );
            assert_eq!(period_differences(&pool).await.unwrap(), vec![]);
        }
    }
    // Everything applied, retired, written and rolled up as it would be by now.
    played.settle(&store, &pool).await;
    let Played { now, events, .. } = played;
    maintain(&pool, ms_time(now), POLICY).await.unwrap();

    for (a, b, snap_a, snap_b, k) in ranges {
        let asked = minutes(T0, now + HOUR, (a, b, snap_a, snap_b));
        let top = answer(&pool, asked, k).await;
        assert_eq!(
            top.videos,
            brute_force(&events, top.plan.range, k),
            "{top:?}"
        );
    }
    // The whole history at once, and by the finest resolution it holds.
    let all = MinuteRange::new(T0 / MIN - DAY, now / MIN + 1).unwrap();
    let top = answer(&pool, all, 40).await;
    assert_eq!(top.videos, brute_force(&events, top.plan.range, 40));
    assert_eq!(period_problems(&pool).await.unwrap(), Vec::<String>::new());
    assert_verify_finds(&store, &pool, now, &[]).await;
}

fn ms_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever the schedule, the range's top K equals the brute-force sum over the views sent whose time is in
    /// the range it says it summed, and the period totals agree with `video_stats`.
    #[test]
    fn the_top_of_any_range_is_the_sum_of_the_views_sent(
        steps in proptest::collection::vec(step(), 1..24),
        ranges in proptest::collection::vec(asked(), 1..8),
    ) {
        block_on_case("range", |label| async move { run(steps, ranges, &label).await });
    }
}

/// Flat data (every video as often in every hour): the threshold algorithm would read the lists whole (the
/// K-th sum never beats the threshold), so it stops at its depth limit and the range is summed whole; ties go
/// to the greatest id, as in the rankings. A video far ahead of the rest stops it after one round.
#[tokio::test]
async fn flat_data_is_summed_whole() {
    let pool = database("range_flat").await;
    let day = (T0 / DAY + 1) * DAY / MIN;
    // Four hours of 400 videos with 2 views each, and a hot video in the fourth.
    for h in 0..4 {
        let mut rows: Vec<RankedVideo> = (0..400)
            .map(|i| RankedVideo {
                video_id: format!("f{i:03}"),
                views: 2,
            })
            .collect();
        if h == 3 {
            rows.push(RankedVideo {
                video_id: "hot".into(),
                views: 1000,
            });
        }
        topk_core::db::write_minute(&pool, 0, day + h * 60 + 5, &rows)
            .await
            .unwrap();
    }
    topk_core::db::write_minute(&pool, 0, day + 4 * 60, &[])
        .await
        .unwrap();
    let closed =
        topk_core::db::periods::close_periods(&pool, 1, std::time::Duration::from_secs(60))
            .await
            .unwrap();
    assert_eq!(closed.hours, 4, "{closed:?}");
    let range = MinuteRange::new(day, day + 180).unwrap();
    let top = answer(&pool, range, 1).await;
    assert_eq!(top.method, Method::Sum);
    assert_eq!(top.plan.resolution, Resolution::Minute);
    assert_eq!(
        top.videos,
        vec![RankedVideo {
            video_id: "f399".into(),
            views: 6
        }]
    );
    // A video far ahead of the rest stops it at once.
    let range = MinuteRange::new(day + 120, day + 240).unwrap();
    let top = answer(&pool, range, 1).await;
    assert!(
        matches!(top.method, Method::Threshold(e) if e.rounds == 1),
        "{top:?}"
    );
    assert_eq!(top.videos, sql_top(&pool, range, 1).await);
}
