//! What an operator relies on, on the real processes: metrics that agree exactly with the traffic (and cover
//! every metric the dashboard and alert rules use), and settings refused at start with the setting named.
//! Readiness is [`crate::readiness`].
//!
//! The processes are spawned (not run in this test process) so that each has its own metrics registry.

use crate::faults::{Env, Proc, TOKEN};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;
use topk_core::metrics::{is_catalogued, Part, CATALOG};
use topk_testkit::{free_port, wait_until};

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus's text format: `name{label="value",...} number` lines; comments skipped.
fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let labels = inner
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").expect("label=\"value\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            Sample {
                name,
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

struct Scrape(Vec<Sample>);

impl Scrape {
    /// The value of the one series named `name` with (at least) `labels`; panics naming it when absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in the scrape"))
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        assert!(
            matching.len() <= 1,
            "{name}{labels:?} matches several series"
        );
        matching.first().copied()
    }

    /// Every metric name in the scrape, histogram series folded into their metric.
    fn metric_names(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .map(|s| {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        let base = s.name.strip_suffix(suffix)?;
                        CATALOG
                            .iter()
                            .any(|m| m.name == base)
                            .then(|| base.to_owned())
                    })
                    .unwrap_or_else(|| s.name.clone())
            })
            .collect()
    }
}

async fn scrape(http: &reqwest::Client, port: u16) -> Scrape {
    let response = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Scrape(parse_exposition(&response.text().await.unwrap()))
}

/// Scrapes `port` until `ready` holds of the scrape, for at most `within`.
async fn scrape_until(
    http: &reqwest::Client,
    port: u16,
    within: Duration,
    what: &str,
    ready: impl Fn(&Scrape) -> bool,
) -> Scrape {
    wait_until(what, within, || async {
        let s = scrape(http, port).await;
        ready(&s).then_some(s)
    })
    .await
}

/// Every `topk_*` metric name used by the deployment files (dashboard, alert rules, scrape config).
fn metric_names_in_deploy_files() -> BTreeSet<String> {
    fn walk(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, names);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("json" | "yml" | "yaml")
            ) {
                let text = std::fs::read_to_string(&path).unwrap();
                let mut rest = text.as_str();
                while let Some(at) = rest.find("topk_") {
                    let word: String = rest[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    // `topk_` inside a longer identifier (e.g. `x_topk_y`) is not a metric.
                    let inside = rest[..at]
                        .chars()
                        .last()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !inside && word.len() > "topk_".len() {
                        names.insert(word.clone());
                    }
                    rest = &rest[at + word.len().max(1)..];
                }
            }
        }
    }
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut names = BTreeSet::new();
    if deploy.is_dir() {
        walk(&deploy, &mut names);
    }
    names
}

