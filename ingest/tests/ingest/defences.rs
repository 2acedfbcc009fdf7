//! The receiver's defences against a real Redis: backpressure, token rotation, tokens kept out of logs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_core::domain::{VideoId, Window};
use topk_core::redis::RedisStore;
use topk_ingest::backpressure;
use topk_ingest::config::IngestConfig;
use topk_ingest::Application;
use topk_testkit::wait_until;

struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Settings of an ingest listening on a free port, with `extra`.
fn config(prefix: &str, extra: &[&str]) -> IngestConfig {
    crate::ingest_config(prefix, &[&["--addr=127.0.0.1:0"], extra].concat())
}

async fn start(config: IngestConfig) -> Running {
    let app = Application::build(config).await.unwrap();
    let addr = app
        .local_addr()
        .unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
    let stop = CancellationToken::new();
    let done = tokio::spawn(app.run(stop.clone()));
    Running { addr, stop, done }
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.done.await.unwrap().unwrap();
    }
}

async fn post(addr: SocketAddr, token: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/views"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlogged_log_gets_503_with_retry_after_and_stores_nothing_until_drained() {
    // Arrange: a receiver alone (no workers), a backlog limit of 5 entries, and 8 entries in the log.
    let prefix = topk_testkit::unique_name("backpressure");
    let receiver_cfg = config(
        &prefix,
        &["--role=receiver", "--max-backlog=5", "--token=t"],
    );
    let store = RedisStore::connect(&receiver_cfg.redis).await.unwrap();
    let receiver = start(receiver_cfg).await;
    for i in 0..8 {
        let video = VideoId::parse(&format!("fill{i}")).unwrap();
        store.writer().append(&[(video, 1)]).await.unwrap();
    }
    let backlog = backlog_of(&store).await;
    assert_eq!(backlog, 8);

    // Act: the receiver notices within a few refreshes (batches it takes meanwhile are answered 202 and kept).
    let started = Instant::now();
    let mut accepted = Vec::new();
    let (refused_id, refused) = loop {
        let probe = format!("probe{}", accepted.len());
        let body = format!(r#"[{{"videoId":"{probe}","count":7}}]"#);
        let response = post(receiver.addr, "t", &body).await;
        if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            break (probe, response);
        }
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
        accepted.push(probe);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still accepting with a backlog of {backlog}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Assert: 503, Retry-After, a JSON error, and the refused batch is not in the log.
    assert_eq!(
        refused.headers().get("retry-after").unwrap(),
        &backpressure::RETRY_AFTER_SECS.to_string()
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("limit 5"),
        "{body}"
    );
    let before = backlog_of(&store).await;
    let again = post(receiver.addr, "t", r#"[{"videoId":"refused2"}]"#).await;
    assert_eq!(again.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(backlog_of(&store).await, before);
    // The token is still checked first: refusing for load must not tell a stranger anything else.
    let stranger = post(receiver.addr, "wrong", r#"[{"videoId":"x"}]"#).await;
    assert_eq!(stranger.status(), reqwest::StatusCode::UNAUTHORIZED);
    // RFC 9110: a 401 names the scheme it wants.
    assert_eq!(
        stranger
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );

    // Drain: workers start and apply the log.
    let workers = start(config(&prefix, &["--role=worker"])).await;
    let drained = || async {
        match backlog_of(&store).await {
            0 => Ok(()),
            n => Err(format!("{n} entries")),
        }
    };
    wait_until(
        "the workers to drain the log",
        Duration::from_secs(20),
        drained,
    )
    .await;
    let body = wait_until(
        "accepting after the drain",
        Duration::from_secs(5),
        || async {
            let response = post(receiver.addr, "t", r#"[{"videoId":"after","count":2}]"#).await;
            match response.status() {
                reqwest::StatusCode::ACCEPTED => {
                    Ok(response.json::<serde_json::Value>().await.unwrap())
                }
                reqwest::StatusCode::SERVICE_UNAVAILABLE => Err("503".to_owned()),
                other => panic!("answered {other} after the drain"),
            }
        },
    )
    .await;
    assert_eq!(body, serde_json::json!({"accepted": 2}));
    // Every batch answered 202 is counted, and nothing of the refused ones.
    wait_until(
        "the workers to drain the log",
        Duration::from_secs(20),
        drained,
    )
    .await;
    let all_time = |video: &str| {
        let store = store.clone();
        let video = VideoId::parse(video).unwrap();
        async move {
            let counts = store.rankings().video_counts(&video).await.unwrap();
            counts
                .iter()
                .find(|(w, _)| *w == Window::All)
                .map_or(0, |(_, n)| *n)
        }
    };
    for video in &accepted {
        assert_eq!(all_time(video).await, 7, "{video}");
    }
    assert_eq!(all_time(&refused_id).await, 0);
    assert_eq!(all_time("refused2").await, 0);
    assert_eq!(all_time("after").await, 2);
    receiver.stop().await;
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_both_tokens_write_and_no_other() {
    let receiver = start(config(
        &topk_testkit::unique_name("rotation"),
        &["--role=receiver", "--token=new-token, old-token"],
    ))
    .await;
    for (token, want) in [
        ("new-token", reqwest::StatusCode::ACCEPTED),
        ("old-token", reqwest::StatusCode::ACCEPTED),
        ("new-token, old-token", reqwest::StatusCode::UNAUTHORIZED),
        ("new-toke", reqwest::StatusCode::UNAUTHORIZED),
        ("", reqwest::StatusCode::UNAUTHORIZED),
    ] {
        let response = post(receiver.addr, token, r#"[{"videoId":"a"}]"#).await;
        assert_eq!(response.status(), want, "{token:?}");
    }
    receiver.stop().await;
}

#[tokio::test]
async fn an_empty_token_list_refuses_to_start() {
    for bad in ["", "a,,b", " , "] {
        let cfg = config(
            &topk_testkit::unique_name("empty"),
            &[&format!("--token={bad}")],
        );
        let err = Application::build(cfg).await.err().expect("started");
        assert!(err.to_string().contains("empty token"), "{err}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tokens_never_reach_the_logs() {
    use tower::ServiceExt;
    let secret = "s3cret-token-value";
    let cfg = config(
        &topk_testkit::unique_name("nolog"),
        &[
            "--role=receiver",
            &format!("--token={secret},other-{secret}"),
        ],
    );
    assert!(!format!("{cfg:?}").contains(secret), "{cfg:?}");
    let (capture, _guard) = topk_testkit::LogCapture::install();
    let app = Application::build(cfg.clone()).await.unwrap();
    tracing::info!(config = ?cfg, "configuration");
    let router = app.router();
    let wrong = format!("wrong-{secret}");
    // The token as clients send it by mistake too: without a scheme, or glued to it.
    let headers = [
        format!("Bearer {secret}"),
        format!("Bearer {wrong}"),
        secret.to_owned(),
        format!("Bearer:{secret}"),
        format!("{secret} Bearer"),
    ];
    for authorization in &headers {
        for body in [r#"[{"videoId":"a"}]"#, "not json"] {
            let request = axum::http::Request::post("/v1/views")
                .header("authorization", authorization)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            assert!(response.status().as_u16() < 500);
        }
    }
    let logged = capture.text();
    assert!(
        logged.contains("configuration"),
        "the capture works: {logged}"
    );
    // Not even a part of it (a logged scheme cut to a few bytes would still give those away).
    assert!(!logged.contains(&secret[..6]), "{logged}");
}

/// A receiver started with a partition count other than the deployment's refuses to start, naming both: it
/// would write views to the partitions the others never read for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_with_another_partition_count_refuses_to_start() {
    let prefix = topk_testkit::unique_name("layout");
    Application::build(config(&prefix, &[])).await.unwrap();
    let mut other = config(&prefix, &[]);
    other.redis.partitions = 3;
    let err = Application::build(other)
        .await
        .err()
        .expect("started with 3 partitions on a deployment of 2");
    let message = format!("{err:#}");
    assert!(
        message.contains("partitions=2") && message.contains("partitions=3"),
        "{message}"
    );
}

/// While a `rebuild-redis` is unfinished (its saved state `P:{p}:replay` is there), workers wait instead of
/// applying the log: the rerun must find the log as the interrupted run left it.
#[tokio::test]
async fn workers_wait_while_a_rebuild_is_unfinished() {
    let store = topk_testkit::fixtures::store("rebuild_wait", 2).await;
    let replay = store.keys().replay(1);
    let mut conn = topk_testkit::RedisConn::open_url(&topk_testkit::servers().redis_url).unwrap();
    conn.cmd(&["HSET", &replay, "through", "1-0", "pending", ""])
        .unwrap();
    let (logs, _capture) = topk_testkit::LogCapture::install();
    let stop = tokio_util::sync::CancellationToken::new();
    let waiting = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            topk_ingest::worker::wait_for_log_groups(&store.applier(), &store.log_state(), &stop)
                .await
        }
    });
    // The workers decide at each check; the warning is the check that found the rebuild and chose to wait.
    // Later checks find the same while the saved state is there, so no time needs to pass besides.
    wait_until(
        "the workers to see the rebuild",
        Duration::from_secs(10),
        || async { logs.text().contains("rebuild-redis was interrupted") },
    )
    .await;
    assert!(
        !waiting.is_finished(),
        "the workers started beside an unfinished rebuild"
    );
    conn.cmd(&["DEL", &replay]).unwrap();
    let started = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("the workers start once the rebuild is done")
        .unwrap();
    assert!(started.unwrap());
}

/// Only a JSON body without a content coding is taken. Without the check, a page on any origin could write
/// to an open ingest with a no-cors `fetch` or `sendBeacon` (no `Content-Type`, or `text/plain`); with it,
/// such a write needs a CORS preflight. The media type is compared exactly, case-insensitive, parameters
/// allowed; a `Content-Encoding` is refused rather than ignored. Refusals are 415 with a JSON error and store
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_json_body_without_a_content_coding_is_taken() {
    // No token: the local default, where this matters most.
    let cfg = config(&topk_testkit::unique_name("media"), &["--role=receiver"]);
    let store = RedisStore::connect(&cfg.redis).await.unwrap();
    let receiver = start(cfg).await;
    let http = reqwest::Client::new();
    let send = |content_type: Option<&'static str>, encoding: Option<&'static str>| {
        let mut request = http
            .post(format!("http://{}/v1/views", receiver.addr))
            .body(r#"[{"videoId":"m"}]"#);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        if let Some(e) = encoding {
            request = request.header("content-encoding", e);
        }
        async move {
            let r = request.send().await.unwrap();
            (r.status(), r.json::<serde_json::Value>().await.ok())
        }
    };
    let taken = [
        "application/json",
        "APPLICATION/JSON",
        "application/json; charset=utf-8",
        "Application/Json;charset=UTF-8",
    ];
    for ct in taken {
        let (status, body) = send(Some(ct), None).await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{ct}: {body:?}");
    }
    let (status, body) = send(Some("application/json"), Some("identity")).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "identity: {body:?}");
    let refused: Vec<(Option<&str>, Option<&str>)> = vec![
        (None, None),
        (Some(""), None),
        (Some("text/plain"), None),
        (Some("text/plain;charset=UTF-8"), None),
        (Some("application/x-www-form-urlencoded"), None),
        (Some("multipart/form-data; boundary=x"), None),
        (Some("application/jsonx"), None),
        (Some("application/json-seq"), None),
        (Some("application/json+x"), None),
        (Some("json"), None),
        (Some("application/json"), Some("gzip")),
        (Some("application/json"), Some("GZIP")),
        (Some("application/json"), Some("deflate")),
        (Some("application/json"), Some("br")),
        (Some("application/json"), Some("identity, gzip")),
    ];
    for (ct, encoding) in refused {
        let (status, body) = send(ct, encoding).await;
        assert_eq!(
            status,
            reqwest::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{ct:?} {encoding:?}: {body:?}"
        );
        let error = body.as_ref().and_then(|b| b["error"].as_str());
        assert!(
            error.is_some_and(|e| e.contains("application/json") || e.contains("Content-Encoding")),
            "{ct:?} {encoding:?}: {body:?}"
        );
    }
    // One log entry per batch taken (a receiver alone: nothing applies them), none for the refused.
    assert_eq!(backlog_of(&store).await, taken.len() as u64 + 1);
    receiver.stop().await;
}

/// A body declared larger than the limit is refused at once, before a byte of it is read: 413 with a JSON
/// error and the connection closed, without `100 Continue` to a client that asked whether to send it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_gets_413_at_once() {
    use std::io::{Read, Write};
    let receiver = start(config(
        &topk_testkit::unique_name("declared"),
        &["--role=receiver", "--token=t", "--max-body-bytes=1000"],
    ))
    .await;
    let addr = receiver.addr;
    for expect in ["Expect: 100-continue\r\n", ""] {
        let (answer, took) = tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            let started = Instant::now();
            write!(
                stream,
                "POST /v1/views HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\
                 Content-Type: application/json\r\nContent-Length: 2147483648\r\n{expect}\r\n"
            )
            .unwrap();
            // Read until the server closes; a server still waiting for the body fails the read's timeout.
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut answer = Vec::new();
            let read = stream.read_to_end(&mut answer);
            let answer = String::from_utf8_lossy(&answer).into_owned();
            assert!(read.is_ok(), "{expect:?}: no answer yet: {answer:?}");
            (answer, started.elapsed())
        })
        .await
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{expect:?}: {answer}");
        assert!(!answer.contains("100 Continue"), "{expect:?}: {answer}");
        assert!(
            answer.contains(r#"{"error":"the body is declared as 2147483648 bytes"#),
            "{expect:?}: {answer}"
        );
        assert!(took < Duration::from_secs(2), "{expect:?}: {took:?}");
    }
    receiver.stop().await;
}

/// A client hammering with a wrong token cannot flood the log: the refusals of an interval are aggregated
/// into one WARN line that counts them (the metric counts each).
#[tokio::test(flavor = "current_thread")]
async fn refused_tokens_are_logged_once_per_interval_with_their_count() {
    use tower::ServiceExt;
    let cfg = config(
        &topk_testkit::unique_name("refusals"),
        &["--role=receiver", "--token=right"],
    );
    let (capture, _guard) = topk_testkit::LogCapture::install();
    let router = Application::build(cfg).await.unwrap().router();
    for i in 0..300 {
        let request = axum::http::Request::post("/v1/views")
            .header("authorization", format!("Bearer wrong-{i}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"[{"videoId":"a"}]"#))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), axum::http::StatusCode::UNAUTHORIZED);
    }
    let logged = capture.text();
    let lines: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("missing or wrong bearer token"))
        .collect();
    // The 300 refusals take well under the 10 s interval: the first is logged, the rest counted for the next.
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(r#""level":"WARN""#), "{}", lines[0]);
    assert!(lines[0].contains(r#""refused":1"#), "{}", lines[0]);
}

/// Every partition's backlog, summed, as the log watch measures it.
async fn backlog_of(store: &topk_core::redis::RedisStore) -> u64 {
    let positions = topk_ingest::log_watch::measure(&store.log_state())
        .await
        .unwrap();
    positions.iter().map(|p| p.backlog).sum()
}
