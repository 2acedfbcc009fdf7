//! The figures the suite prints: one line per test, and running totals.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency percentiles of answered queries per route, as one printable line.
pub fn latency_line(samples: &[(String, Option<u16>, Duration)]) -> String {
    let mut by_route: HashMap<&str, Vec<Duration>> = HashMap::new();
    for (route, status, d) in samples {
        if *status == Some(200) {
            by_route.entry(route.as_str()).or_default().push(*d);
        }
    }
    let mut routes: Vec<_> = by_route.into_iter().collect();
    routes.sort_by_key(|(r, _)| *r);
    routes
        .into_iter()
        .map(|(route, mut ds)| {
            ds.sort();
            let q = |f: f64| ds[((ds.len() - 1) as f64 * f) as usize].as_secs_f64() * 1000.0;
            format!(
                "{route}: n={} p50={:.1}ms p99={:.1}ms max={:.1}ms",
                ds.len(),
                q(0.5),
                q(0.99),
                q(1.0)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The figures the suite prints, summed over its tests (lost and doubled stay 0, or a test has failed).
static FAULTS: AtomicU64 = AtomicU64::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// Prints one line to stderr bypassing the test harness's capture, so the figures show on success too.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Adds one test's figures to the suite's and prints the running totals: the last such line of a run is the
/// suite's summary.
pub fn add_to_suite(faults: u64, sent: u64, accepted: u64) {
    let faults = FAULTS.fetch_add(faults, Ordering::Relaxed) + faults;
    let sent = SENT.fetch_add(sent, Ordering::Relaxed) + sent;
    let accepted = ACCEPTED.fetch_add(accepted, Ordering::Relaxed) + accepted;
    report(&format!(
        "faults suite so far: faults injected {faults}, views sent {sent}, views accepted {accepted}, \
         views lost 0, views doubled 0"
    ));
}
