//! What goes wrong, as `topk` tells it: the server's own message and status, exit status 1 for a request
//! that failed and 2 for a usage error, the URL that refused or did not answer, and retries that reuse the
//! batch's `Idempotency-Key`.

use crate::run::{cli_stack, topk, Cli};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use topk_testkit::stack::TOKEN;

/// A 400 from the API and from ingest, and a 401 for a wrong or missing token: each the server's message
/// after its status on stderr, nothing on stdout, exit status 1. Usage errors are clap's, status 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_message_is_shown() {
    let s = cli_stack("cli_errors").await;
    // The API's own message, read directly, so the test follows its wording.
    let direct: serde_json::Value =
        reqwest::get(format!("{}/v1/topk?window=hour&k=5000", s.api_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let message = direct["error"].as_str().unwrap();

    let run = s.topk(&["top", "-k", "5000"], None).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, format!("topk: 400 Bad Request: {message}\n"));
    assert_eq!(run.stdout, "");

    let run = s.topk(&["video", "not/valid"], None).await;
    assert!(
        run.failed_with(1).starts_with("topk: 400 Bad Request: "),
        "{run:?}"
    );

    let run = s.topk(&["send", "ok", "not valid!"], None).await;
    assert!(
        run.failed_with(1)
            .starts_with("topk: 400 Bad Request: element 1: "),
        "{run:?}"
    );
    assert!(
        run.stderr
            .ends_with("\ntopk: element 1 is \"not valid!\"\n"),
        "the element the server counts is named: {run:?}"
    );
    // After a batch was accepted, the failure says so.
    let run = s
        .topk(&["send", "--batch-size=1", "ok", "bad!"], None)
        .await;
    assert!(
        run.failed_with(1).ends_with("\ntopk: element 0 is \"bad!\"\ntopk: accepted before this failure: 1 view in 1 batch (those are stored)\n"),
        "{run:?}"
    );

    let run = s
        .topk(&["send", "--token", "s3cr3t-guess", "x"], None)
        .await;
    assert!(
        run.failed_with(1).starts_with("topk: 401 Unauthorized: "),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains("s3cr3t-guess"),
        "the token is never shown: {run:?}"
    );
    let no_token = [("TOPK_INGEST_URL", format!("http://{}", s.ingest))];
    let run = topk(&no_token, &["send", "x"], None).await;
    assert!(
        run.stderr.starts_with("topk: 401 Unauthorized: "),
        "{run:?}"
    );

    // Usage errors: clap's message and status 2, before any request.
    let run = s.topk(&["top", "--window", "week"], None).await;
    assert!(
        run.failed_with(2).contains("minute, hour, day, all"),
        "{run:?}"
    );
    let run = s
        .topk(&["top", "--api-url", "ftp://example.invalid"], None)
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    let run = topk(
        &[("TOPK_INGEST_TOKEN", String::new())],
        &["send", "x"],
        None,
    )
    .await;
    assert_eq!(
        run.code, 2,
        "an empty token is refused, not taken for none: {run:?}"
    );
    assert!(!s
        .topk(&["send", "--help"], None)
        .await
        .ok()
        .stdout
        .contains(TOKEN));
}

/// A port nobody listens on: refused, naming the URL. A port that never answers: timed out, naming it.
#[tokio::test]
async fn an_unreachable_service_is_named() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let env = [("TOPK_API_URL", format!("http://{closed}"))];
    let run = topk(&env, &["top"], None).await;
    assert!(
        run.failed_with(1)
            .starts_with(&format!("topk: http://{closed}/v1/topk?window=hour&k=10: ")),
        "{run:?}"
    );
    assert!(run.stderr.contains("connection refused"), "{run:?}");

    let url = format!("--ingest-url=http://{closed}");
    let run = topk(&[], &["send", &url, "--retries=0", "x"], None).await;
    assert!(
        run.failed_with(1)
            .contains(&format!("http://{closed}/v1/views: connection refused")),
        "{run:?}"
    );

    // Connections queue in the listen backlog and are never answered.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let url = format!("--api-url=http://{addr}");
    let run = topk(&[], &["video", "x", &url, "--timeout-ms=300"], None).await;
    assert!(
        run.failed_with(1)
            .starts_with(&format!("topk: http://{addr}/v1/videos/x: timed out")),
        "{run:?}"
    );
}

