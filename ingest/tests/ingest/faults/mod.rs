//! The fault suite: the real `topk-ingest`, `topk-api` and `topk-snapshotter` processes on a real Redis and
//! PostgreSQL, broken on purpose while views arrive. After each fault every view answered 202 must be counted
//! exactly once in every window; a request that got no answer (or a 503) may or may not be counted, so a
//! video's count must lie between its accepted views and its accepted plus unanswered views.
//!
//! Layout:
//! - this file: the processes ([`Proc`]), the load ([`Sender`], [`Querier`]), what was sent ([`Ledger`]) and
//!   the exactness check ([`check_windows`]), which prints one summary line per test.
//! - [`processes`]: SIGKILL of workers and receivers, SIGTERM of every service.
//! - [`redis`]: Redis restarted with and without persistence, frozen, down.
//! - [`postgres`]: Postgres stopped across a minute while everything runs.
//! - [`retire`]: views arriving while their slice is retired (injected time).
//! - [`load`]: mixed ingest and queries for a bounded time, memory, log and keys bounded.
//!
//! Postgres stopped in the middle of a snapshot is `postgres_stopped_during_a_snapshot_leaves_no_gap` in
//! `snapshotter/tests/snapshotter.rs`.

mod load;
mod postgres;
mod processes;
mod redis;
mod retire;

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use topk_core::config::RedisConfig;
use topk_core::domain::Window;
use topk_core::redis::RedisStore;

pub const TOKEN: &str = "fault-token";

/// Milliseconds since the epoch on this machine's clock (the clock Redis stamps log entries with).
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A service binary built by cargo. `cargo test --workspace` builds every binary before the tests run; with
/// `-p topk-ingest` only this package's are, so a missing `topk-api` or `topk-snapshotter` is built here once
/// (`cargo build --bins` beforehand avoids it; an existing one is used as it is).
fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let ingest = PathBuf::from(env!("CARGO_BIN_EXE_topk-ingest"));
    let path = ingest.with_file_name(name);
    if path.is_file() {
        return path;
    }
    BUILT.get_or_init(|| {
        // The same profile as this test binary's (its folder is named after it).
        let profile = ingest
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|d| d.to_str())
            .map(|d| if d == "debug" { "dev" } else { d })
            .unwrap_or("dev")
            .to_owned();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--profile", &profile])
            .args(["-p", "topk-api", "-p", "topk-snapshotter", "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of the service binaries");
    });
    path
}

/// A service process owned by a test; killed when dropped. Its stderr goes to a file shown on failure.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

/// The settings every service shares.
#[derive(Clone, Debug)]
pub struct Env {
    pub redis_url: String,
    pub prefix: String,
    pub partitions: u16,
    pub database_url: Option<String>,
}

impl Env {
    pub fn new(redis_url: &str, label: &str, partitions: u16) -> Self {
        Self {
            redis_url: redis_url.to_owned(),
            prefix: topk_testkit::unique_name(label),
            partitions,
            database_url: None,
        }
    }

    /// A client of the test's own on this deployment's keys.
    pub async fn store(&self) -> RedisStore {
        RedisStore::connect(&RedisConfig {
            redis_url: self.redis_url.clone(),
            partitions: self.partitions,
            key_prefix: self.prefix.clone(),
            redis_timeout_ms: 5_000,
        })
        .await
        .unwrap()
    }

    fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(binary(bin));
        c.env("TOPK_REDIS_URL", &self.redis_url)
            .env("TOPK_KEY_PREFIX", &self.prefix)
            .env("TOPK_PARTITIONS", self.partitions.to_string())
            .env("TOPK_INGEST_TOKEN", TOKEN)
            .env("RUST_LOG", "warn");
        if let Some(db) = &self.database_url {
            c.env("TOPK_DATABASE_URL", db);
        }
        c
    }

    /// `topk-ingest` in a role (`all`, `receiver`, `worker`), listening on `port` unless a worker.
    pub fn ingest(&self, role: &str, port: u16, extra: &[(&str, &str)]) -> Proc {
        let mut c = self.command("topk-ingest");
        c.env("TOPK_INGEST_ROLE", role)
            .env("TOPK_INGEST_ADDR", format!("127.0.0.1:{port}"))
            .envs(extra.iter().copied());
        let p = Proc::spawn(&format!("topk-ingest {role}"), c);
        if role != "worker" {
            topk_testkit::wait_port(port, "topk-ingest");
        }
        p
    }

    pub fn api(&self, port: u16, extra: &[(&str, &str)]) -> Proc {
        let mut c = self.command("topk-api");
        c.env("TOPK_API_ADDR", format!("127.0.0.1:{port}"))
            .envs(extra.iter().copied());
        let p = Proc::spawn("topk-api", c);
        topk_testkit::wait_port(port, "topk-api");
        p
    }

    pub fn snapshotter(&self, args: &[&str], extra: &[(&str, &str)]) -> Proc {
        let mut c = self.command("topk-snapshotter");
        c.args(args).envs(extra.iter().copied());
        Proc::spawn(&format!("topk-snapshotter {}", args.join(" ")), c)
    }

    /// Runs a `topk-snapshotter` subcommand to completion and asserts it succeeded.
    pub async fn snapshotter_once(&self, args: &[&str]) {
        let mut p = self.snapshotter(args, &[]);
        let name = p.name.clone();
        let (status, _) = p.wait_exit(Duration::from_secs(120)).await;
        assert!(status.success(), "{name}: {status:?}\n{}", p.log_tail());
    }
}