async fn post(
    http: &reqwest::Client,
    port: u16,
    body: &str,
    headers: &[(&str, &str)],
) -> StatusCode {
    let mut request = http
        .post(format!("http://127.0.0.1:{port}/v1/views"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.expect("POST /v1/views").status()
}

/// Every counter of ingest, the workers, the API and the snapshotter agrees exactly with the traffic sent, every
/// catalogued metric is exported by some process, and every metric the deployment files use is catalogued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_agree_with_the_traffic_and_cover_the_deployment_files() {
    let mut env = Env::new(&topk_testkit::servers().redis_url, "metrics", 4);
    env.database_url = Some(topk_testkit::fresh_database("metrics"));
    env.snapshotter_once(&["migrate"]).await;
    let (ingest_port, api_port, snap_admin) = (free_port(), free_port(), free_port());
    let _ingest = env.ingest("all", ingest_port, &[("TOPK_MAX_BODY_BYTES", "1024")]);
    let _api = env.api(api_port, &[]);
    let _snapshotter: Proc = env.snapshotter(
        &["run"],
        &[("TOPK_ADMIN_ADDR", &format!("127.0.0.1:{snap_admin}"))],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let auth = format!("Bearer {TOKEN}");
    let bearer = [("authorization", auth.as_str())];

    // Accepted: 20 batches of two elements, then one batch under a key, sent twice (the second a replay).
    let mut views = 0u64;
    for i in 0..20u64 {
        let body = json!([{"videoId": format!("v{i}"), "count": i + 1}, {"videoId": "w"}]);
        assert_eq!(
            post(&http, ingest_port, &body.to_string(), &bearer).await,
            StatusCode::ACCEPTED
        );
        views += i + 2;
    }
    let keyed = [bearer[0], ("idempotency-key", "metrics-key-1")];
    for _ in 0..2 {
        assert_eq!(
            post(
                &http,
                ingest_port,
                r#"[{"videoId": "k", "count": 5}]"#,
                &keyed
            )
            .await,
            StatusCode::ACCEPTED
        );
    }
    // Refused, each for its reason.
    let conflict = post(
        &http,
        ingest_port,
        r#"[{"videoId": "k", "count": 6}]"#,
        &keyed,
    )
    .await;
    assert_eq!(conflict, StatusCode::UNPROCESSABLE_ENTITY);
    for bad in ["not json", "[]", r#"[{"videoId": ""}]"#] {
        assert_eq!(
            post(&http, ingest_port, bad, &bearer).await,
            StatusCode::BAD_REQUEST
        );
    }
    for _ in 0..3 {
        let status = post(&http, ingest_port, r#"[{"videoId": "x"}]"#, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let large = format!("[{}]", vec![r#"{"videoId": "abcdefgh"}"#; 60].join(","));
    assert_eq!(
        post(&http, ingest_port, &large, &bearer).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // The workers apply every stored view once: the replay stored nothing.
    let applied = views + 5;
    let s = scrape_until(
        &http,
        ingest_port,
        Duration::from_secs(30),
        "views applied",
        |s| {
            s.find("topk_views_applied_total", &[]) == Some(applied as f64)
                && s.find("topk_freshness_seconds", &[]) == Some(0.0)
                && (0..4).all(|p| {
                    s.find("topk_log_backlog_entries", &[("partition", &p.to_string())])
                        == Some(0.0)
                })
        },
    )
    .await;
    assert_eq!(
        s.value("topk_ingest_views_accepted_total", &[]),
        (views + 10) as f64
    );
    assert_eq!(s.value("topk_ingest_batches_accepted_total", &[]), 22.0);
    assert_eq!(s.value("topk_ingest_idempotent_replays_total", &[]), 1.0);
    let rejected = |reason| s.value("topk_ingest_batches_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("idempotency_conflict"), 1.0);
    assert_eq!(rejected("invalid"), 3.0);
    assert_eq!(rejected("unauthorized"), 3.0);
    assert_eq!(rejected("too_large"), 1.0);
    assert_eq!(rejected("backlog"), 0.0);
    assert_eq!(rejected("unavailable"), 0.0);
    assert_eq!(
        s.value(
            "topk_ingest_requests_total",
            &[("route", "/v1/views"), ("status", "202")]
        ),
        22.0
    );
    assert_eq!(
        s.value(
            "topk_ingest_request_duration_seconds_count",
            &[("route", "/v1/views")]
        ),
        // Every POST, the 401s included (they are answered by the route's guard).
        (22 + 1 + 3 + 3 + 1) as f64
    );
    assert!(s.value("topk_log_entries_applied_total", &[]) >= 21.0);
    assert!(s.value("topk_apply_batch_seconds_count", &[]) >= 1.0);
    assert_eq!(
        s.value("topk_redis_errors_total", &[("kind", "timeout")]),
        0.0
    );
    let retire_lag = s.value("topk_retire_lag_seconds", &[("window", "minute")]);
    // Healthy is about the retire interval (50 ms here); a loaded 2-core machine may stall it for seconds.
    assert!(
        retire_lag < 30.0,
        "the minute window retires: lag {retire_lag} s"
    );
    assert_eq!(
        s.value("topk_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );

    // The API counts each request by route and status, and the age of what it served.
    for _ in 0..5 {
        let r = http
            .get(format!(
                "http://127.0.0.1:{api_port}/v1/topk?window=hour&k=3"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = http
        .get(format!("http://127.0.0.1:{api_port}/v1/topk?window=week"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let api = scrape(&http, api_port).await;
    let topk = ("route", "/v1/topk");
    for (name, labels, want) in [
        (
            "topk_api_requests_total",
            vec![topk, ("status", "200")],
            5.0,
        ),
        (
            "topk_api_requests_total",
            vec![topk, ("status", "400")],
            1.0,
        ),
        ("topk_api_request_duration_seconds_count", vec![topk], 6.0),
    ] {
        assert_eq!(api.value(name, &labels), want, "{name} {labels:?}");
    }
    let age = api.value("topk_ranking_age_seconds", &[("window", "hour")]);
    assert!((0.0..5.0).contains(&age), "ranking age {age}");
    assert!(
        api.find("topk_views_applied_total", &[]).is_none(),
        "the API exports only its own metrics"
    );

    // The snapshotter, on its admin address, once it has written.
    let snap = scrape_until(
        &http,
        snap_admin,
        Duration::from_secs(60),
        "a minute run",
        |s| {
            s.find(
                "topk_snapshot_runs_total",
                &[("job", "minutes"), ("outcome", "ok")],
            ) >= Some(1.0)
                && s.find("topk_snapshot_leader", &[]) == Some(1.0)
                // Exported once the checkpoints were read (every 10 s).
                && s.find("topk_snapshot_lag_seconds", &[]).is_some()
        },
    )
    .await;
    assert!(snap.value("topk_snapshot_lag_seconds", &[]) >= 0.0);
    assert!(
        snap.value(
            "topk_snapshot_duration_seconds_count",
            &[("job", "minutes")]
        ) >= 1.0
    );

    // Every catalogued metric is exported by one of the processes (but the kafka role's, which needs a broker:
    // `kafka.rs` checks it); every one the deployment uses is catalogued.
    let exported: BTreeSet<String> = [&s, &api, &snap]
        .iter()
        .flat_map(|scrape| scrape.metric_names())
        .collect();
    let missing: Vec<&str> = CATALOG
        .iter()
        .filter(|m| m.part != Part::Kafka)
        .map(|m| m.name)
        .filter(|name| !exported.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "catalogued but exported by no process: {missing:?}"
    );
    let uncatalogued: Vec<&str> = exported
        .iter()
        .map(String::as_str)
        .filter(|name| name.starts_with("topk_") && !is_catalogued(name))
        .collect();
    assert!(
        uncatalogued.is_empty(),
        "exported but not catalogued: {uncatalogued:?}"
    );
    let deploy = metric_names_in_deploy_files();
    let unknown: Vec<&String> = deploy.iter().filter(|n| !is_catalogued(n)).collect();
    assert!(
        unknown.is_empty(),
        "the deployment files use metrics topk does not export: {unknown:?}"
    );
}

/// Mistakes in the settings stop a process at once, with a message that names the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_at_start_naming_the_setting() {
    let env = Env::new(&topk_testkit::servers().redis_url, "refusals", 2);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let admin_in_use = format!("127.0.0.1:{taken_port}");
    // One node of the shared cluster, behind a single-node URL.
    let cluster_node = topk_testkit::cluster_url()
        .split(['?', '/'])
        .nth(2)
        .map(|node| format!("redis://{node}"))
        .unwrap();
    let cases: Vec<(&str, Proc, &[&str])> = vec![
        (
            "API address in use",
            env.api_unchecked(taken_port, &[]),
            &["TOPK_API_ADDR", "in use"],
        ),
        (
            "admin address in use",
            env.ingest_unchecked("worker", 0, &[("TOPK_ADMIN_ADDR", &admin_in_use)]),
            &["TOPK_ADMIN_ADDR", "in use"],
        ),
        (
            "a log filter that does not parse",
            env.ingest_unchecked("all", free_port(), &[("RUST_LOG", "topk_ingest=loud")]),
            &["RUST_LOG"],
        ),
        (
            "an unknown log format",
            env.ingest_unchecked("all", free_port(), &[("TOPK_LOG_FORMAT", "yaml")]),
            &["--log-format", "json", "text"],
        ),
        (
            "a Redis URL of another scheme",
            env.api_unchecked(free_port(), &[("TOPK_REDIS_URL", "http://127.0.0.1:6379")]),
            &["TOPK_REDIS_URL", "redis-cluster://", "\"http\""],
        ),
        (
            "a Redis URL that turns certificate checks off",
            env.api_unchecked(
                free_port(),
                &[("TOPK_REDIS_URL", "rediss://127.0.0.1:6379/#insecure")],
            ),
            &["TOPK_REDIS_URL", "#insecure"],
        ),
        (
            "a single-node URL that names a cluster node",
            env.api_unchecked(free_port(), &[("TOPK_REDIS_URL", &cluster_node)]),
            &["is a Redis Cluster node", "redis-cluster://"],
        ),
        (
            "an idempotency retention too short for a retry",
            env.ingest_unchecked(
                "all",
                free_port(),
                &[("TOPK_IDEMPOTENCY_RETENTION_SECS", "1")],
            ),
            &["TOPK_IDEMPOTENCY_RETENTION_SECS", "at least"],
        ),
        (
            "a database URL that is not Postgres",
            env.snapshotter(&["run"], &[("TOPK_DATABASE_URL", "mysql://db/topk")]),
            &["TOPK_DATABASE_URL", "postgres://"],
        ),
    ];
    for (what, mut process, expected) in cases {
        let (status, _) = process.wait_exit(Duration::from_secs(20)).await;
        let log = process.log_tail();
        assert!(!status.success(), "{what}: the process started\n{log}");
        for text in expected {
            assert!(
                log.contains(text),
                "{what}: the error does not say {text:?}\n{log}"
            );
        }
    }
    drop(taken);
}
