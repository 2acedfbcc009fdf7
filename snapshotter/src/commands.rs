//! The subcommands' bodies and what they print: [`run`] dispatches, one function per subcommand.
//!
//! `verify` prints its report on stdout (one line per problem) so it can be piped; `rebuild-redis` reports
//! its rate on stderr, beside its progress bar.

use crate::cli::{Cli, Command, MigrateArgs, RebuildArgs, RunArgs, SnapshotArgs, StoreArgs};
use crate::schedule::run_scheduled;
use crate::{jobs, lag, leader, rebuild, verify};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::http::{OnFailure, Readiness};
use topk_core::metrics::Part;
use topk_core::redis::RedisStore;
use topk_core::supervise::{Liveness, Supervisor};

/// A worker seen on the log this recently is taken as running: workers poll the log every few hundred ms.
const ACTIVE_WITHIN: Duration = Duration::from_secs(30);

/// Runs one subcommand to completion.
pub async fn run(cli: Cli, stop: CancellationToken) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(args) => migrate(&args).await,
        Command::Run(args) => run_service(&args, stop).await,
        Command::Snapshot(args) => snapshot(&args, &stop).await,
        Command::Verify(args) => verify_report(&args).await,
        Command::RebuildRedis(args) => rebuild_redis(&args, &stop).await,
    }
}

/// `run`: the jobs on their schedules (or standing by), the snapshot lag watch, and with `TOPK_ADMIN_ADDR`
/// health, readiness (Redis, Postgres migrated) and metrics, all supervised: one that dies stops the process.
async fn run_service(args: &RunArgs, stop: CancellationToken) -> anyhow::Result<()> {
    topk_core::metrics::install(&[Part::Snapshotter]);
    let admin = match args.admin.admin_addr {
        Some(addr) => Some(topk_core::serve::bind("TOPK_ADMIN_ADDR", addr).await?),
        None => None,
    };
    let (store, pool) = connect(&args.store).await?;
    let liveness = Liveness::default();
    let mut tasks = Supervisor::new(stop.clone(), liveness.clone());
    if let Some(listener) = admin {
        let readiness = Readiness::new(liveness)
            .with_redis(store.clone())
            .with_postgres(pool.clone(), OnFailure::NotReady);
        topk_core::http::admin::spawn(&mut tasks, listener, readiness, &stop);
    }
    tasks.spawn("snapshot lag watch", lag::watch(pool.clone(), stop.clone()));
    let (schedules, stopping) = (args.store.clone(), stop.clone());
    tasks.spawn("scheduler", async move {
        run_scheduled(store, pool, &schedules, stopping).await
    });
    tasks.wait().await
}

/// `migrate`: applies the migrations.
async fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    let pool = topk_core::db::pool(&args.database)?;
    topk_core::db::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// `snapshot`: both jobs once, at Redis's time, holding the lock so that a one-off run never writes beside the
/// scheduled writer: it waits `--lock-wait-secs` for a running snapshotter's lock, then fails naming it.
async fn snapshot(args: &SnapshotArgs, stop: &CancellationToken) -> anyhow::Result<()> {
    let (store, pool) = connect(&args.store).await?;
    let lock =
        leader::acquire_within(&pool, Duration::from_secs(args.lock_wait_secs), stop).await?;
    let now = store.now_ms().await?;
    let minutes = jobs::snapshot_minutes(&store, &pool, now).await?;
    let rankings = jobs::snapshot_rankings(&store, &pool, now).await?;
    tracing::info!(
        minutes = minutes.minutes,
        rows = minutes.rows,
        ranking_rows = rankings,
        "snapshot done"
    );
    lock.release().await;
    Ok(())
}

/// `verify`: prints every difference, leader-set problem and period-total problem, or "no differences"; any finding is an error, so
/// the exit code is non-zero.
async fn verify_report(args: &StoreArgs) -> anyhow::Result<()> {
    let (store, pool) = connect(args).await?;
    let now = store.now_ms().await?;
    let diffs = verify::verify(&store, &pool, now).await?;
    for d in &diffs {
        println!("{d}");
    }
    let leaders = verify::leader_problems(&store).await?;
    for problem in &leaders {
        println!("{problem}");
    }
    let periods = verify::period_problems(&pool).await?;
    for problem in &periods {
        println!("{problem}");
    }
    if diffs.is_empty() && leaders.is_empty() && periods.is_empty() {
        println!("no differences");
        Ok(())
    } else {
        anyhow::bail!(
            "{} differences: {:?}; {} leader-set problems; {} period-total problems",
            diffs.len(),
            verify::summary(&diffs),
            leaders.len(),
            periods.len()
        )
    }
}

/// `rebuild-redis`: restores Redis from Postgres at Redis's time, with a progress bar and the rate achieved.
/// It holds the snapshotter lock throughout, so no minute job writes (or moves a checkpoint) meanwhile, and
/// refuses to run while ingest workers consume the log, unless `--force`.
async fn rebuild_redis(args: &RebuildArgs, stop: &CancellationToken) -> anyhow::Result<()> {
    let (store, pool) = connect(&args.store).await?;
    let active = store.log_state().active_consumers(ACTIVE_WITHIN).await?;
    if !active.is_empty() && !args.force {
        let names: Vec<String> = active
            .iter()
            .map(|(p, name, ms)| format!("{name} on partition {p} ({ms} ms ago)"))
            .collect();
        anyhow::bail!(
            "ingest workers read the log within the last {} s: {}; stop them first (they would count the \
             replayed entries twice), or pass --force",
            ACTIVE_WITHIN.as_secs(),
            names.join(", ")
        );
    }
    let lock =
        leader::acquire_within(&pool, Duration::from_secs(args.lock_wait_secs), stop).await?;
    let now = store.now_ms().await?;
    let started = std::time::Instant::now();
    let report = rebuild::rebuild(&store, &pool, now, true).await;
    lock.release().await;
    let report = report?;
    let secs = started.elapsed().as_secs_f64();
    let rows = report.minute_rows + report.total_rows;
    eprintln!(
        "restored {rows} rows in {secs:.2} s ({:.0} rows/s)",
        rows as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Redis and Postgres from the common settings; the pool connects lazily, on first use. A partition count
/// other than the deployment's is refused here, before anything is read or written.
async fn connect(args: &StoreArgs) -> anyhow::Result<(RedisStore, PgPool)> {
    let store = RedisStore::connect(&args.redis).await?;
    // Redis may come later (`run` waits for it, one-off commands fail on their first read); another layout
    // may not.
    store.check_layout_at_start().await?;
    let pool = topk_core::db::pool(&args.database)?;
    Ok((store, pool))
}
