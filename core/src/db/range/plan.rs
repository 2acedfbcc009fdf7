//! How a range is answered, as pure arithmetic on minutes since the epoch: its ends rounded to the resolution
//! history keeps there, and the range cut into whole days and whole hours the period totals hold, and the rest,
//! summed from `video_stats`.

use crate::db::periods::{Coverage, DAY, HOUR};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use utoipa::ToSchema;

/// How finely history holds a stretch of time: minute rows are folded into hours after
/// `TOPK_HOURLY_AFTER_DAYS` and hours into days after `TOPK_DAILY_AFTER_DAYS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    Minute,
    Hour,
    Day,
}

impl Resolution {
    /// Its length in minutes.
    pub fn minutes(self) -> i64 {
        match self {
            Resolution::Minute => 1,
            Resolution::Hour => HOUR,
            Resolution::Day => DAY,
        }
    }
}

/// A non-empty range of whole minutes, `[from, to)`, in minutes since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteRange {
    from: i64,
    to: i64,
}

impl MinuteRange {
    /// `[from, to)`; `None` when empty.
    pub fn new(from: i64, to: i64) -> Option<Self> {
        (from < to).then_some(Self { from, to })
    }

    pub fn from(self) -> i64 {
        self.from
    }

    pub fn to(self) -> i64 {
        self.to
    }
}

/// Where the roll-ups of `video_stats` have got to, in minutes (`rollup_progress`): rows before `hours_before`
/// are hourly (or daily), rows before `days_before` daily. `None`: that roll-up has not run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollups {
    pub hours_before: Option<i64>,
    pub days_before: Option<i64>,
}

impl Rollups {
    /// The resolution history keeps the minute starting at `minute` in.
    pub fn resolution_at(&self, minute: i64) -> Resolution {
        if self.days_before.is_some_and(|d| minute < d) {
            Resolution::Day
        } else if self.hours_before.is_some_and(|h| minute < h) {
            Resolution::Hour
        } else {
            Resolution::Minute
        }
    }
}

/// How one range is summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The range summed: the one asked for, each end rounded outwards to the resolution history keeps there.
    pub range: MinuteRange,
    /// The coarsest of the two ends' resolutions (that of `from`: history is coarser the older it is).
    pub resolution: Resolution,
    /// Whole days read from `video_stats_daily` (their starts).
    pub days: Range<i64>,
    /// Runs of whole hours read from `video_stats_hourly` (their starts).
    pub hours: Vec<Range<i64>>,
    /// What is left, summed from `video_stats`: the partial hours at the ends, and periods the totals do not
    /// cover yet (the hour in progress, or a history still being added to them).
    pub rest: Vec<Range<i64>>,
}

fn floor(m: i64, unit: i64) -> i64 {
    m.div_euclid(unit) * unit
}

fn ceil(m: i64, unit: i64) -> i64 {
    -floor(-m, unit)
}

/// Rounds `asked` outwards to the resolution at each end and cuts it into what the totals cover and the rest.
pub fn plan(asked: MinuteRange, rollups: Rollups, coverage: Coverage) -> Plan {
    let at_from = rollups.resolution_at(asked.from);
    let at_to = rollups.resolution_at(asked.to - 1);
    let from = floor(asked.from, at_from.minutes());
    let to = ceil(asked.to, at_to.minutes());
    let mut plan = Plan {
        range: MinuteRange { from, to },
        resolution: at_from.max(at_to),
        days: 0..0,
        hours: Vec::new(),
        rest: Vec::new(),
    };
    let mut at = from;
    if at % DAY != 0 {
        let head_end = ceil(at, DAY).min(to);
        cover_hours(&mut plan, at..head_end, coverage);
        at = head_end;
    }
    let days_end = floor(to, DAY).min(coverage.days_through.map_or(at, |d| floor(d, DAY)));
    if at % DAY == 0 && at < days_end {
        plan.days = at..days_end;
        at = days_end;
    }
    cover_hours(&mut plan, at..to, coverage);
    plan
}

/// Adds `span` to `plan`: the run of whole hours in it that the hourly totals cover, and the rest.
fn cover_hours(plan: &mut Plan, span: Range<i64>, coverage: Coverage) {
    if span.is_empty() {
        return;
    }
    let first = ceil(span.start, HOUR).max(coverage.hours_from.unwrap_or(i64::MIN));
    let end = floor(span.end, HOUR).min(coverage.hours_through.unwrap_or(i64::MIN));
    if first < end {
        add_rest(plan, span.start..first);
        plan.hours.push(first..end);
        add_rest(plan, end..span.end);
    } else {
        add_rest(plan, span);
    }
}

