//! Redis Cluster under faults, each test on a cluster of its own (3 primaries, one replica each): a primary
//! killed under load, a partition's slot migrated live under load, a batch across every node while one node
//! is frozen. Producers send every batch under an `Idempotency-Key` and send it again after a 503 or a lost
//! answer; afterwards every view answered 202 must count exactly once in every window, and a view never
//! answered 202 at most once.

use crate::faults::{drain, grows_by};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use topk_core::domain::{VideoId, Window};
use topk_testkit::fixtures::window_counts;
use topk_testkit::stack::TOKEN;
use topk_testkit::Stack;
use topk_testkit::{slot_of, wait_until, RedisCluster};

/// Videos per batch: with 6 partitions, a batch touches every node.
const VIDEOS_PER_BATCH: usize = 12;

/// One batch: unique videos, so that any view lost or doubled shows in its video's count.
fn batch(producer: usize, i: usize) -> Vec<(String, u64)> {
    (0..VIDEOS_PER_BATCH)
        .map(|j| (format!("p{producer}b{i}v{j}"), 1 + (j % 3) as u64))
        .collect()
}

/// What the producers saw.
#[derive(Default)]
struct Seen {
    /// Batches answered 202.
    accepted: Vec<Vec<(String, u64)>>,
    /// Batches never answered 202 (every try failed until the producer gave up).
    unanswered: Vec<Vec<(String, u64)>>,
    /// Tries answered 503 or with no answer, each sent again under the batch's key.
    retried: u64,
}

impl Seen {
    fn views(batches: &[Vec<(String, u64)>]) -> u64 {
        batches.iter().flatten().map(|(_, n)| n).sum()
    }
}

/// How far the producers have got, for a fault to wait on: batches answered 202 and tries sent again so far.
#[derive(Default)]
struct Progress {
    accepted: AtomicU64,
    retried: AtomicU64,
}

impl Progress {
    /// Waits until `n` more batches than now are answered 202: the producers get through.
    async fn accepted_more(&self, n: u64, within: Duration) {
        let accepted = || self.accepted.load(Ordering::Relaxed);
        grows_by("batches answered 202", n, within, accepted).await;
    }

    /// Waits until `n` more tries than now are sent again: the producers met the fault.
    async fn retried_more(&self, n: u64, within: Duration) {
        let retried = || self.retried.load(Ordering::Relaxed);
        grows_by("tries sent again", n, within, retried).await;
    }
}

/// Runs a blocking cluster helper off the runtime's threads (the stack runs on them).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Posts batches in a row under keys of their own until `done`, each sent again under its key after a 503 or
/// a lost answer, until 202 or `give_up` per batch.
async fn produce(
    s: Arc<Stack>,
    producer: usize,
    done: Arc<AtomicBool>,
    progress: Arc<Progress>,
    give_up: Duration,
) -> Seen {
    let mut seen = Seen::default();
    for i in 0.. {
        if done.load(Ordering::Relaxed) {
            break;
        }
        let views = batch(producer, i);
        let body = Value::Array(
            views
                .iter()
                .map(|(v, n)| json!({"videoId": v, "count": n}))
                .collect(),
        )
        .to_string();
        let key = format!("p{producer}-b{i}");
        let started = Instant::now();
        loop {
            let sent = s
                .http
                .post(format!("http://{}/v1/views", s.ingest))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .header("idempotency-key", &key)
                .timeout(Duration::from_secs(10))
                .body(body.clone())
                .send()
                .await;
            let status = sent.as_ref().map(|r| r.status()).ok();
            if status == Some(StatusCode::ACCEPTED) {
                seen.accepted.push(views);
                progress.accepted.fetch_add(1, Ordering::Relaxed);
                break;
            }
            assert_ne!(
                status,
                Some(StatusCode::UNPROCESSABLE_ENTITY),
                "a batch sent again under its own key was taken for another"
            );
            seen.retried += 1;
            progress.retried.fetch_add(1, Ordering::Relaxed);
            if started.elapsed() > give_up {
                seen.unanswered.push(views);
                break;
            }
            // A client's pause before it tries again, not a wait on anything.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    seen
}

/// Batches the producers get answered 202 before a fault (it meets a running load), and tries they send
/// after it (the load meets the deployment as the fault left it): each about a tenth of a second of load.
const TRIES_AROUND_A_FAULT: u64 = 20;

/// Runs two producers through `fault`: from once they get batches through, until they have sent more tries
/// after it (answered 202 or not); then checks every window once the workers have applied the log.
async fn load_through<F, Fut>(s: Stack, fault: F) -> Seen
where
    F: FnOnce(Arc<Progress>) -> Fut,
    Fut: Future<Output = ()>,
{
    let s = Arc::new(s);
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let give_up = Duration::from_secs(30);
            tokio::spawn(produce(
                s.clone(),
                p,
                done.clone(),
                progress.clone(),
                give_up,
            ))
        })
        .collect();
    let around = Duration::from_secs(60);
    progress.accepted_more(TRIES_AROUND_A_FAULT, around).await;
    fault(progress.clone()).await;
    // Batches are answered 202 again once the cluster is whole: a fault must not leave ingest refusing.
    progress.accepted_more(TRIES_AROUND_A_FAULT, around).await;
    done.store(true, Ordering::Relaxed);
    let mut seen = Seen::default();
    for p in producers {
        let one = p.await.unwrap();
        seen.accepted.extend(one.accepted);
        seen.unanswered.extend(one.unanswered);
        seen.retried += one.retried;
    }
    check_exactly_once(&s, &seen, started).await;
    seen
}

