//! The load a fault test puts on the services: views sent ([`Sender`]) and rankings asked ([`Querier`]).

use super::services::TOKEN;
use super::tally::Tally;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use topk_testkit::wait_until;

/// How long a test waits for its load to make progress: far beyond a healthy stack's milliseconds, short of
/// a hung test.
const LOAD_PATIENCE: Duration = Duration::from_secs(60);

/// Milliseconds since the epoch on this machine's clock (the clock Redis stamps log entries with).
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
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

    /// Waits until `n` more batches than now are answered 202 (at most a minute): the load gets through, so a
    /// fault or a stop that follows meets it running.
    pub async fn accepted_more(&self, n: u64) {
        grows_by("batches accepted", n, LOAD_PATIENCE, || {
            self.snapshot().batches_accepted
        })
        .await;
    }

    /// Waits until `n` more views than now got no answer or a refusal (at most a minute): the fault met the
    /// load.
    pub async fn unanswered_more(&self, n: u64) {
        grows_by("views unanswered", n, LOAD_PATIENCE, || {
            self.snapshot().views_unanswered
        })
        .await;
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
    /// Queries answered 200 so far.
    answered: Arc<AtomicU64>,
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
        let answered: Arc<AtomicU64> = Arc::default();
        let (t, s, tag, ok) = (
            target.clone(),
            stop.clone(),
            tag.to_owned(),
            answered.clone(),
        );
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
                if status == Some(200) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            out
        });
        Self {
            target,
            answered,
            stop,
            task,
        }
    }

    /// Waits until `n` more queries than now are answered 200 (at most a minute): the queries get through.
    pub async fn answered_more(&self, n: u64) {
        grows_by("queries answered", n, LOAD_PATIENCE, || {
            self.answered.load(Ordering::Relaxed)
        })
        .await;
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

/// Waits until `count` has grown by `n` from what it is now, at most `within`; `what` names it.
pub async fn grows_by(what: &str, n: u64, within: Duration, count: impl Fn() -> u64) {
    let from = count();
    wait_until(format!("{n} more {what}"), within, || async {
        let more = count() - from;
        if more >= n {
            Ok(())
        } else {
            Err(format!("{more} more"))
        }
    })
    .await;
}
