//! Prometheus metrics: every metric topk exports is named once here ([`CATALOG`]), with its help text; the
//! process installs the recorder at start ([`install`]) and serves [`render`] on `GET /metrics`.
//!
//! Metrics are recorded with the `metrics` crate's macros where things happen (`metrics::counter!(...)`).
//! [`install`] registers every catalogued series at zero for the label values known up front, so a counter is
//! there (and `rate()` works) before its first increment, and a dashboard never shows "no data" for a failure
//! that has not happened yet.

use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// How a metric is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Which part of topk records a metric: a process registers the metrics of the parts it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Every process (build info, Redis errors).
    Any,
    /// The ingest receiver (`POST /v1/views`).
    Receiver,
    /// Ingest workers and the retirer (the log's backlog too).
    Workers,
    /// The API.
    Api,
    /// `topk-snapshotter run`.
    Snapshotter,
    /// The ingest Kafka source (`TOPK_INGEST_ROLE=kafka`).
    Kafka,
}

/// One exported metric: its name, kind, help text, and the label values registered at zero at start (one
/// label name, or none).
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub part: Part,
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// `(label name, values)` to register at start; empty values: the series appears on first use.
    pub labels: (&'static str, &'static [&'static str]),
    /// Registered at zero at start; false for a gauge whose 0 would be a false reading (it appears with its
    /// first real value instead).
    pub starts_at_zero: bool,
}

const fn metric(part: Part, name: &'static str, kind: Kind, help: &'static str) -> Metric {
    Metric {
        part,
        name,
        kind,
        help,
        labels: ("", &[]),
        starts_at_zero: true,
    }
}

/// A gauge without labels that is exported only once it has a real value.
const fn measured(part: Part, name: &'static str, help: &'static str) -> Metric {
    Metric {
        starts_at_zero: false,
        ..metric(part, name, Kind::Gauge, help)
    }
}

const fn labelled(
    part: Part,
    name: &'static str,
    kind: Kind,
    help: &'static str,
    label: &'static str,
    values: &'static [&'static str],
) -> Metric {
    Metric {
        part,
        name,
        kind,
        help,
        labels: (label, values),
        starts_at_zero: true,
    }
}

/// Why the receiver refused a batch (`topk_ingest_batches_rejected_total{reason}`).
pub const REJECT_REASONS: &[&str] = &[
    "invalid",
    "unauthorized",
    "too_large",
    "backlog",
    "unavailable",
    "not_replicated",
    "idempotency_conflict",
];

/// Kinds of failed Redis commands (`topk_redis_errors_total{kind}`), see [`crate::redis::StoreError::kind`].
pub const REDIS_ERROR_KINDS: &[&str] = &["timeout", "connection", "cluster", "script", "other"];

/// What became of a Kafka record (`topk_kafka_records_total{outcome}`).
pub const KAFKA_OUTCOMES: &[&str] = &["forwarded", "malformed", "replayed"];

const SLIDING_WINDOWS: &[&str] = &["minute", "hour", "day"];
const ALL_WINDOWS: &[&str] = &["minute", "hour", "day", "all"];

