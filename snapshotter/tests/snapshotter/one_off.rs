//! The one-off commands beside a running snapshotter: `snapshot --once` and `rebuild-redis` take the lock or
//! fail naming who holds it, stop when asked, never write without it; `rebuild-redis` refuses to run beside
//! ingest workers unless forced.

use crate::helpers::{drain, feed, spread, MIN};
use clap::Parser;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::config::RedisConfig;
use topk_core::domain::Window;
use topk_snapshotter::cli::Cli;
use topk_snapshotter::leader::Leadership;
use topk_testkit::fixtures::{migrated_pool_at, redis_config, store_for, window_counts};

/// A deployment on the shared servers: its Redis settings, a store, a migrated database and its URL.
async fn deployment(label: &str) -> (RedisConfig, topk_core::redis::RedisStore, PgPool, String) {
    let cfg = redis_config(label, 2);
    let store = store_for(&cfg).await;
    let url = topk_testkit::fresh_database(label);
    let pool = migrated_pool_at(&url).await;
    (cfg, store, pool, url)
}

/// Runs `topk-snapshotter <args>` against the deployment, giving up (a test failure) after 30 s.
async fn run(
    cfg: &RedisConfig,
    url: &str,
    args: &[&str],
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut argv = vec!["topk-snapshotter".to_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv.extend([
        format!("--redis-url={}", cfg.redis_url),
        format!("--key-prefix={}", cfg.key_prefix),
        format!("--partitions={}", cfg.partitions),
        format!("--database-url={url}"),
    ]);
    let cli = Cli::try_parse_from(argv).unwrap();
    tokio::time::timeout(Duration::from_secs(30), topk_snapshotter::run(cli, stop))
        .await
        .expect("the command did not finish within 30 s")
}

/// Runs a command that must fail, and returns its error as the operator reads it.
async fn refused(cfg: &RedisConfig, url: &str, args: &[&str]) -> String {
    let outcome = run(cfg, url, args, CancellationToken::new()).await;
    format!("{:#}", outcome.expect_err("the command ran"))
}

async fn ranking_rows(pool: &PgPool) -> i64 {
    sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM global_topk_snapshots")
        .fetch_one(pool)
        .await
        .unwrap()
        .0
}

/// `snapshot --once` while a running snapshotter holds the lock: it waits the bounded time, then fails with
/// an error naming the holder, having written nothing; stopped while waiting, it fails at once and writes
/// nothing either (it used to wait forever, and once stopped write without the lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_once_beside_a_running_snapshotter_fails_naming_it_and_writes_nothing() {
    let (cfg, store, pool, url) = deployment("once_locked").await;
    feed(&store, &spread(20, MIN)).await;
    drain(&store).await;
    let held = Leadership::try_acquire(&pool).await.unwrap().unwrap();

    let waited = std::time::Instant::now();
    let message = refused(&cfg, &url, &["snapshot", "--once", "--lock-wait-secs=1"]).await;
    assert!(waited.elapsed() >= Duration::from_secs(1));
    assert!(
        message.contains("held by Postgres backend") && message.contains("nothing was written"),
        "{message}"
    );

    let stop = CancellationToken::new();
    let stopping = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.cancel();
        }
    });
    let err = run(&cfg, &url, &["snapshot", "--lock-wait-secs=60"], stop)
        .await
        .expect_err("a stopped snapshot succeeded");
    stopping.await.unwrap();
    assert!(
        format!("{err:#}").contains("stopped while waiting"),
        "{err:#}"
    );
    assert_eq!(
        ranking_rows(&pool).await,
        0,
        "rankings written without the lock"
    );
    assert!(topk_core::db::checkpoints(&pool).await.unwrap().is_empty());

    held.release().await;
    run(&cfg, &url, &["snapshot"], CancellationToken::new())
        .await
        .unwrap();
    assert!(ranking_rows(&pool).await > 0);
}

/// `rebuild-redis` refuses while a snapshotter holds the lock (naming it) and while workers consume the log
/// (unless `--force`), leaving Redis as it was; forced and unlocked, it rebuilds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_refuses_beside_a_snapshotter_or_running_workers() {
    let (cfg, store, pool, url) = deployment("rebuild_guard").await;
    feed(&store, &spread(20, MIN)).await;
    // `drain` reads the log as worker "w": a worker seen a moment ago.
    drain(&store).await;
    let before = window_counts(&store, Window::All).await;
    assert!(!before.is_empty());

    let message = refused(&cfg, &url, &["rebuild-redis"]).await;
    assert!(
        message.contains("w on partition") && message.contains("--force"),
        "{message}"
    );

    let held = Leadership::try_acquire(&pool).await.unwrap().unwrap();
    let err = run(
        &cfg,
        &url,
        &["rebuild-redis", "--force", "--lock-wait-secs=1"],
        CancellationToken::new(),
    )
    .await
    .expect_err("a rebuild ran beside the lock holder");
    assert!(
        format!("{err:#}").contains("held by Postgres backend"),
        "{err:#}"
    );
    assert_eq!(
        window_counts(&store, Window::All).await,
        before,
        "Redis was changed"
    );

    held.release().await;
    run(
        &cfg,
        &url,
        &["rebuild-redis", "--force"],
        CancellationToken::new(),
    )
    .await
    .unwrap();
    // Postgres has nothing yet, so the whole log is replayed on top of the restored (empty) windows.
    drain(&store).await;
    assert_eq!(window_counts(&store, Window::All).await, before);
}
