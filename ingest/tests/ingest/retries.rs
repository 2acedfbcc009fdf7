//! Retry-safe writes: a batch sent again under its `Idempotency-Key` is answered 202 and counted once.

use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use topk_testkit::Stack;

/// A producer that lost the answer to its batch (or got a 503 or 408 after Redis had it) sends it again under
/// the same key: 202 each time, counted once in every window. The same key with another batch is a 422 that
/// stores nothing; a malformed key is a 400; without a key a batch sent twice counts twice, as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_again_under_its_key_counts_once() {
    sent_again_under_its_key(Stack::builder("idempotency").partitions(3).start().await).await;
}

/// The same on a Redis Cluster, where each partition's part of the batch is stored under the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_again_under_its_key_counts_once_on_a_cluster() {
    sent_again_under_its_key(Stack::on_cluster("idempotency_cluster").await).await;
}

async fn sent_again_under_its_key(s: Stack) {
    let batch =
        json!([{"videoId": "a", "count": 2}, {"videoId": "b"}, {"videoId": "c", "count": 3}]);
    for _ in 0..3 {
        assert_eq!(
            s.post_with_key(&batch, "batch-1").await,
            (StatusCode::ACCEPTED, json!({"accepted": 6}))
        );
    }
    let once = [("c", 3), ("a", 2), ("b", 1)];
    for w in ["minute", "hour", "day", "all"] {
        s.wait_for_ranking(w, &once, Duration::from_secs(2)).await;
    }
    let before = s.state_fingerprint().await;

    let (status, body) = s.post_with_key(&json!([{"videoId": "a"}]), "batch-1").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("different batch"),
        "{body}"
    );
    for bad in ["", &"k".repeat(129)] {
        let (status, body) = s.post_with_key(&json!([{"videoId": "a"}]), bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("Idempotency-Key"),
            "{body}"
        );
    }
    s.assert_unchanged(&before, "a refused batch").await;

    for _ in 0..2 {
        assert_eq!(
            s.post(&json!([{"videoId": "d"}])).await.0,
            StatusCode::ACCEPTED
        );
    }
    s.wait_for_ranking(
        "all",
        &[("c", 3), ("d", 2), ("a", 2), ("b", 1)],
        Duration::from_secs(2),
    )
    .await;
}