/// Every metric topk exports. Deployment files (dashboard, alert rules) may use only these names; a test
/// checks it.
pub const CATALOG: &[Metric] = &[
    labelled(Part::Any, "topk_build_info", Kind::Gauge, "1, labelled with the running version", "version", &[]),
    // Receiver.
    metric(Part::Receiver, "topk_ingest_views_accepted_total", Kind::Counter, "Views in batches answered 202 (a batch sent again under its Idempotency-Key counts again)"),
    metric(Part::Receiver, "topk_ingest_batches_accepted_total", Kind::Counter, "Batches answered 202"),
    metric(Part::Receiver, "topk_ingest_groups_total", Kind::Counter, "Groups of batches appended together (group commit: one log entry per partition for the group); batches over groups is their average size"),
    labelled(Part::Receiver, "topk_ingest_batches_rejected_total", Kind::Counter, "Batches refused, by reason: nothing of them was stored, except for unavailable/not_replicated on a cluster (the 503 names the key to complete them)", "reason", REJECT_REASONS),
    metric(Part::Receiver, "topk_ingest_idempotent_replays_total", Kind::Counter, "Batches answered 202 from their Idempotency-Key's record: already stored, not stored again"),
    labelled(Part::Receiver, "topk_ingest_request_duration_seconds", Kind::Histogram, "Time from request head to response, by route, on the ingest receiver", "route", &[]),
    labelled(Part::Receiver, "topk_ingest_requests_total", Kind::Counter, "Requests answered by the ingest receiver, by route and status", "route", &[]),
    // Workers.
    metric(Part::Workers, "topk_views_applied_total", Kind::Counter, "Views applied to the windows by this process's workers (each exactly once)"),
    metric(Part::Workers, "topk_log_entries_applied_total", Kind::Counter, "Log entries applied and acknowledged by this process's workers"),
    metric(Part::Workers, "topk_apply_batch_seconds", Kind::Histogram, "One worker step: read a batch of log entries, aggregate it, apply it with its acknowledgement"),
    labelled(Part::Workers, "topk_log_backlog_entries", Kind::Gauge, "Log entries not yet applied (undelivered or unacknowledged), by partition", "partition", &[]),
    metric(Part::Workers, "topk_freshness_seconds", Kind::Gauge, "Age of the oldest log entry not yet applied, over every partition (0 when all is applied): how far the rankings trail the views"),
    // Retirer.
    labelled(Part::Workers, "topk_retire_lag_seconds", Kind::Gauge, "Seconds since the window was last retired up to date on every partition (about the retire interval when healthy)", "window", SLIDING_WINDOWS),
    labelled(Part::Workers, "topk_slices_retired_total", Kind::Counter, "Slices subtracted from a window as they left it", "window", SLIDING_WINDOWS),
    metric(Part::Workers, "topk_log_entries_trimmed_total", Kind::Counter, "Acknowledged log entries trimmed past their retention"),
    // Kafka source.
    metric(Part::Kafka, "topk_kafka_partitions_gone_back", Kind::Gauge, "Assigned Kafka partitions whose end offset is at or below the offset the logs have already taken from them (the topic was recreated, or the broker lost records): their new records are dropped as already forwarded until their offsets pass the kept ones. 0 when healthy"),
    labelled(Part::Kafka, "topk_kafka_records_total", Kind::Counter, "Kafka records read by the kafka role, by outcome: forwarded (its views put in the log, once), malformed (kept in the dead-letter stream with the reason) or replayed (already taken whole by the logs or the dead letters: dropped; read again after a crash or a rebalance, twice in a batch, or behind offsets gone back)", "outcome", KAFKA_OUTCOMES),
    // API.
    labelled(Part::Api, "topk_api_request_duration_seconds", Kind::Histogram, "Time from request head to response, by route, on the API", "route", &[]),
    labelled(Part::Api, "topk_api_requests_total", Kind::Counter, "Requests answered by the API, by route and status", "route", &[]),
    labelled(Part::Api, "topk_ranking_scans_total", Kind::Counter, "Partitions whose window hash a ranking read had to scan, by window: their leader set stopped above the K-th count read, so it might have hidden part of the top K (leader sets hold a partition's share of the top K with a margin, so this stays rare unless the top K crowds into few partitions; the snapshotter's ranking job counts its own reads too)", "window", ALL_WINDOWS),
    labelled(Part::Api, "topk_ranking_age_seconds", Kind::Gauge, "Age of the ranking last served for the window: how long ago it was read from Redis (a shared ranking is reused for up to TOPK_RANKING_CACHE_MS)", "window", ALL_WINDOWS),
    // Every HTTP server.
    labelled(Part::Any, "topk_http_requests_refused_total", Kind::Counter, "Requests the server answered before routing them: busy (503, too many in flight), timeout (408), head_too_large (431)", "reason", &["busy", "timeout", "head_too_large"]),
    // Redis.
    labelled(Part::Any, "topk_redis_errors_total", Kind::Counter, "Redis commands that failed, by kind (timeout, connection, cluster redirection or outage, script, other)", "kind", REDIS_ERROR_KINDS),
    // Snapshotter.
    measured(Part::Snapshotter, "topk_snapshot_lag_seconds", "Now minus the end of the newest minute every partition has written to Postgres (absent until the checkpoints were read once: a 0 would hide a snapshotter that never could)"),
    labelled(Part::Snapshotter, "topk_snapshot_runs_total", Kind::Counter, "Snapshotter job runs, by job (minutes, rankings, upkeep) and outcome (ok, error)", "job", &[]),
    labelled(Part::Snapshotter, "topk_snapshot_duration_seconds", Kind::Histogram, "Time a snapshotter job run took, by job", "job", &[]),
    metric(Part::Snapshotter, "topk_snapshot_leader", Kind::Gauge, "1 on the snapshotter holding the lock (writing), 0 on a standby"),
];