/// One request as the stand-in ingest saw it.
#[derive(Debug, Clone)]
struct Seen {
    key: Option<String>,
    authorization: Option<String>,
    body: String,
}

/// A stand-in for ingest that answers from a script (then 503 for ever) and records every request, to break
/// it on purpose: the real receiver answers 503 only when Redis is down or the log is backlogged.
#[derive(Clone, Default)]
struct Scripted {
    answers: Arc<Mutex<VecDeque<(StatusCode, &'static str)>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn scripted_views(
    State(s): State<Scripted>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    s.seen.lock().unwrap().push(Seen {
        key: header("idempotency-key"),
        authorization: header("authorization"),
        body,
    });
    let (status, body) = s.answers.lock().unwrap().pop_front().unwrap_or((
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":"the view log (Redis) is unavailable, try again shortly"}"#,
    ));
    // Retry-After: 0 keeps the test fast; that the client honours it is why it returns at once.
    (
        status,
        [("retry-after", "0"), ("content-type", "application/json")],
        body,
    )
}

async fn scripted(answers: &[(StatusCode, &'static str)]) -> (Scripted, String) {
    let state = Scripted::default();
    state
        .answers
        .lock()
        .unwrap()
        .extend(answers.iter().copied());
    let app = axum::Router::new()
        .route("/v1/views", axum::routing::post(scripted_views))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("--ingest-url=http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, url)
}

/// A batch answered 503 is sent again, same body and same key, until it is accepted; batches get keys of
/// their own; a 400 is not retried; retries give up after --retries with the last answer's message.
#[tokio::test]
async fn a_503_is_sent_again_under_the_same_key() {
    let (s, url) = scripted(&[
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"busy"}"#),
        (StatusCode::ACCEPTED, r#"{"accepted":2}"#),
        (StatusCode::ACCEPTED, r#"{"accepted":1}"#),
        (StatusCode::BAD_REQUEST, r#"{"error":"element 1: nope"}"#),
    ])
    .await;
    let env = [("TOPK_INGEST_TOKEN", "t1,t0".to_owned())];
    let run = topk(&env, &["send", &url, "--batch-size=2", "a", "a", "b"], None)
        .await
        .ok();
    assert_eq!(run.stdout, "accepted 3 views in 2 batches\n");
    assert!(
        run.stderr
            .contains("503 Service Unavailable: busy; sending the batch again"),
        "{run:?}"
    );
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!((&seen[0].key, &seen[0].body), (&seen[1].key, &seen[1].body));
    assert_eq!(seen[0].body, r#"[{"videoId":"a","count":2}]"#);
    assert_eq!(seen[2].body, r#"[{"videoId":"b","count":1}]"#);
    assert_ne!(seen[1].key, seen[2].key);
    assert!(seen.iter().all(|r| r.key.is_some()));
    assert!(seen
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer t1")));

    // A 400 is final: one request, its message, status 1.
    let run = topk(&[], &["send", &url, "x"], None).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, "topk: 400 Bad Request: element 1: nope\n");
    assert_eq!(s.seen.lock().unwrap().len(), 4);

    // Unavailable for good: the first try and two retries, then the last message.
    let run = topk(&[], &["send", &url, "--retries=2", "x"], None).await;
    assert!(
        run.failed_with(1).ends_with("topk: 503 Service Unavailable: the view log (Redis) is unavailable, try again shortly\n"), "{run:?}");
    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 7);
    assert!(seen[4..]
        .iter()
        .all(|r| r.key == seen[4].key && r.authorization.is_none()));
}
