//! Telemetry: every Redis command and script, and every Postgres statement function, runs in a span that
//! names it, at a level the services do not enable by default (TRACE for commands, DEBUG for scripts and
//! statements), so the hot append and apply paths pay nothing for them unless asked.
//!
//! A binary of its own: `tracing` decides once per process whether a call site is enabled, from the
//! subscriber of the thread that first reaches it (while at most one subscriber is registered). Beside the
//! other tests, a thread of theirs (no subscriber) could reach a Redis call site first and disable it for this
//! test too, which then failed now and then with that span missing.

use topk_core::domain::{TopK, VideoId, Window};
use topk_testkit::fixtures::{apply_log, migrated_pool, store};
use topk_testkit::LogCapture;

/// The append and apply scripts and the commands they are sent with, a ranking read, and a history read each
/// close a span naming what ran; at INFO none of them is recorded.
#[tokio::test(flavor = "current_thread")]
async fn redis_and_postgres_calls_run_in_spans_that_name_them() {
    let store = store("spans", 2).await;
    let pool = migrated_pool("spans").await;
    let video = VideoId::parse("spanned").unwrap();

    let (quiet, guard) = LogCapture::spans(tracing::Level::INFO);
    store.writer().append(&[(video.clone(), 2)]).await.unwrap();
    drop(guard);
    assert_eq!(quiet.text(), "", "nothing below INFO is recorded at INFO");

    let (spans, _guard) = LogCapture::spans(tracing::Level::TRACE);
    store.writer().append(&[(video.clone(), 3)]).await.unwrap();
    apply_log(&store, "spans", 100).await;
    let top = store
        .rankings()
        .top(Window::All, TopK::DEFAULT)
        .await
        .unwrap();
    assert_eq!(top[0].views, 5);
    topk_core::db::topk_history(&pool, Window::Hour, chrono::Utc::now(), 10)
        .await
        .unwrap();
    let text = spans.text();
    for expected in [
        "redis.script{script=append key=",
        "redis.script{script=apply key=",
        "redis.command{command=EVALSHA key=",
        "redis.command{command=XREADGROUP key=",
        "redis.command{command=MULTI key=",
        "topk_history{window=\"hour\"",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
}