impl Proc {
    fn spawn(name: &str, mut c: Command) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The end of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let start = text.len().saturating_sub(3_000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().unwrap();
        }
    }

    /// Waits (polling) for the process to exit by itself, at most `within`; kills it and panics after that.
    pub async fn wait_exit(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let child = self.child.as_mut().expect("process running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return (status, started.elapsed());
            }
            if started.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "{} did not exit within {within:?}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then asserts the process exits 0 within `within`; returns how long it took.
    pub async fn terminate(&mut self, within: Duration) -> Duration {
        topk_testkit::signal(self.pid(), "TERM");
        let (status, took) = self.wait_exit(within).await;
        assert!(
            status.success(),
            "{} exited with {status:?} after SIGTERM\n{}",
            self.name,
            self.log_tail()
        );
        took
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One batch of views: (video, count) pairs.
pub type Batch = Vec<(String, u64)>;

/// What the test sent and what each request was answered, per video.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Views of batches answered 202: each must be counted exactly once.
    pub accepted: HashMap<String, u64>,
    /// Views of batches that got no answer, or an error status: each may be counted at most once.
    pub unanswered: HashMap<String, u64>,
    pub views_sent: u64,
    pub views_accepted: u64,
    pub views_unanswered: u64,
    /// Views refused with a status (503, 429, ...), a subset of the unanswered ones.
    pub views_refused: u64,
    pub batches_accepted: u64,
    /// Each accepted batch: when its request started and when its answer came (wall ms), and its views.
    pub accepted_batches: Vec<(i64, i64, Batch)>,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        for (v, n) in &other.accepted {
            *self.accepted.entry(v.clone()).or_default() += n;
        }
        for (v, n) in &other.unanswered {
            *self.unanswered.entry(v.clone()).or_default() += n;
        }
        self.views_sent += other.views_sent;
        self.views_accepted += other.views_accepted;
        self.views_unanswered += other.views_unanswered;
        self.views_refused += other.views_refused;
        self.batches_accepted += other.batches_accepted;
        self.accepted_batches
            .extend(other.accepted_batches.iter().cloned());
    }
}

