//! Liveness and metrics under overload, on a real API whose Redis is frozen: a liveness probe refused for
//! load would have every replica restarted at once, and a scrape refused would hide the overload itself.

use clap::Parser;
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_testkit::fixtures::{redis_config_at, store_for};
use topk_testkit::RedisServer;

/// Slots of the API under test: small, so a few reads fill them.
const IN_FLIGHT: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_while_reads_fill_the_in_flight_limit() {
    // Arrange: an API on a Redis of its own, reads never cached, Redis commands allowed to wait 30 s.
    let redis = RedisServer::start();
    let cfg = redis_config_at(&redis.url(), "overload", 2);
    store_for(&cfg).await;
    let args = [
        "topk-api".to_owned(),
        format!("--redis-url={}", cfg.redis_url),
        format!("--key-prefix={}", cfg.key_prefix),
        "--partitions=2".into(),
        "--addr=127.0.0.1:0".into(),
        format!(
            "--database-url={}",
            topk_testkit::fresh_database("overload")
        ),
        format!("--max-in-flight={IN_FLIGHT}"),
        "--ranking-cache-ms=0".into(),
        "--redis-timeout-ms=30000".into(),
        "--request-timeout-ms=60000".into(),
    ];
    let app =
        topk_api::Application::build(topk_api::config::ApiConfig::try_parse_from(args).unwrap())
            .await
            .unwrap();
    let addr = app.local_addr();
    let stop = CancellationToken::new();
    let served = tokio::spawn(app.run(stop.clone()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let get = |path: &str| http.get(format!("http://{addr}{path}")).send();
    assert_eq!(
        get("/v1/topk?window=hour").await.unwrap().status(),
        StatusCode::OK
    );

    // Act: Redis frozen, twice as many ranking reads as slots. Those that got a slot wait on Redis and hold
    // it; the others are refused at once, which tells that every slot is taken.
    redis.pause();
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..2 * IN_FLIGHT {
        let (http, answered) = (http.clone(), answered.clone());
        tokio::spawn(async move {
            let r = http
                .get(format!("http://{addr}/v1/topk?window=hour"))
                .send()
                .await;
            let _ = answered.send(r.map(|r| r.status()));
        });
    }
    for _ in 0..IN_FLIGHT {
        let refused = "the reads beyond the limit are refused at once";
        let status = next_status(&mut answers, Duration::from_secs(10), refused).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    // Assert: liveness and metrics answer promptly while the reads hold every slot.
    for path in ["/healthz", "/metrics"] {
        let started = Instant::now();
        let r = get(path).await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{path} took {:?}",
            started.elapsed()
        );
        if path == "/metrics" {
            assert!(
                body.contains("topk_http_requests_refused_total{reason=\"busy\"}"),
                "{body}"
            );
        }
    }
    // The slots were still held throughout: another read is refused.
    assert_eq!(
        get("/v1/topk?window=hour").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Redis back: the waiting reads are answered.
    redis.resume();
    for _ in 0..IN_FLIGHT {
        let answered = "the waiting reads are answered once Redis is back";
        let status = next_status(&mut answers, Duration::from_secs(30), answered).await;
        assert_eq!(status, StatusCode::OK);
    }
    stop.cancel();
    served.await.unwrap().unwrap();
}

/// The status of the next ranking read answered, which must come within `within` (`what` says why).
async fn next_status(
    answers: &mut tokio::sync::mpsc::UnboundedReceiver<reqwest::Result<StatusCode>>,
    within: Duration,
    what: &str,
) -> StatusCode {
    let answer = tokio::time::timeout(within, answers.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}"));
    answer.unwrap().unwrap()
}
