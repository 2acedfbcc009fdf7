//! Views over HTTP end to end, through ingest to the API's rankings, and every class of bad input.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use topk_core::domain::VideoId;
use topk_testkit::stack::TOKEN;
use topk_testkit::Stack;

/// A refused request: what it is, body, token, content type, expected status.
type BadRequest = (
    &'static str,
    String,
    Option<&'static str>,
    Option<&'static str>,
    StatusCode,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_posted_over_http_rank_in_every_window_and_the_minute_slides() {
    rank_in_every_window_and_slide(&topk_testkit::servers().redis_url).await;
}

/// The same on a Redis Cluster of 3 primaries, partitions spread over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_posted_over_http_rank_in_every_window_on_a_cluster() {
    rank_in_every_window_and_slide(&topk_testkit::cluster_url()).await;
}

async fn rank_in_every_window_and_slide(redis_url: &str) {
    let s = Stack::builder("e2e")
        .redis_url(redis_url)
        .partitions(6)
        .start()
        .await;
    let (status, body) = s
        .post(&json!([{"videoId": "a"}, {"videoId": "b", "count": 3}, {"videoId": "a"}]))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({"accepted": 5}))
    );
    let mut visible = Duration::ZERO;
    for w in ["minute", "hour", "day", "all"] {
        visible = visible.max(
            s.wait_for_ranking(w, &[("b", 3), ("a", 2)], Duration::from_secs(1))
                .await,
        );
    }
    eprintln!("visible in every window {visible:?} after the POST answered");

    // Ties by videoId descending, k honoured, both routes agree.
    s.post(&json!([{"videoId": "c", "count": 2}])).await;
    s.wait_for_ranking(
        "all",
        &[("b", 3), ("c", 2), ("a", 2)],
        Duration::from_secs(1),
    )
    .await;
    let (_, top2) = s.get("/view/video?k=2&window=all").await;
    assert_eq!(
        top2,
        json!([{"videoId": "b", "views": 3}, {"videoId": "c", "views": 2}])
    );

    // A view 50 s old (appended with its event time) is in the minute window now and leaves it within seconds,
    // while it stays in the hour, day and all-time windows.
    let s2 = Stack::builder("slide")
        .redis_url(redis_url)
        .partitions(3)
        .start()
        .await;
    let now = s2.store.now_ms().await.unwrap();
    s2.store
        .writer()
        .append_at(&[(VideoId::parse("old").unwrap(), 7)], now - 50_000)
        .await
        .unwrap();
    s2.wait_for_ranking("minute", &[("old", 7)], Duration::from_secs(2))
        .await;
    let slid = s2
        .wait_for_ranking("minute", &[], Duration::from_secs(15))
        .await;
    eprintln!("the 50 s old view left the minute window after {slid:?}");
    for w in ["hour", "day", "all"] {
        s2.wait_for_ranking(w, &[("old", 7)], Duration::from_secs(1))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let s = Stack::builder("bad")
        .partitions(2)
        .ingest_args(&["--max-batch-len=5", "--max-body-bytes=2000"])
        .start()
        .await;
    s.post(&json!([{"videoId": "seed", "count": 2}])).await;
    s.wait_for_ranking("all", &[("seed", 2)], Duration::from_secs(2))
        .await;
    let before = s.state_fingerprint().await;

    let long_id = "x".repeat(65);
    // Bodies refused as they are: each sent with the token as JSON, answered 400.
    let refused_bodies: Vec<(&str, String)> = vec![
        ("not JSON", "[{".into()),
        ("not an array", r#"{"videoId":"a"}"#.into()),
        ("empty batch", "[]".into()),
        ("element not an object", r#"[{"videoId":"a"}, 3]"#.into()),
        ("missing videoId", r#"[{"videoId":"a"},{"count":1}]"#.into()),
        (
            "id with a space",
            r#"[{"videoId":"a"},{"videoId":"has space"}]"#.into(),
        ),
        ("empty id", r#"[{"videoId":""}]"#.into()),
        (
            "id `.` (a URL path resolves it away)",
            r#"[{"videoId":"a"},{"videoId":"."}]"#.into(),
        ),
        ("id `..`", r#"[{"videoId":".."}]"#.into()),
        ("id too long", format!(r#"[{{"videoId":"{long_id}"}}]"#)),
        ("count zero", r#"[{"videoId":"a","count":0}]"#.into()),
        (
            "count too large",
            r#"[{"videoId":"a","count":1000001}]"#.into(),
        ),
        ("count negative", r#"[{"videoId":"a","count":-1}]"#.into()),
        (
            "count fractional",
            r#"[{"videoId":"a","count":1.5}]"#.into(),
        ),
        ("count a string", r#"[{"videoId":"a","count":"1"}]"#.into()),
        ("unknown field", r#"[{"videoId":"a","when":1}]"#.into()),
        (
            "batch too long",
            serde_json::to_string(&vec![json!({"videoId": "a"}); 6]).unwrap(),
        ),
    ];
    let mut cases: Vec<BadRequest> = refused_bodies
        .into_iter()
        .map(|(what, body)| {
            let json = Some("application/json");
            (what, body, Some(TOKEN), json, StatusCode::BAD_REQUEST)
        })
        .collect();
    cases.extend([
        (
            "body too large",
            format!(r#"[{{"videoId":"a","pad":"{}"}}]"#, "p".repeat(3000)),
            Some(TOKEN),
            Some("application/json"),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "not JSON content",
            r#"[{"videoId":"a"}]"#.into(),
            Some(TOKEN),
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no Content-Type",
            r#"[{"videoId":"a"}]"#.into(),
            Some(TOKEN),
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no token",
            r#"[{"videoId":"a"}]"#.into(),
            None,
            Some("application/json"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong token",
            r#"[{"videoId":"a"}]"#.into(),
            Some("test-tokeN"),
            Some("application/json"),
            StatusCode::UNAUTHORIZED,
        ),
    ]);
    for (what, body, token, ct, want) in cases {
        let (status, body) = s.post_raw(body, token, ct).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: no JSON error: {body}"
        );
    }
    let (status, body) = s
        .post_raw(
            r#"[{"videoId":"a"},{"videoId":"b c"}]"#,
            Some(TOKEN),
            Some("application/json"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().starts_with("element 1:"),
        "{body}"
    );

    // A client's field name is echoed cut short, however long it is.
    let long_name = "n".repeat(1500);
    let (status, body) = s
        .post_raw(
            format!(r#"[{{"videoId":"a","{long_name}":1}}]"#),
            Some(TOKEN),
            Some("application/json"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("element 0: unknown field \"nnn"),
        "{error}"
    );
    assert!(error.len() < 200, "{} bytes: {error}", error.len());

    for (query, what) in [
        ("/v1/topk?window=week", "window"),
        ("/v1/topk?k=5", "window"),
        ("/v1/topk?window=all&k=0", "k"),
        ("/v1/topk?window=all&k=1001", "k"),
        ("/v1/topk?window=all&k=ten", "k"),
        ("/view/video?window=all&k=-3", "k"),
    ] {
        let (status, body) = s.get(query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["error"].as_str().unwrap().contains(what),
            "{query}: {body}"
        );
    }
    let (status, body) = s.get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
    // A known route with another method: 405, the JSON body, and the methods it takes in Allow.
    for (url, allowed) in [
        (format!("http://{}/v1/topk?window=all", s.api), "GET"),
        (format!("http://{}/v1/views", s.ingest), "POST"),
    ] {
        let r = s.http.delete(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{url}");
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            allow.as_deref().unwrap_or_default().contains(allowed),
            "{url}: Allow {allow:?}"
        );
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("DELETE"),
            "{url}: {body}"
        );
    }

    s.assert_unchanged(&before, "a refused request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_and_health() {
    let s = Stack::builder("doc").partitions(1).start().await;
    let fetch = |addr: SocketAddr, path: &'static str| {
        let http = s.http.clone();
        async move {
            let r = http
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    for (addr, route) in [(s.api, "/view/video"), (s.ingest, "/v1/views")] {
        for path in ["/healthz", "/readyz"] {
            assert_eq!(fetch(addr, path).await.0, StatusCode::OK, "{addr}{path}");
        }
        let (status, doc) = fetch(addr, "/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(
            doc["paths"][route].is_object(),
            "{route} missing from the document"
        );
        assert!(doc["paths"]["/readyz"]["get"].is_object());
    }
}