/// Bucket bounds of request and apply histograms, in seconds: sub-millisecond to the request timeout.
const FAST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds of snapshotter jobs, in seconds: a quiet minute to a catch-up over hours.
const JOB_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// How often histograms are folded into their buckets: without it their samples would pile up between
/// scrapes, or forever with no scraper.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls, as in tests that build several services in one process,
/// reuse it), describes every metric, and registers the known series of `parts` (and of [`Part::Any`]) at zero.
pub fn install(parts: &[Part]) -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), FAST_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("topk_snapshot_duration_seconds".into()),
                    JOB_BUCKETS,
                )
            })
            .expect("bucket lists are not empty")
            .install_recorder()
            .expect("the metrics recorder is installed once, here");
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            })
            .expect("spawn the metrics upkeep thread");
        register_catalog(parts);
        handle
    })
}

/// The Prometheus text of every metric of this process (installing the recorder if nothing did).
pub fn render() -> String {
    install(&[]).render()
}

fn register_catalog(parts: &[Part]) {
    for m in CATALOG
        .iter()
        .filter(|m| m.part == Part::Any || parts.contains(&m.part))
    {
        if !m.starts_at_zero {
            describe_gauge!(m.name, m.help);
            continue;
        }
        match m.kind {
            Kind::Counter => describe_counter!(m.name, m.help),
            Kind::Gauge => describe_gauge!(m.name, m.help),
            Kind::Histogram => describe_histogram!(m.name, m.help),
        }
        let (label, values) = m.labels;
        for value in values {
            match m.kind {
                Kind::Counter => metrics::counter!(m.name, label => *value).absolute(0),
                Kind::Gauge => metrics::gauge!(m.name, label => *value).set(0.0),
                Kind::Histogram => {}
            }
        }
        if label.is_empty() {
            match m.kind {
                Kind::Counter => metrics::counter!(m.name).absolute(0),
                Kind::Gauge => metrics::gauge!(m.name).set(0.0),
                // Registering is enough: it renders with empty buckets.
                Kind::Histogram => drop(metrics::histogram!(m.name)),
            }
        }
    }
    metrics::gauge!("topk_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Whether `name` (a series name as a query writes it: `_bucket`, `_sum` and `_count` of a histogram
/// included) is a metric of [`CATALOG`].
pub fn is_catalogued(name: &str) -> bool {
    CATALOG.iter().any(|m| {
        m.name == name
            || (m.kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(m.name)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_once_and_follows_the_conventions() {
        let mut names: Vec<_> = CATALOG.iter().map(|m| m.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a metric is catalogued twice");
        for m in CATALOG {
            assert!(m.name.starts_with("topk_"), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            if m.kind == Kind::Histogram {
                assert!(
                    m.name.ends_with("_seconds"),
                    "{}: a histogram of seconds",
                    m.name
                );
            }
        }
        assert!(is_catalogued("topk_apply_batch_seconds_bucket"));
        assert!(!is_catalogued("topk_views_applied_total_bucket"));
        assert!(!is_catalogued("topk_no_such_metric"));
    }
}
