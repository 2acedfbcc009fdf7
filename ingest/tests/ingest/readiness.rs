//! `/readyz` means "can do what this process exists for", on the real processes: the API and ingest are ready
//! while Redis is, the snapshotter while Redis and Postgres are. A Postgres outage degrades the API's history
//! only (its routes answer 503 quickly, `/readyz` stays 200 and says so), and everything recovers by itself.

use crate::faults::{Env, TOKEN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use topk_testkit::{free_port, wait_until};

/// Longest a history route may take to answer 503 with Postgres stopped: the pool's connection timeout (5 s)
/// plus the one direct try that names the cause in the log (at most 2 s), and a second of slack.
const HISTORY_503_WITHIN: Duration = Duration::from_secs(8);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get(http: &reqwest::Client, port: u16, path: &str) -> (StatusCode, Value) {
    let r = http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Posts `views` to the receiver on `port` with the token, and asserts they were accepted.
async fn post_accepted(http: &reqwest::Client, port: u16, views: Value) {
    let sent = http
        .post(format!("http://127.0.0.1:{port}/v1/views"))
        .bearer_auth(TOKEN)
        .json(&views)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
}

async fn readyz(http: &reqwest::Client, port: u16) -> (StatusCode, Value) {
    get(http, port, "/readyz").await
}

/// Polls `/readyz` until `done` holds for its answer (at most 20 s).
async fn readyz_until(
    http: &reqwest::Client,
    port: u16,
    what: &str,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> Value {
    wait_until(what, Duration::from_secs(20), || async {
        let (status, body) = readyz(http, port).await;
        match done(status, &body) {
            true => Ok(body),
            false => Err(format!("/readyz stayed {status} {body}")),
        }
    })
    .await
}

async fn ready_within(http: &reqwest::Client, port: u16, want: StatusCode, what: &str) -> Value {
    readyz_until(http, port, what, |status, _| status == want).await
}

/// `/readyz` means it: the API is ready while Redis answers, saying that history is degraded until Postgres
/// is migrated; neither the API nor a worker-only ingest (on its admin address) is ready while Redis is
/// frozen, and both come back with Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis_and_postgres() {
    let redis = topk_testkit::RedisServer::start();
    let mut env = Env::new(&redis.url(), "ready", 2);
    env.database_url = Some(topk_testkit::fresh_database("ready"));
    let (api_port, worker_admin) = (free_port(), free_port());
    let _api = env.api(api_port, &[("TOPK_REDIS_TIMEOUT_MS", "500")]);
    let _worker = env.ingest(
        "worker",
        0,
        &[
            ("TOPK_ADMIN_ADDR", &format!("127.0.0.1:{worker_admin}")),
            ("TOPK_REDIS_TIMEOUT_MS", "500"),
        ],
    );
    topk_testkit::wait_port(worker_admin, "the worker's admin address");
    let http = client();

    // Not migrated: ready (the rankings are served), history degraded, naming the fix. Polled: a first
    // connection slower than the check's 3 s says only that Postgres did not answer.
    let body = readyz_until(&http, api_port, "api before migrate", |status, body| {
        assert_eq!(status, StatusCode::OK, "{body}");
        body["checks"]["postgres"]
            .as_str()
            .is_some_and(|p| p.contains("migrate"))
    })
    .await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["degraded"], json!(["history"]), "{body}");
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
    env.snapshotter_once(&["migrate"]).await;
    let body = readyz_until(&http, api_port, "api after migrate", |_, body| {
        body["status"] == "ok"
    })
    .await;
    assert_eq!(
        body,
        json!({"status": "ok", "checks": {"redis": "ok", "postgres": "ok"}})
    );
    let body = ready_within(&http, worker_admin, StatusCode::OK, "worker").await;
    assert_eq!(body["checks"]["redis"], "ok");
    assert_eq!(body["checks"]["backlog"]["refusing"], false, "{body}");

    redis.pause();
    for (port, what) in [(api_port, "api"), (worker_admin, "worker")] {
        let body = ready_within(&http, port, StatusCode::SERVICE_UNAVAILABLE, what).await;
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("Redis"), "{what}: {error}");
        // Health is not readiness: the process is up.
        let (health, _) = get(&http, port, "/healthz").await;
        assert_eq!(health, StatusCode::OK);
    }
    redis.resume();
    ready_within(&http, api_port, StatusCode::OK, "api after Redis came back").await;
    ready_within(
        &http,
        worker_admin,
        StatusCode::OK,
        "worker after Redis came back",
    )
    .await;
}