fn add_rest(plan: &mut Plan, span: Range<i64>) {
    if span.is_empty() {
        return;
    }
    match plan.rest.last_mut() {
        Some(last) if last.end == span.start => last.end = span.end,
        _ => plan.rest.push(span),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: i64 = 20_000 * DAY;

    fn range(from: i64, to: i64) -> MinuteRange {
        MinuteRange::new(from, to).unwrap()
    }

    fn covered_all() -> Coverage {
        Coverage {
            hours_from: None,
            hours_through: Some(i64::MAX / 2),
            days_through: Some(i64::MAX / 2),
        }
    }

    #[test]
    fn a_range_through_days_is_cut_into_edges_hours_and_days() {
        // 10:17 on day 0 to 03:30 on day 3.
        let p = plan(
            range(D + 617, D + 3 * DAY + 210),
            Rollups::default(),
            covered_all(),
        );
        assert_eq!(p.resolution, Resolution::Minute);
        assert_eq!(p.range, range(D + 617, D + 3 * DAY + 210));
        assert_eq!(p.days, D + DAY..D + 3 * DAY);
        assert_eq!(
            p.hours,
            vec![D + 660..D + DAY, D + 3 * DAY..D + 3 * DAY + 180]
        );
        assert_eq!(
            p.rest,
            vec![D + 617..D + 660, D + 3 * DAY + 180..D + 3 * DAY + 210]
        );
    }

    #[test]
    fn ends_in_rolled_up_history_are_rounded_outwards() {
        let rollups = Rollups {
            hours_before: Some(D + 10 * DAY),
            days_before: Some(D + 2 * DAY),
        };
        // From inside the hourly stretch to inside the minute one.
        let p = plan(
            range(D + 3 * DAY + 617, D + 11 * DAY + 5),
            rollups,
            covered_all(),
        );
        assert_eq!(p.resolution, Resolution::Hour);
        assert_eq!(p.range, range(D + 3 * DAY + 600, D + 11 * DAY + 5));
        // Both ends inside the daily stretch: whole days.
        let p = plan(range(D + 617, D + DAY + 1), rollups, covered_all());
        assert_eq!(p.resolution, Resolution::Day);
        assert_eq!(p.range, range(D, D + 2 * DAY));
        assert_eq!(p.days, D..D + 2 * DAY);
        // An end exactly at a boundary stays.
        let p = plan(range(D + 5 * DAY, D + 6 * DAY), rollups, covered_all());
        assert_eq!(p.resolution, Resolution::Hour);
        assert_eq!(p.range, range(D + 5 * DAY, D + 6 * DAY));
    }

    #[test]
    fn periods_not_covered_yet_are_summed_from_the_minutes() {
        // Hours covered through 09:00 of day 1, days through day 1.
        let coverage = Coverage {
            hours_from: None,
            hours_through: Some(D + DAY + 540),
            days_through: Some(D + DAY),
        };
        let p = plan(range(D, D + DAY + 600), Rollups::default(), coverage);
        assert_eq!(p.days, D..D + DAY);
        assert_eq!(p.hours, vec![D + DAY..D + DAY + 540]);
        assert_eq!(p.rest, vec![D + DAY + 540..D + DAY + 600]);
        // Nothing covered: one span of minutes.
        let p = plan(
            range(D + 5, D + 2 * DAY),
            Rollups::default(),
            Coverage::default(),
        );
        assert_eq!((p.days.is_empty(), p.hours.is_empty()), (true, true));
        assert_eq!(p.rest, vec![D + 5..D + 2 * DAY]);
    }

    proptest! {
        /// The pieces cover the rounded range exactly once, each whole period is covered by its table, every
        /// end lies on a boundary of its resolution, and the rounded range contains the one asked for.
        #[test]
        fn pieces_tile_the_range(from in 0i64..10 * DAY, len in 1i64..8 * DAY,
                                 hours_before in proptest::option::of(0i64..12),
                                 days_before in proptest::option::of(0i64..12),
                                 hours_through in proptest::option::of(0i64..300),
                                 days_through in proptest::option::of(0i64..14)) {
            let rollups = Rollups {
                hours_before: hours_before.map(|d| D + d * DAY),
                days_before: days_before.map(|d| D + d * DAY),
            };
            let coverage = Coverage {
                hours_from: rollups.days_before,
                hours_through: hours_through.map(|h| D + h * HOUR),
                days_through: days_through.map(|d| D + d * DAY),
            };
            let asked = range(D + from, D + from + len);
            let p = plan(asked, rollups, coverage);
            prop_assert!(p.range.from <= asked.from && p.range.to >= asked.to);
            let mut pieces: Vec<Range<i64>> = Vec::new();
            for day in p.days.clone().step_by(DAY as usize) {
                prop_assert!(coverage.day_covered(day));
                pieces.push(day..day + DAY);
            }
            for run in &p.hours {
                for hour in run.clone().step_by(HOUR as usize) {
                    prop_assert!(coverage.hour_covered(hour), "{hour}");
                    pieces.push(hour..hour + HOUR);
                }
            }
            pieces.extend(p.rest.iter().cloned());
            pieces.sort_by_key(|r| r.start);
            let mut at = p.range.from;
            for piece in &pieces {
                prop_assert_eq!(piece.start, at);
                prop_assert!(piece.start < piece.end);
                at = piece.end;
            }
            prop_assert_eq!(at, p.range.to);
            // Rows of a rolled-up stretch are never cut: every piece's ends are on a boundary of the
            // resolution there.
            for piece in &pieces {
                for end in [piece.start, piece.end] {
                    let unit = rollups.resolution_at(end).max(rollups.resolution_at(end - 1)).minutes();
                    prop_assert_eq!(end % unit, 0, "{:?} in {:?}", end, p);
                }
            }
        }
    }
}