/// Waits (at most 60 s) until every window holds each accepted view once and each unanswered one at most
/// once; panics with the differences otherwise. The minute window is checked when the run was short enough
/// that nothing has left it yet.
async fn check_exactly_once(s: &Stack, seen: &Seen, started: Instant) {
    let mut windows = vec![Window::Hour, Window::Day, Window::All];
    if started.elapsed() < Duration::from_secs(45) {
        windows.push(Window::Minute);
    }
    wait_until("every window exact", Duration::from_secs(60), || async {
        let mut wrong = Vec::new();
        for &w in &windows {
            let counts =
                match tokio::time::timeout(Duration::from_secs(10), window_counts(&s.store, w))
                    .await
                {
                    Ok(c) => c,
                    Err(_) => {
                        wrong.push(format!("{w:?}: could not be read"));
                        continue;
                    }
                };
            for (video, n) in seen.accepted.iter().flatten() {
                let got = counts.get(video).copied().unwrap_or(0);
                if got != *n {
                    wrong.push(format!("{w:?} {video}: {got}, accepted {n}"));
                }
            }
            for (video, n) in seen.unanswered.iter().flatten() {
                let got = counts.get(video).copied().unwrap_or(0);
                if got != 0 && got != *n {
                    wrong.push(format!("{w:?} {video}: {got}, unanswered {n}"));
                }
            }
            let known: HashMap<&str, ()> = seen
                .accepted
                .iter()
                .chain(&seen.unanswered)
                .flatten()
                .map(|(v, _)| (v.as_str(), ()))
                .collect();
            wrong.extend(
                counts
                    .keys()
                    .filter(|v| !known.contains_key(v.as_str()))
                    .map(|v| format!("{w:?} {v}: never sent")),
            );
        }
        match wrong.len() {
            0 => Ok(()),
            n => Err(format!("{n} counts wrong, e.g. {:?}", &wrong[..n.min(10)])),
        }
    })
    .await;
}

fn report(what: &str, seen: &Seen) {
    eprintln!(
        "{what}: {} views accepted in {} batches, {} unanswered batches ({} views), {} tries sent again under \
         their key; lost 0, doubled 0",
        Seen::views(&seen.accepted),
        seen.accepted.len(),
        seen.unanswered.len(),
        Seen::views(&seen.unanswered),
        seen.retried,
    );
}

/// A stack of 6 partitions on a cluster of its own (3 primaries, each with a replica, failing over after
/// `node_timeout_ms`), ingest started with `ingest_args`.
async fn on_a_cluster(
    label: &str,
    node_timeout_ms: u64,
    ingest_args: &[&str],
) -> (Arc<RedisCluster>, Stack) {
    let cluster = Arc::new(RedisCluster::start(3, node_timeout_ms));
    let s = Stack::builder(label)
        .redis_url(&cluster.url())
        .partitions(6)
        .ingest_args(ingest_args)
        .start()
        .await;
    (cluster, s)
}

