//! Supervised loops: a background loop of an ingest process that dies takes the whole process down with its
//! cause (so the binary exits non-zero and is restarted), and readiness says so meanwhile.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_ingest::Application;
use tower::ServiceExt;

async fn readiness(router: &axum::Router) -> StatusCode {
    router
        .clone()
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

/// A loop injected beside the workers, the retirer and the receiver panics: `run` stops everything and
/// returns the loop's name and panic, the receiver stops listening, and `/readyz` answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_loop_stops_the_process_with_its_cause_and_fails_readiness() {
    let prefix = topk_testkit::unique_name("supervised");
    let config = crate::ingest_config(&prefix, &["--addr=127.0.0.1:0"]);
    let app = Application::build(config).await.unwrap();
    let addr = app.local_addr().unwrap();
    let router = app.router();
    assert_eq!(readiness(&router).await, StatusCode::OK);

    let stop = CancellationToken::new();
    // The loop fails when the test says, once it has seen the process serve.
    let (fail, failing) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_with(stop.clone(), |tasks| {
        tasks.spawn("injected loop", async {
            let _ = failing.await;
            panic!("injected failure");
        })
    }));
    // Serving meanwhile.
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    fail.send(()).unwrap();

    let outcome = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the process kept running with a dead loop")
        .unwrap();
    let message = format!(
        "{:#}",
        outcome.expect_err("a dead loop ended the process with Ok")
    );
    assert!(
        message.contains("injected loop") && message.contains("injected failure"),
        "{message}"
    );
    assert!(stop.is_cancelled(), "the other loops were not told to stop");
    assert_eq!(readiness(&router).await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the receiver still listens"
    );
}
