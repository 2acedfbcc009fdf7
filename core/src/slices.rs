//! Slice and window arithmetic: pure functions of a time in milliseconds since the Unix epoch.
//!
//! Event time is the log entry's (its id's timestamp, or the event time a source wrote beside its lines), so a
//! replayed view lands in the same slice as the first time.
//! A window of `slices` slices of `slice_ms` covers the slices `current - slices + 1 ..= current`, the current
//! one partial: its true span is between W - g and W. Slices at or below [`retire_target`] have left it.

use crate::domain::Window;

/// Length of the minute window's slices.
pub const SLICE5_MS: i64 = 5_000;
/// Length of a minute bucket, the slice of the hour and day windows and the unit of history.
pub const MINUTE_MS: i64 = 60_000;
/// How many 5-second slices make a minute (slice5 / this = minute).
pub const SLICE5_PER_MINUTE: i64 = MINUTE_MS / SLICE5_MS;

/// The slicing of one sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub slice_ms: i64,
    pub slices: i64,
}

/// How each sliding window is sliced; `None` for the all-time window, which has no tail.
pub fn spec(window: Window) -> Option<WindowSpec> {
    match window {
        Window::Minute => Some(WindowSpec {
            slice_ms: SLICE5_MS,
            slices: 12,
        }),
        Window::Hour => Some(WindowSpec {
            slice_ms: MINUTE_MS,
            slices: 60,
        }),
        Window::Day => Some(WindowSpec {
            slice_ms: MINUTE_MS,
            slices: 1440,
        }),
        Window::All => None,
    }
}

/// The 5-second slice a time falls in.
pub fn slice5_of(ms: i64) -> i64 {
    ms.div_euclid(SLICE5_MS)
}

/// The minute a time falls in (minutes since the epoch).
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS)
}

/// The slice of `window` that a time falls in.
pub fn slice_of(spec: WindowSpec, ms: i64) -> i64 {
    ms.div_euclid(spec.slice_ms)
}

/// The newest slice that has left the window at `now_ms`: every slice at or below it must be retired.
pub fn retire_target(spec: WindowSpec, now_ms: i64) -> i64 {
    slice_of(spec, now_ms) - spec.slices
}

/// The slices a window covers at `now_ms`, oldest first.
pub fn window_slices(spec: WindowSpec, now_ms: i64) -> std::ops::RangeInclusive<i64> {
    let current = slice_of(spec, now_ms);
    (current - spec.slices + 1)..=current
}

/// Whether a view at `event_ms` counts in `window` at `now_ms` (the brute-force definition tests compare with).
pub fn in_window(window: Window, event_ms: i64, now_ms: i64) -> bool {
    match spec(window) {
        None => event_ms <= now_ms,
        Some(s) => window_slices(s, now_ms).contains(&slice_of(s, event_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_window_spans_twelve_slices() {
        let s = spec(Window::Minute).unwrap();
        let now = 1_700_000_003_000; // 3 s into a 5-second slice
        let r = window_slices(s, now);
        assert_eq!(r.clone().count(), 12);
        assert!(in_window(Window::Minute, now - 55_000, now));
        assert!(!in_window(Window::Minute, now - 60_000, now));
        assert_eq!(retire_target(s, now), *r.start() - 1);
    }

    #[test]
    fn slices_nest_in_minutes() {
        for ms in [0, 4_999, 5_000, 59_999, 60_000, 1_700_000_123_456] {
            assert_eq!(slice5_of(ms) / SLICE5_PER_MINUTE, minute_of(ms));
        }
    }
}
