//! topk-snapshotter: Postgres as the system of record for history and recovery.
//!
//! # Layout
//! - [`cli`]: subcommands and settings.
//! - [`jobs`]: the steps, on injected time: closed minutes to `video_stats`/`video_totals`
//!   ([`jobs::snapshot_minutes`]), window rankings to `global_topk_snapshots` ([`jobs::snapshot_rankings`]).
//! - [`leader`]: the advisory lock that makes one snapshotter the writer.
//! - [`rebuild`] restores Redis from Postgres (`rebuild-redis`).
//! - [`jobs::maintain_history`]: roll-ups and retention of `video_stats` (hourly).
//! - [`verify`] reports every difference between Redis windows, their slices and Postgres.
//! - [`run_scheduled`]: the jobs on tokio-cron-scheduler, with a watchdog that runs them itself when the
//!   schedule stalls (missed ticks are dropped by the scheduler; catch-up makes that harmless).

pub mod cli;
pub mod jobs;
pub mod leader;
pub mod rebuild;
pub mod verify;

use cli::{Cli, Command, StoreArgs};
use sqlx::PgPool;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use topk_core::redis::RedisStore;

/// Runs one subcommand to completion.
pub async fn run(cli: Cli, stop: CancellationToken) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(args) => {
            let pool = topk_core::db::pool(&args.database)?;
            topk_core::db::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Run(args) => {
            let (store, pool) = connect(&args).await?;
            run_scheduled(store, pool, &args, stop).await
        }
        Command::Snapshot(args) => {
            let (store, pool) = connect(&args.store).await?;
            let lock = leader::Leadership::acquire(&pool, &stop).await;
            let now = store.now_ms().await?;
            let minutes = jobs::snapshot_minutes(&store, &pool, now).await?;
            let rankings = jobs::snapshot_rankings(&store, &pool, now).await?;
            tracing::info!(
                minutes = minutes.minutes,
                rows = minutes.rows,
                ranking_rows = rankings,
                "snapshot done"
            );
            if let Some(l) = lock {
                l.release().await;
            }
            Ok(())
        }
        Command::Verify(args) => {
            let (store, pool) = connect(&args).await?;
            let now = store.now_ms().await?;
            let diffs = verify::verify(&store, &pool, now).await?;
            for d in &diffs {
                println!("{d}");
            }
            let leaders = verify::leader_problems(&store).await?;
            for problem in &leaders {
                println!("{problem}");
            }
            if diffs.is_empty() && leaders.is_empty() {
                println!("no differences");
                Ok(())
            } else {
                anyhow::bail!(
                    "{} differences: {:?}; {} leader-set problems",
                    diffs.len(),
                    verify::summary(&diffs),
                    leaders.len()
                )
            }
        }
        Command::RebuildRedis(args) => {
            let (store, pool) = connect(&args).await?;
            let now = store.now_ms().await?;
            let started = std::time::Instant::now();
            let report = rebuild::rebuild(&store, &pool, now, true).await?;
            let secs = started.elapsed().as_secs_f64();
            let rows = report.minute_rows + report.total_rows;
            eprintln!(
                "restored {rows} rows in {secs:.2} s ({:.0} rows/s)",
                rows as f64 / secs.max(1e-9)
            );
            Ok(())
        }
    }
}

async fn connect(args: &StoreArgs) -> anyhow::Result<(RedisStore, PgPool)> {
    let store = RedisStore::connect(&args.redis).await?;
    let pool = topk_core::db::pool(&args.database)?;
    Ok((store, pool))
}

/// One run of both jobs at Redis's time; errors are logged (the next run catches up).
async fn tick(store: &RedisStore, pool: &PgPool, rankings: bool) -> bool {
    let now = match store.now_ms().await {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(error = %e, "snapshot skipped: Redis unreachable");
            return false;
        }
    };
    let mut ok = true;
    match jobs::snapshot_minutes(store, pool, now).await {
        Ok(r) => tracing::info!(minutes = r.minutes, rows = r.rows, "minutes written"),
        Err(e) => {
            ok = false;
            tracing::warn!(error = %e, "minute snapshot failed; the next run catches up");
        }
    }
    if rankings {
        match jobs::snapshot_rankings(store, pool, now).await {
            Ok(rows) => tracing::info!(rows, "rankings written"),
            Err(e) => {
                ok = false;
                tracing::warn!(error = %e, "ranking snapshot failed");
            }
        }
    }
    ok
}

/// Runs the jobs on their cron schedules while this process holds the lock; stands by otherwise.
pub async fn run_scheduled(
    store: RedisStore,
    pool: PgPool,
    args: &StoreArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    while !stop.is_cancelled() {
        let Some(mut lock) = leader::Leadership::acquire(&pool, &stop).await else {
            break;
        };
        let last_minute_run = Arc::new(AtomicI64::new(chrono::Utc::now().timestamp()));
        let sched = JobScheduler::new().await?;
        let (s, p, last) = (store.clone(), pool.clone(), last_minute_run.clone());
        sched
            .add(Job::new_async(
                args.minute_schedule.as_str(),
                move |_, _| {
                    let (s, p, last) = (s.clone(), p.clone(), last.clone());
                    Box::pin(async move {
                        if tick(&s, &p, false).await {
                            last.store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                        }
                    })
                },
            )?)
            .await?;
        let (s, p) = (store.clone(), pool.clone());
        sched
            .add(Job::new_async(args.topk_schedule.as_str(), move |_, _| {
                let (s, p) = (s.clone(), p.clone());
                Box::pin(async move {
                    if let Ok(now) = s.now_ms().await {
                        if let Err(e) = jobs::snapshot_rankings(&s, &p, now).await {
                            tracing::warn!(error = %e, "ranking snapshot failed");
                        }
                    }
                })
            })?)
            .await?;
        let (s, p, policy) = (store.clone(), pool.clone(), args.retention());
        sched
            .add(Job::new_async(args.maintenance_schedule.as_str(), move |_, _| {
                let (s, p) = (s.clone(), p.clone());
                Box::pin(async move {
                    let Ok(now) = s.now_ms().await else { return };
                    match jobs::maintain_history(&p, now, policy).await {
                        Ok(r) => tracing::info!(rolled_up = r.rows_rolled_up, partitions_dropped = r.partitions_dropped, "history upkeep done"),
                        Err(e) => tracing::warn!(error = %e, "history upkeep failed; the next run resumes"),
                    }
                })
            })?)
            .await?;
        sched.start().await?;
        tick(&store, &pool, true).await;
        // Watchdog: the scheduler drops missed ticks and has been seen to stop firing repeated jobs under load;
        // when no minute run succeeded for three minutes, run it here and say so.
        let mut watchdog = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = watchdog.tick() => {}
                _ = stop.cancelled() => break,
            }
            if !lock.still_held().await {
                tracing::warn!(
                    "lost the snapshotter lock (Postgres connection closed); standing by"
                );
                break;
            }
            let idle = chrono::Utc::now().timestamp() - last_minute_run.load(Ordering::Relaxed);
            if idle > 180 {
                tracing::error!(
                    idle_secs = idle,
                    "the minute schedule has stalled; running the job directly"
                );
                if tick(&store, &pool, false).await {
                    last_minute_run.store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                }
            }
        }
        let mut sched = sched;
        let _ = sched.shutdown().await;
        lock.release().await;
    }
    tracing::info!("snapshotter stopped");
    Ok(())
}