/// The primary that owns partition 0 is SIGKILLed under load and its replica takes over; the killed node then
/// comes back as the new primary's replica. With `TOPK_REDIS_WAIT_REPLICAS=1` every batch answered 202 had
/// reached the replica, so nothing answered is lost, and the keys make every retry store only what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_loses_and_doubles_nothing() {
    let (cluster, s) = on_a_cluster("failover", 1_000, &["--wait-replicas=1"]).await;
    let victim = cluster.primary_for_slot(slot_of(&s.store.keys().log(0)));
    let c = cluster.clone();
    let seen = load_through(s, |progress| async move {
        let promoted = blocking({
            let c = c.clone();
            move || {
                c.kill(victim);
                c.wait_failover(victim)
            }
        })
        .await;
        // The promoted replica has no replica of its own: with WAIT 1 its partitions answer 503 until the
        // killed node is back as its replica. Every batch touches it, so the producers meet that first.
        progress.retried_more(1, Duration::from_secs(30)).await;
        blocking(move || {
            c.start_again(victim);
            c.wait_ok();
        })
        .await;
        eprintln!(
            "primary {victim} killed; replica {promoted} promoted; {victim} back as its replica"
        );
    })
    .await;
    report("failover", &seen);
    assert!(
        seen.retried > 0,
        "the kill met no batch: the test proved nothing"
    );
}

/// Partition 0's slot moves to another primary key by key (MIGRATING/IMPORTING, MIGRATE, SETSLOT NODE) while
/// producers and workers run: commands meet ASK and TRYAGAIN mid-move, and nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_migrated_live_under_load_loses_and_doubles_nothing() {
    let (cluster, s) = on_a_cluster("migration", 5_000, &[]).await;
    let slot = slot_of(&s.store.keys().log(0));
    let from = cluster.primary_for_slot(slot);
    let to = *cluster.primaries().iter().find(|&&p| p != from).unwrap();
    let c = cluster.clone();
    let seen = load_through(s, |_| {
        blocking(move || {
            // Two keys a step, a tenth of a second apart: the move lasts long enough to meet many batches.
            c.migrate_slot_with(slot, to, 2, Duration::from_millis(100));
            assert_eq!(c.primary_for_slot(slot), to);
            eprintln!("slot {slot} (partition 0) moved from {from} to {to}");
        })
    })
    .await;
    report("migration", &seen);
}

/// A batch across every node while one primary is frozen (SIGSTOP, shorter than the failover timeout): the
/// producer sent no key, gets a 503 that names one, and the parts on the other nodes are stored. Once the node
/// runs again (its queued append arrives after its deadline and writes nothing), the batch sent again under
/// that key is answered 202 and every view counts exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_partly_stored_is_completed_once_by_its_key() {
    let (cluster, s) = on_a_cluster("partial", 20_000, &[]).await;
    let keys = s.store.keys().clone();
    let node_of = |p: u16| cluster.primary_for_slot(slot_of(&keys.log(p)));
    // One video per partition, so the batch touches every node.
    let mut views: Vec<(String, u64)> = Vec::new();
    for p in 0..6u16 {
        let video = (0..)
            .map(|i| format!("part{p}x{i}"))
            .find(|v| keys.partition_of(&VideoId::parse(v).unwrap()) == p)
            .unwrap();
        views.push((video, u64::from(p) + 1));
    }
    let body = Value::Array(
        views
            .iter()
            .map(|(v, n)| json!({"videoId": v, "count": n}))
            .collect(),
    );
    let frozen = node_of(0);
    cluster.pause(frozen);
    let asked = Instant::now();
    let (status, answer) = s.post(&body).await;
    eprintln!("answered {status} after {:?}: {answer}", asked.elapsed());
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    let key = answer["idempotencyKey"]
        .as_str()
        .unwrap_or_else(|| panic!("the 503 names no key: {answer}"))
        .to_owned();
    assert!(answer["error"].as_str().unwrap().contains(&key), "{answer}");
    // The parts on the running nodes are in the log already.
    for p in (0..6u16).filter(|&p| node_of(p) != frozen) {
        let logged = s.store.log_state().log_backlog(p).await.unwrap() > 0
            || s.store
                .recovery()
                .window_counts(p, Window::All)
                .await
                .unwrap()
                .len()
                == 1;
        assert!(logged, "partition {p} on a running node stored nothing");
    }
    cluster.resume(frozen);
    // The append queued on the frozen node runs now, past its deadline: it must write nothing. Redis runs
    // commands one at a time, those read before a later connection's: once a PING sent now is answered, the
    // queued append has run.
    let pong = cluster.conn(frozen).cmd(&["PING"]).unwrap();
    assert_eq!(pong.text().as_deref(), Some("PONG"));
    let (status, answer) = s.post_with_key(&body, &key).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let seen = Seen {
        accepted: vec![views],
        ..Seen::default()
    };
    check_exactly_once(&s, &seen, Instant::now()).await;
    // And again: nothing more. The receiver appends before it answers, so anything this try added is in the
    // log now; once the log is applied the windows are final.
    let (status, _) = s.post_with_key(&body, &key).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    drain(&s.store, Duration::from_secs(30)).await;
    check_exactly_once(&s, &seen, Instant::now()).await;
}