/// A Postgres outage degrades history only. While Postgres is stopped: the API stays ready and its `/readyz`
/// says history is degraded, the rankings are served, the history routes answer 503 with a JSON error within
/// [`HISTORY_503_WITHIN`] (never a hang, never a 500); ingest stays ready and takes views; the snapshotter,
/// which needs Postgres, is not ready. Once Postgres is back, each recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_degrades_history_only() {
    let mut pg = topk_testkit::PgServer::start();
    let mut env = Env::new(&topk_testkit::servers().redis_url, "pgoutage", 2);
    env.database_url = Some(pg.create_database("pgoutage"));
    env.snapshotter_once(&["migrate"]).await;
    let (api, ingest, snapshotter) = (free_port(), free_port(), free_port());
    let _api = env.api(api, &[]);
    let _ingest = env.ingest("all", ingest, &[]);
    let _snapshotter = env.snapshotter(
        &["run"],
        &[("TOPK_ADMIN_ADDR", &format!("127.0.0.1:{snapshotter}"))],
    );
    topk_testkit::wait_port(snapshotter, "the snapshotter's admin address");
    let http = client();
    for (port, what) in [
        (api, "api"),
        (ingest, "ingest"),
        (snapshotter, "snapshotter"),
    ] {
        let body = ready_within(&http, port, StatusCode::OK, what).await;
        assert_eq!(body["status"], "ok", "{what}: {body}");
    }
    let history = [
        "/v1/topk/history?window=hour&k=5",
        "/v1/videos/seen/hourly?hours=2",
        "/v1/topk/range?from=2026-12-01&to=2026-12-08&k=5",
    ];

    pg = tokio::task::spawn_blocking(move || {
        // The test servers commit asynchronously (`synchronous_commit=off`) and this stop is a crash: on a
        // loaded machine the migrations' commits could still be in memory. This outage is about availability,
        // not lost writes, so they are flushed first.
        topk_testkit::psql(pg.port(), "CHECKPOINT").expect("checkpoint");
        pg.stop();
        pg
    })
    .await
    .unwrap();

    // The API: ready, saying why history is not served.
    let body = readyz_until(&http, api, "api with Postgres down", |status, body| {
        assert_eq!(status, StatusCode::OK, "api with Postgres down: {body}");
        body["status"] == "degraded"
    })
    .await;
    assert_eq!(body["degraded"], json!(["history"]), "{body}");
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
    let postgres = body["checks"]["postgres"].as_str().unwrap_or_default();
    assert!(postgres.starts_with("unavailable"), "{body}");
    // Ingest takes views and the rankings serve them.
    post_accepted(&http, ingest, json!([{"videoId": "seen", "count": 3}])).await;
    let body = ready_within(&http, ingest, StatusCode::OK, "ingest with Postgres down").await;
    assert_eq!(body["status"], "ok", "{body}");
    wait_until("the view to rank", Duration::from_secs(20), || async {
        let (status, body) = get(&http, api, "/v1/topk?window=all&k=5").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "rankings with Postgres down: {body}"
        );
        match body == json!([{"videoId": "seen", "views": 3}]) {
            true => Ok(()),
            false => Err(body.to_string()),
        }
    })
    .await;
    // History: 503 with a JSON error, quickly, every time.
    for path in history {
        for _ in 0..2 {
            let started = Instant::now();
            let (status, body) = get(&http, api, path).await;
            let took = started.elapsed();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains("history"), "{path}: {body}");
            assert!(took < HISTORY_503_WITHIN, "{path}: answered after {took:?}");
        }
    }
    // The snapshotter cannot do its work.
    let body = ready_within(
        &http,
        snapshotter,
        StatusCode::SERVICE_UNAVAILABLE,
        "snapshotter with Postgres down",
    )
    .await;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("Postgres"), "{body}");

    let _pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();

    let body = readyz_until(
        &http,
        api,
        "api after Postgres came back",
        |status, body| {
            assert_eq!(status, StatusCode::OK, "{body}");
            body["status"] == "ok"
        },
    )
    .await;
    assert_eq!(
        body,
        json!({"status": "ok", "checks": {"redis": "ok", "postgres": "ok"}})
    );
    ready_within(
        &http,
        snapshotter,
        StatusCode::OK,
        "snapshotter after Postgres came back",
    )
    .await;
    // History answers again: no snapshot yet is a 404, an hourly chart a 200.
    let (status, body) = get(&http, api, history[0]).await;
    assert!(
        status == StatusCode::OK || status == StatusCode::NOT_FOUND,
        "{status} {body}"
    );
    let (status, body) = get(&http, api, history[1]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hours"].as_array().map(Vec::len), Some(2), "{body}");
}

/// `topk-ingest` (role `all`) started while Redis is down serves at once, as the receiver role and the API
/// do: `/healthz` 200 and `/readyz` 503 naming Redis, while its workers wait for Redis. Once Redis is up it
/// becomes ready, and a view it takes is stored and applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_started_before_redis_serves_its_health_at_once() {
    let mut redis = topk_testkit::RedisServer::start();
    // Nothing listens on its port until it starts again.
    redis.kill();
    let env = Env::new(&redis.url(), "redislater", 2);
    let port = free_port();
    let _ingest = env.ingest("all", port, &[("TOPK_REDIS_TIMEOUT_MS", "500")]);
    // Short: a process that answers nothing is what this test catches.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let (status, body) = get(&http, port, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = readyz(&http, port).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("Redis"), "{body}");

    redis.start_again();
    ready_within(&http, port, StatusCode::OK, "ingest once Redis is up").await;
    post_accepted(&http, port, json!([{"videoId": "late", "count": 2}])).await;
    let store = env.store().await;
    wait_until(
        "the view to be applied",
        Duration::from_secs(20),
        || async {
            let counts = crate::faults::counted(&store, topk_core::domain::Window::All).await;
            match counts.get("late") == Some(&2) {
                true => Ok(()),
                false => Err(format!("{counts:?}")),
            }
        },
    )
    .await;
}
