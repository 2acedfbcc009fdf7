//! Event time over HTTP: `"at"` on the elements of `POST /v1/views`. A dated view counts in every window
//! whose span holds its time when applied, as a Kafka record's timestamp does (`kafka/role.rs`); an `at` that
//! does not parse, or lies too far in the future, refuses the whole batch with a 400 naming the element and
//! stores nothing; and an `Idempotency-Key` covers a dated batch like any other. On one node and on a cluster.

use chrono::{Duration as Span, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use topk_testkit::{holds_for, Stack};

/// `ago` before now, as RFC 3339 (negative: in the future).
fn at(ago: Span) -> String {
    (Utc::now() - ago).to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dated_views_count_in_the_windows_that_hold_their_time() {
    let s = Stack::builder("event_time").partitions(6).start().await;
    dated_views_count_where_they_happened(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dated_views_count_in_the_windows_that_hold_their_time_on_a_cluster() {
    dated_views_count_where_they_happened(Stack::on_cluster("event_time_cluster").await).await;
}

async fn dated_views_count_where_they_happened(s: Stack) {
    // Arrange: undated views, views seconds ago, two hours ago, two days ago, and 2 s in the future (within
    // the 5 s skew: they count when stored), in one batch and in an offset other than UTC.
    let two_hours_ago = (Utc::now() - Span::hours(2))
        .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap())
        .to_rfc3339();
    let batch = json!([
        {"videoId": "now", "count": 2},
        {"videoId": "seconds", "count": 3, "at": at(Span::seconds(10))},
        {"videoId": "hours", "count": 5, "at": two_hours_ago},
        {"videoId": "days", "count": 7, "at": at(Span::days(2))},
        {"videoId": "ahead", "at": at(Span::seconds(-2))},
        {"videoId": "now", "at": at(Span::milliseconds(1))},
    ]);

    // Act.
    let (status, body) = s.post(&batch).await;

    // Assert: every view accepted, each in the windows that hold its time.
    assert_eq!(
        (status, body),
        (StatusCode::ACCEPTED, json!({"accepted": 19}))
    );
    let within = Duration::from_secs(10);
    s.wait_for_ranking(
        "all",
        &[
            ("days", 7),
            ("hours", 5),
            ("seconds", 3),
            ("now", 3),
            ("ahead", 1),
        ],
        within,
    )
    .await;
    s.wait_for_ranking(
        "day",
        &[("hours", 5), ("seconds", 3), ("now", 3), ("ahead", 1)],
        within,
    )
    .await;
    s.wait_for_ranking("hour", &[("seconds", 3), ("now", 3), ("ahead", 1)], within)
        .await;
    s.wait_for_ranking(
        "minute",
        &[("seconds", 3), ("now", 3), ("ahead", 1)],
        within,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_future_at_refuses_the_whole_batch() {
    let s = Stack::builder("event_time_bad")
        .partitions(2)
        .ingest_args(&["--event-time-max-skew-secs=5"])
        .start()
        .await;
    s.post_views(&[("seed", 2)]).await;
    s.wait_for_ranking("all", &[("seed", 2)], Duration::from_secs(5))
        .await;
    let before = s.state_fingerprint().await;

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "not a time",
            json!([{"videoId": "a"}, {"videoId": "b", "at": "yesterday"}]),
            "element 1: at \"yesterday\" is not an RFC 3339 time",
        ),
        (
            "no offset",
            json!([{"videoId": "a", "at": "2026-12-07T10:15:00"}]),
            "element 0: at \"2026-12-07T10:15:00\" is not an RFC 3339 time",
        ),
        (
            "a date only",
            json!([{"videoId": "a", "at": "2026-12-07"}]),
            "element 0: at \"2026-12-07\" is not an RFC 3339 time",
        ),
        (
            "a minute ahead",
            json!([{"videoId": "a", "at": at(Span::minutes(-1))}, {"videoId": "b"}]),
            "element 0: at",
        ),
        (
            "before the epoch",
            json!([{"videoId": "a", "at": "1969-12-31T23:59:59Z"}]),
            "element 0: at \"1969-12-31T23:59:59Z\" is before 1970-01-01T00:00:00Z",
        ),
        (
            "a number",
            json!([{"videoId": "a"}, {"videoId": "a", "at": 1_765_000_000_000_i64}]),
            "element 1: at must be a string",
        ),
        (
            "good at, bad video",
            json!([{"videoId": "a b", "at": at(Span::seconds(3))}]),
            "element 0: videoId",
        ),
    ];
    for (what, batch, says) in cases {
        let (status, body) = s.post(&batch).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(says), "{what}: {error:?}");
    }
    let (_, body) = s
        .post(&json!([{"videoId": "a", "at": at(Span::minutes(-1))}]))
        .await;
    assert!(
        body["error"].as_str().unwrap().contains("in the future"),
        "{body}"
    );

    // Nothing of any refused batch is stored: the log and every window stay as they were for longer than a
    // worker step takes to apply what the log holds (the stack's workers wait at most 400 ms between steps).
    holds_for(
        "the state after refused batches",
        Duration::from_millis(600),
        || async { s.state_fingerprint().await == before },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dated_batch_sent_again_under_its_key_counts_once() {
    let s = Stack::builder("event_time_key").partitions(4).start().await;
    let batch = json!([
        {"videoId": "x", "count": 4, "at": at(Span::hours(3))},
        {"videoId": "y", "count": 2},
    ]);
    let (first, _) = s.post_with_key(&batch, "dated-1").await;
    let (again, body) = s.post_with_key(&batch, "dated-1").await;
    assert_eq!((first, again), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(body, json!({"accepted": 6}));
    s.wait_for_ranking("all", &[("x", 4), ("y", 2)], Duration::from_secs(5))
        .await;
    s.wait_for_ranking("hour", &[("y", 2)], Duration::from_secs(5))
        .await;

    // The same views at another time are another batch: the key is refused for it, and nothing is stored.
    let moved = json!([
        {"videoId": "x", "count": 4, "at": at(Span::hours(2))},
        {"videoId": "y", "count": 2},
    ]);
    let (status, body) = s.post_with_key(&moved, "dated-1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let before = s.state_fingerprint().await;
    holds_for(
        "the state after a reused key",
        Duration::from_millis(600),
        || async { s.state_fingerprint().await == before },
    )
    .await;
}