/// Sends random batches of views to an ingest receiver until stopped, recording every answer.
pub struct Sender {
    pub tally: Arc<Mutex<Tally>>,
    /// Where to send: a receiver restarted on another port is pointed at here.
    pub target: Arc<Mutex<String>>,
    /// Milliseconds each task waits between requests (0: as fast as answers come).
    pause_ms: Arc<AtomicU64>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sender {
    /// `concurrency` tasks, each sending one batch at a time of up to `max_batch` elements over `videos`
    /// video ids named `{tag}{n}`.
    pub fn start(port: u16, concurrency: usize, videos: u32, max_batch: usize, tag: &str) -> Self {
        let tally: Arc<Mutex<Tally>> = Arc::default();
        let target = Arc::new(Mutex::new(format!("http://127.0.0.1:{port}/v1/views")));
        let stop = CancellationToken::new();
        let pause_ms: Arc<AtomicU64> = Arc::default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let tasks = (0..concurrency)
            .map(|_| {
                let (tally, target, stop, http, tag, pause_ms) = (
                    tally.clone(),
                    target.clone(),
                    stop.clone(),
                    http.clone(),
                    tag.to_owned(),
                    pause_ms.clone(),
                );
                tokio::spawn(async move {
                    while !stop.is_cancelled() {
                        let batch: Vec<(String, u64)> = {
                            let mut rng = rand::rng();
                            (0..rng.random_range(1..=max_batch))
                                .map(|_| {
                                    (
                                        format!("{tag}{}", rng.random_range(0..videos)),
                                        rng.random_range(1..4),
                                    )
                                })
                                .collect()
                        };
                        let url = target.lock().unwrap().clone();
                        let started = wall_ms();
                        let answer = post_batch(&http, &url, &batch).await;
                        let answered = wall_ms();
                        let views: u64 = batch.iter().map(|(_, n)| n).sum();
                        {
                            let mut t = tally.lock().unwrap();
                            t.views_sent += views;
                            match answer {
                                Some(StatusCode::ACCEPTED) => {
                                    t.views_accepted += views;
                                    t.batches_accepted += 1;
                                    for (v, n) in &batch {
                                        *t.accepted.entry(v.clone()).or_default() += n;
                                    }
                                    t.accepted_batches.push((started, answered, batch));
                                }
                                other => {
                                    assert!(
                                        !other.is_some_and(|s| s.is_client_error()
                                            && s != StatusCode::TOO_MANY_REQUESTS),
                                        "a valid batch was refused with {other:?}"
                                    );
                                    t.views_unanswered += views;
                                    if other.is_some() {
                                        t.views_refused += views;
                                    }
                                    for (v, n) in &batch {
                                        *t.unanswered.entry(v.clone()).or_default() += n;
                                    }
                                }
                            }
                        }
                        let mut pause = pause_ms.load(Ordering::Relaxed);
                        if answer != Some(StatusCode::ACCEPTED) {
                            // A receiver being restarted refuses connections: do not spin.
                            pause = pause.max(20);
                        }
                        if pause > 0 {
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                        }
                    }
                })
            })
            .collect();
        Self {
            tally,
            target,
            pause_ms,
            stop,
            tasks,
        }
    }

    /// Waits `pause` between requests (a steady trickle for long tests on a shared machine).
    pub fn paced(self, pause: Duration) -> Self {
        self.pause_ms
            .store(pause.as_millis() as u64, Ordering::Relaxed);
        self
    }

    pub fn point_to(&self, port: u16) {
        *self.target.lock().unwrap() = format!("http://127.0.0.1:{port}/v1/views");
    }

    pub fn snapshot(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    /// Stops sending, waits for the requests in flight, and returns what was sent.
    pub async fn finish(self) -> Tally {
        self.stop.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
        let t = self.tally.lock().unwrap().clone();
        t
    }
}

/// Posts one batch; `None` when no answer came (connection refused or reset, timeout).
pub async fn post_batch(
    http: &reqwest::Client,
    url: &str,
    batch: &[(String, u64)],
) -> Option<StatusCode> {
    let body: Vec<Value> = batch
        .iter()
        .map(|(v, n)| json!({"videoId": v, "count": n}))
        .collect();
    let r = http
        .post(url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .ok()?;
    let status = r.status();
    // The answer is complete only once its body is read.
    r.bytes().await.ok()?;
    Some(status)
}

/// Queries an API process in a loop, recording each answer's status and latency.
pub struct Querier {
    pub target: Arc<Mutex<String>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Vec<(String, Option<u16>, Duration)>>,
}

impl Querier {
    /// Asks, in turn, each window's top 10 and top 1000 and one video's counts (`{tag}{n}`).
    pub fn start(port: u16, tag: &str, videos: u32) -> Self {
        let target = Arc::new(Mutex::new(format!("http://127.0.0.1:{port}")));
        let stop = CancellationToken::new();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let (t, s, tag) = (target.clone(), stop.clone(), tag.to_owned());
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0u64.. {
                if s.is_cancelled() {
                    break;
                }
                let w = ["minute", "hour", "day", "all"][i as usize % 4];
                let (route, path) = match i % 3 {
                    0 => ("topk k=10", format!("/v1/topk?window={w}&k=10")),
                    1 => ("topk k=1000", format!("/view/video?window={w}&k=1000")),
                    _ => (
                        "video",
                        format!("/v1/videos/{tag}{}", rand::rng().random_range(0..videos)),
                    ),
                };
                let url = format!("{}{path}", t.lock().unwrap());
                let started = Instant::now();
                let status = match http.get(&url).send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        r.bytes().await.ok().map(|_| s)
                    }
                    Err(_) => None,
                };
                out.push((route.to_owned(), status, started.elapsed()));
                if status != Some(200) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            out
        });
        Self { target, stop, task }
    }

    pub fn point_to(&self, port: u16) {
        *self.target.lock().unwrap() = format!("http://127.0.0.1:{port}");
    }

    /// Stops and returns every (route, status or None when unanswered, latency).
    pub async fn finish(self) -> Vec<(String, Option<u16>, Duration)> {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}

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
    let started = Instant::now();
    loop {
        let mut backlog = 0;
        for p in store.keys().all_partitions() {
            backlog += store.log_backlog(p).await.unwrap_or(u64::MAX / 1024);
        }
        if backlog == 0 {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{backlog} log entries still not applied after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every video's count in `window`, over all partitions.
pub async fn counted(store: &RedisStore, window: Window) -> HashMap<String, u64> {
    let mut all = HashMap::new();
    for p in store.keys().all_partitions() {
        all.extend(store.window_counts(p, window).await.unwrap());
    }
    all
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
