//! What must hold after a fault: every query served, the log drained, every accepted view counted once.

use super::report::{add_to_suite, report};
use super::tally::Tally;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use topk_core::domain::Window;
use topk_core::redis::RedisStore;
use topk_testkit::wait_until;

/// Asserts that every query was answered, none with an error other than 503, and at most 5% with 503: a
/// query may time out on a Redis slowed by the load on a shared machine, but a route that failed because of
/// the fault under test would fail nearly every time. Returns the number of 503s.
pub fn assert_queries_served(what: &str, queries: &[(String, Option<u16>, Duration)]) -> usize {
    let unanswered = queries.iter().filter(|(_, s, _)| s.is_none()).count();
    let failed: Vec<_> = queries
        .iter()
        .filter(|(_, s, _)| s.is_some_and(|s| s != 200 && s != 503))
        .collect();
    let unavailable = queries.iter().filter(|(_, s, _)| *s == Some(503)).count();
    assert!(
        unanswered == 0 && failed.is_empty() && unavailable * 20 <= queries.len(),
        "{what}: of {} queries {unanswered} unanswered, {unavailable} answered 503, others failed: {:?}",
        queries.len(),
        &failed[..failed.len().min(10)]
    );
    unavailable
}

/// Polls until no partition has log entries waiting (undelivered or unacknowledged), at most `within`.
pub async fn drain(store: &RedisStore, within: Duration) {
    wait_until("the log applied", within, || async {
        let mut backlog = 0;
        for p in store.keys().all_partitions() {
            backlog += store
                .log_state()
                .log_backlog(p)
                .await
                .map_err(|e| e.to_string())?;
        }
        match backlog {
            0 => Ok(()),
            n => Err(format!("{n} log entries not applied")),
        }
    })
    .await;
}

/// Every video's count in `window`, over all partitions.
pub async fn counted(store: &RedisStore, window: Window) -> HashMap<String, u64> {
    let mut all = HashMap::new();
    for p in store.keys().all_partitions() {
        all.extend(store.recovery().window_counts(p, window).await.unwrap());
    }
    all
}

/// What [`check_windows`] found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Views of unanswered requests that were counted anyway (allowed: stored, then the answer was lost).
    pub unanswered_counted: u64,
}

/// The exactness check after a fault: in each of `windows`, every video's count lies between its accepted
/// views and its accepted plus unanswered views. Panics on any view lost or doubled; prints the summary line.
pub async fn check_windows(
    test: &str,
    store: &RedisStore,
    tally: &Tally,
    windows: &[Window],
    faults: u64,
) -> Outcome {
    let (mut lost, mut doubled, mut extra) = (0u64, 0u64, 0u64);
    let (mut problems, mut window_lines) = (Vec::new(), Vec::new());
    for &w in windows {
        let got = counted(store, w).await;
        let mut videos: Vec<&String> = tally
            .accepted
            .keys()
            .chain(tally.unanswered.keys())
            .chain(got.keys())
            .collect();
        videos.sort();
        videos.dedup();
        let (mut w_lost, mut w_doubled, mut w_extra) = (0, 0, 0);
        for v in videos {
            let have = got.get(v).copied().unwrap_or(0);
            let must = tally.accepted.get(v).copied().unwrap_or(0);
            let may = must + tally.unanswered.get(v).copied().unwrap_or(0);
            if have < must {
                w_lost += must - have;
                problems.push(format!("{w} {v}: counted {have} < accepted {must}"));
            } else if have > may {
                w_doubled += have - may;
                problems.push(format!(
                    "{w} {v}: counted {have} > accepted plus unanswered {may}"
                ));
            } else {
                w_extra += have - must;
            }
        }
        lost = lost.max(w_lost);
        doubled = doubled.max(w_doubled);
        extra = extra.max(w_extra);
        // One line per window first: the per-video list below is cut short, and which windows lost views
        // tells a batch never applied (every window checked) from a slice judged retired (sliding ones only).
        if w_lost > 0 || w_doubled > 0 {
            window_lines.push(format!("{w}: lost {w_lost}, doubled {w_doubled}"));
        }
    }
    let names: Vec<String> = windows.iter().map(|w| w.to_string()).collect();
    report(&format!(
        "faults {test}: faults injected {faults}, views sent {}, accepted {}, unanswered {} (of which counted {extra}), \
         lost {lost}, doubled {doubled}; windows {}",
        tally.views_sent,
        tally.views_accepted,
        tally.views_unanswered,
        names.join("/")
    ));
    problems.truncate(20);
    assert!(
        lost == 0 && doubled == 0,
        "{test}: {lost} views lost, {doubled} doubled:\n{}\n{}",
        window_lines.join("\n"),
        problems.join("\n")
    );
    add_to_suite(faults, tally.views_sent, tally.views_accepted);
    Outcome {
        unanswered_counted: extra,
    }
}

/// The windows a check can compare with the views sent since `started`: the minute window only while none
/// of them can have left it yet (a slice leaves it 55 to 60 s after it began).
pub fn windows_since(started: Instant) -> &'static [Window] {
    if started.elapsed() < Duration::from_secs(50) {
        &Window::ALL
    } else {
        &[Window::Hour, Window::Day, Window::All]
    }
}
