//! `verify`: a consistent state, then a window changed behind its back.

use crate::helpers::{fed, retire, MIN, T0};
use topk_core::domain::{VideoId, Window};
use topk_snapshotter::jobs::snapshot_minutes;

/// `verify` finds nothing on a consistent state and reports a window changed behind its back.
#[tokio::test]
async fn verify_reports_every_difference() {
    let (store, pool, _) = fed("verify", 2, 120, 20 * MIN).await;
    let now = T0 + 21 * MIN;
    snapshot_minutes(&store, &pool, now - MIN).await.unwrap();
    retire(&store, now).await;
    let diffs = topk_snapshotter::verify::verify(&store, &pool, now)
        .await
        .unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");

    let p = store.keys().partition_of(&VideoId::parse("v3").unwrap());
    let url = topk_testkit::servers().redis_url.clone();
    let port = url.rsplit(':').next().unwrap();
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            port,
            "HINCRBY",
            &store.keys().window(p, Window::Hour),
            "v3",
            "1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let diffs = topk_snapshotter::verify::verify(&store, &pool, now)
        .await
        .unwrap();
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(
        (diffs[0].window, diffs[0].video_id.as_str()),
        (Window::Hour, "v3")
    );
}
