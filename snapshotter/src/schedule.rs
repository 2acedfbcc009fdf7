//! The `run` subcommand: the jobs on tokio-cron-scheduler while this process holds the lock, and a watchdog.
//!
//! [`run_scheduled`] takes the lock, schedules the three jobs ([`scheduler`]), runs [`tick`] once at start, then
//! leaves the watchdog in charge until `stop` or a lost lock. Missed ticks are dropped by the scheduler; each
//! run catches up from the checkpoints, which makes that harmless.

use crate::cli::StoreArgs;
use crate::{jobs, leader};
use sqlx::PgPool;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use topk_core::redis::RedisStore;

/// One run of both jobs at Redis's time; errors are logged (the next run catches up).
async fn tick(store: &RedisStore, pool: &PgPool, rankings: bool) -> bool {
    let now = match store.now_ms().await {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(error = %e, "snapshot skipped: Redis unreachable");
            record_run("minutes", Instant::now(), false);
            return false;
        }
    };
    let started = Instant::now();
    let mut ok = match jobs::snapshot_minutes(store, pool, now).await {
        Ok(r) => {
            tracing::info!(
                minutes = r.minutes,
                rows = r.rows,
                late_views = r.late_views,
                hours_closed = r.periods.hours,
                days_closed = r.periods.days,
                "minutes written"
            );
            true
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "minute snapshot failed; the next run catches up"
            );
            false
        }
    };
    record_run("minutes", started, ok);
    if rankings {
        ok &= rankings_job(store, pool, now).await;
    }
    ok
}

/// The ranking snapshot at `now`, logged and counted.
async fn rankings_job(store: &RedisStore, pool: &PgPool, now: i64) -> bool {
    let started = Instant::now();
    let ok = match jobs::snapshot_rankings(store, pool, now).await {
        Ok(rows) => {
            tracing::info!(rows, "rankings written");
            true
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "ranking snapshot failed");
            false
        }
    };
    record_run("rankings", started, ok);
    ok
}

/// Counts one run of `job` and its time (`topk_snapshot_runs_total`, `topk_snapshot_duration_seconds`).
fn record_run(job: &'static str, started: Instant, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("topk_snapshot_runs_total", "job" => job, "outcome" => outcome).increment(1);
    metrics::histogram!("topk_snapshot_duration_seconds", "job" => job)
        .record(started.elapsed().as_secs_f64());
}

/// How often the watchdog looks at the minute job and at the lock.
const WATCHDOG_PERIOD: Duration = Duration::from_secs(30);

/// The watchdog runs the minute job itself once no run has succeeded for this long (three minute-ticks).
const STALLED_AFTER_SECS: i64 = 180;

/// Runs the jobs on their cron schedules while this process holds the lock; stands by otherwise.
pub async fn run_scheduled(
    store: RedisStore,
    pool: PgPool,
    args: &StoreArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    while !stop.is_cancelled() {
        let Some(mut lock) = leader::acquire(&pool, &stop).await else {
            break;
        };
        let leading = metrics::gauge!("topk_snapshot_leader");
        leading.set(1.0);
        let last_minute_run = Arc::new(AtomicI64::new(chrono::Utc::now().timestamp()));
        let mut sched = scheduler(&store, &pool, args, &last_minute_run).await?;
        sched.start().await?;
        tick(&store, &pool, true).await;
        watchdog(&store, &pool, &mut lock, &last_minute_run, &stop).await;
        let _ = sched.shutdown().await;
        lock.release().await;
        leading.set(0.0);
    }
    tracing::info!("snapshotter stopped");
    Ok(())
}

/// The three jobs on their schedules, not started. The minute job records when it last succeeded in
/// `last_minute_run` (Unix seconds), for the watchdog.
async fn scheduler(
    store: &RedisStore,
    pool: &PgPool,
    args: &StoreArgs,
    last_minute_run: &Arc<AtomicI64>,
) -> anyhow::Result<JobScheduler> {
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
                match s.now_ms().await {
                    Ok(now) => {
                        rankings_job(&s, &p, now).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ranking snapshot skipped: Redis unreachable");
                        record_run("rankings", Instant::now(), false);
                    }
                }
            })
        })?)
        .await?;
    let (s, p, policy) = (store.clone(), pool.clone(), args.retention());
    sched
        .add(Job::new_async(
            args.maintenance_schedule.as_str(),
            move |_, _| {
                let (s, p) = (s.clone(), p.clone());
                Box::pin(async move {
                    let started = Instant::now();
                    let ok = match s.now_ms().await {
                        Ok(now) => match jobs::maintain_history(&p, now, policy).await {
                            Ok(r) => {
                                tracing::info!(
                                    rolled_up = r.rows_rolled_up,
                                    partitions_dropped = r.partitions_dropped,
                                    "history upkeep done"
                                );
                                true
                            }
                            Err(e) => {
                                tracing::warn!(
                                    error = format!("{e:#}"),
                                    "history upkeep failed; the next run resumes"
                                );
                                false
                            }
                        },
                        Err(e) => {
                            tracing::warn!(error = %e, "history upkeep skipped: Redis unreachable");
                            false
                        }
                    };
                    record_run("upkeep", started, ok);
                })
            },
        )?)
        .await?;
    Ok(sched)
}

/// Watches until `stop` or the lock is lost.
///
/// The scheduler drops missed ticks and has been seen to stop firing repeated jobs under load: when no minute
/// run succeeded for [`STALLED_AFTER_SECS`], the watchdog runs it here and says so.
async fn watchdog(
    store: &RedisStore,
    pool: &PgPool,
    lock: &mut leader::Leadership,
    last_minute_run: &AtomicI64,
    stop: &CancellationToken,
) {
    let mut every = tokio::time::interval(WATCHDOG_PERIOD);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => break,
        }
        if !lock.still_held().await {
            tracing::warn!("lost the snapshotter lock (Postgres connection closed); standing by");
            break;
        }
        let idle = chrono::Utc::now().timestamp() - last_minute_run.load(Ordering::Relaxed);
        if idle > STALLED_AFTER_SECS {
            tracing::error!(
                idle_secs = idle,
                "the minute schedule has stalled; running the job directly"
            );
            if tick(store, pool, false).await {
                last_minute_run.store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
            }
        }
    }
}
