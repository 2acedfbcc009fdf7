//! The threshold algorithm on larger lists than the event schedules of `range.rs` make: hundreds of videos
//! per period, skewed or flat, written minute by minute as the snapshotter writes them, late views added to
//! periods already covered, the roll-ups run; every range's answer equals the plain SQL over `video_stats`.

use crate::helpers::{block_on, database, sql_top};
use proptest::prelude::*;
use std::time::Duration;
use topk_core::batch::EntryId;
use topk_core::db::period_check::period_differences;
use topk_core::db::periods::close_periods;
use topk_core::db::range::{top_in_range, MinuteRange};
use topk_core::db::retention::{maintain, RetentionPolicy};
use topk_core::db::{add_late_views, minute_start, write_minutes};
use topk_core::domain::{RankedVideo, TopK};

const HOUR: i64 = 60;
const DAY: i64 = 1440;
/// A day boundary (minutes since the epoch).
const D0: i64 = 19_700 * DAY;

/// What happens at one written minute: its rows, then maybe late views into earlier minutes, the periods
/// closed and the roll-ups run.
#[derive(Debug, Clone)]
struct Minute {
    /// Minutes after the previous written one.
    gap: i64,
    /// (video, views): skewed lists have a few videos far ahead, flat ones many alike.
    rows: Vec<(u16, u64)>,
    /// (minutes back from this one, video, views).
    late: Vec<(i64, u16, u64)>,
    close: bool,
}

fn minute() -> impl Strategy<Value = Minute> {
    let skewed = proptest::collection::vec((0u16..400, 1u64..4), 0..120).prop_map(|rows| {
        rows.into_iter()
            .map(|(v, n)| (v, n * (2000 / (u64::from(v) + 1) + 1)))
            .collect::<Vec<_>>()
    });
    let flat = proptest::collection::vec((0u16..400, 1u64..3), 0..200);
    (
        prop_oneof![4 => 1i64..20, 2 => 40i64..200, 1 => 600i64..1500],
        prop_oneof![skewed, flat],
        proptest::collection::vec((0i64..3 * DAY, 0u16..400, 1u64..500), 0..3),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(gap, rows, late, close)| Minute {
            gap,
            rows,
            late,
            close,
        })
}

async fn run(
    minutes: Vec<Minute>,
    roll_up_at: Option<i64>,
    ranges: Vec<(i64, i64, usize)>,
    label: &str,
) {
    let pool = database(label).await;
    let mut at = D0;
    let mut late_id = 0;
    for m in &minutes {
        at += m.gap;
        let mut rows: std::collections::BTreeMap<String, u64> = Default::default();
        for (v, n) in &m.rows {
            *rows.entry(format!("r{v:03}")).or_default() += n;
        }
        let rows: Vec<RankedVideo> = rows
            .into_iter()
            .map(|(video_id, views)| RankedVideo { video_id, views })
            .collect();
        write_minutes(&pool, 0, &[(at, rows)], at).await.unwrap();
        if !m.late.is_empty() {
            let views: Vec<(String, i64, u64)> = m
                .late
                .iter()
                .map(|(back, v, n)| (format!("r{v:03}"), (at - back).max(D0), *n))
                .collect();
            late_id += 1;
            let through = EntryId {
                ms: late_id,
                seq: 0,
            };
            assert!(add_late_views(&pool, 0, &views, through).await.unwrap());
        }
        if m.close {
            close_periods(&pool, 1, Duration::from_secs(60))
                .await
                .unwrap();
        }
    }
    close_periods(&pool, 1, Duration::from_secs(60))
        .await
        .unwrap();
    if let Some(days) = roll_up_at {
        let policy = RetentionPolicy {
            hourly_after_days: 1,
            daily_after_days: 2,
            drop_after_days: 0,
        };
        let now = minute_start(D0 + days * DAY);
        maintain(&pool, now, policy).await.unwrap();
    }
    assert_eq!(period_differences(&pool).await.unwrap(), vec![]);
    for (from, len, k) in ranges {
        let asked = MinuteRange::new(D0 + from, D0 + from + len).unwrap();
        let top = top_in_range(&pool, asked, TopK::new(k).unwrap())
            .await
            .unwrap();
        assert_eq!(
            top.videos,
            sql_top(&pool, top.plan.range, k).await,
            "{asked:?}: {:?} {:?}",
            top.plan,
            top.method
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Any data, any range, any k: the same top K as the SQL over `video_stats`.
    #[test]
    fn the_threshold_algorithm_agrees_with_the_sql(
        minutes in proptest::collection::vec(minute(), 1..40),
        roll_up_at in proptest::option::of(3i64..6),
        ranges in proptest::collection::vec((0i64..4 * DAY, 1i64..3 * DAY, 1usize..80), 1..10),
    ) {
        static CASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let case = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        block_on(run(minutes, roll_up_at, ranges, &format!("range_ta{case}")));
    }
}

/// Lists that disagree on their order: the threshold algorithm reads several rounds (checked by the effort it
/// reports) and still answers what the SQL does.
#[tokio::test]
async fn deep_lists_take_several_rounds() {
    let pool = database("range_deep").await;
    // Two days of one minute each: 600 videos, views falling slowly, in another order each day, so the K-th
    // sum is far down both lists.
    for day in 0..2 {
        let rows: Vec<RankedVideo> = (0..600u64)
            .map(|i| {
                let place = if day == 0 { i } else { i * 7 % 600 };
                RankedVideo {
                    video_id: format!("d{i:03}"),
                    views: 10_000 - place * 7,
                }
            })
            .collect();
        let at = D0 + day * DAY + HOUR;
        write_minutes(&pool, 0, &[(at, rows)], at).await.unwrap();
    }
    write_minutes(&pool, 0, &[], D0 + 2 * DAY).await.unwrap();
    close_periods(&pool, 1, Duration::from_secs(60))
        .await
        .unwrap();
    let range = MinuteRange::new(D0, D0 + 2 * DAY).unwrap();
    let top = top_in_range(&pool, range, TopK::new(200).unwrap())
        .await
        .unwrap();
    assert_eq!(top.videos, sql_top(&pool, range, 200).await);
    match top.method {
        topk_core::db::range::Method::Threshold(e) => assert!(e.rounds >= 2, "{e:?}"),
        other => panic!("{other:?}"),
    }
}

/// One whole hour, its K-th place tied with hundreds of videos (the long tail of a Zipf hour, one view each):
/// the hour's ranking is read from the top in one round, ties ordered by id as the SQL orders them, instead
/// of reading on through the ties.
#[tokio::test]
async fn a_single_period_with_ties_at_the_kth_place_is_read_once() {
    let pool = database("range_single_tied").await;
    let rows: Vec<RankedVideo> = (0..900u64)
        .map(|i| RankedVideo {
            video_id: format!("t{i:03}"),
            views: if i < 50 { 1_000 - i } else { 1 },
        })
        .collect();
    let at = D0 + HOUR + 5;
    write_minutes(&pool, 0, &[(at, rows)], D0 + 3 * HOUR)
        .await
        .unwrap();
    close_periods(&pool, 1, Duration::from_secs(60))
        .await
        .unwrap();
    let range = MinuteRange::new(D0 + HOUR, D0 + 2 * HOUR).unwrap();
    let top = top_in_range(&pool, range, TopK::new(100).unwrap())
        .await
        .unwrap();
    assert_eq!(top.videos, sql_top(&pool, range, 100).await);
    match top.method {
        topk_core::db::range::Method::Threshold(e) => {
            assert_eq!((e.rounds, e.candidates), (1, 0), "{e:?}")
        }
        other => panic!("{other:?}"),
    }
}
