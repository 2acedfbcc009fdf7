//! `run`: the jobs on their schedules while the lock is held, and a clean stop.

use crate::helpers::{fed, per_minute, stats, MIN};
use clap::Parser;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_snapshotter::cli::{Cli, Command};
use topk_snapshotter::leader::Leadership;
use topk_snapshotter::run_scheduled;

/// `run` takes the lock, writes every closed minute and the rankings at once (without waiting for the first
/// cron tick), holds the lock while it runs so a second snapshotter stands by, and on stop ends cleanly and
/// frees the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_writes_at_start_holds_the_lock_and_frees_it_on_stop() {
    // Views in the past: at Redis's own time every minute of them is closed.
    let (store, pool, events) = fed("sched", 2, 100, 5 * MIN).await;
    let Command::Run(args) = Cli::try_parse_from(["topk-snapshotter", "run"])
        .unwrap()
        .command
    else {
        panic!("`run` parsed as another subcommand")
    };
    let stop = CancellationToken::new();

    let run = tokio::spawn({
        let (store, pool, stop) = (store.clone(), pool.clone(), stop.clone());
        async move { run_scheduled(store, pool, &args.store, stop).await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats(&pool).await != per_minute(&events, i64::MAX) {
        assert!(Instant::now() < deadline, "run did not write the minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The rankings follow the minutes in the same first run: wait for them too.
    loop {
        let (ranking_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM global_topk_snapshots")
            .fetch_one(&pool)
            .await
            .unwrap();
        if ranking_rows > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "run did not write the rankings");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        Leadership::try_acquire(&pool).await.unwrap().is_none(),
        "a second snapshotter took the lock while run held it"
    );

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("run did not stop")
        .unwrap()
        .unwrap();
    assert!(
        Leadership::try_acquire(&pool).await.unwrap().is_some(),
        "run kept the lock after it stopped"
    );
}
