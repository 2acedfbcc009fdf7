//! topk-bench: drives the real services, Redis and Postgres, and measures topk beside its baselines in one run.
//!
//! # Layout
//! - [`config`]: sizes and durations (`--quick` for a smoke run).
//! - [`workload`]: Zipf(s) video ids as POST bodies; [`load`]: concurrent HTTP clients, flat out or paced.
//! - [`stack`]: `topk-ingest` and `topk-api` as child processes on a private key prefix.
//! - [`phases`]: one file per group of figures (retirement, ingest, freshness, queries, memory, snapshot and
//!   rebuild, range), each with its baseline; [`sql`]: the seed's SQL baseline; [`range_seed`]: the history the
//!   range figures read.
//! - [`figures`]: median/min/max, ratios, the table and `--json`.

pub mod config;
pub mod figures;
pub mod load;
pub mod phases;
pub mod range_seed;
pub mod sql;
pub mod stack;
pub mod workload;

use anyhow::Context;
use config::{BenchConfig, Phase};
use sqlx::postgres::PgPoolOptions;
use topk_core::config::{DatabaseConfig, RedisConfig};
use topk_core::redis::RedisStore;

/// The benchmark's own Redis connections: a private prefix, and a timeout long enough for the baselines (a
/// union over a window's slices blocks Redis for seconds).
fn with_prefix(redis: &RedisConfig, prefix: &str) -> RedisConfig {
    RedisConfig {
        key_prefix: prefix.to_owned(),
        redis_timeout_ms: redis.redis_timeout_ms.max(300_000),
        ..redis.clone()
    }
}

/// Runs every measurement and prints the figures.
pub async fn run(cfg: BenchConfig) -> anyhow::Result<()> {
    let cfg = cfg.effective();
    let run_id = format!("bench{}", std::process::id());
    // A scratch database on the configured server, dropped at the end.
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&cfg.database.database_url)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {run_id}"))
        .execute(&admin)
        .await?;
    let base = cfg
        .database
        .database_url
        .rsplit_once('/')
        .map_or(cfg.database.database_url.as_str(), |(b, _)| b);
    let database = DatabaseConfig {
        database_url: format!("{base}/{run_id}"),
    };
    let result = measure(&cfg, &run_id, &database).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {run_id} WITH (FORCE)"))
        .execute(&admin)
        .await?;
    let figures = result?;
    if let Some(path) = &cfg.json_file {
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)
            .with_context(|| format!("writing the figures to {}", path.display()))?;
    }
    if cfg.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!("{}", figures::table(&figures));
    }
    Ok(())
}

async fn measure(
    cfg: &BenchConfig,
    run_id: &str,
    database: &DatabaseConfig,
) -> anyhow::Result<Vec<figures::Figure>> {
    let pool = topk_core::db::pool(database)?;
    topk_core::db::migrate(&pool).await?;
    let ingest_redis = with_prefix(&cfg.redis, &format!("{run_id}i"));
    let query_redis = with_prefix(&cfg.redis, &format!("{run_id}q"));
    let stores = [
        RedisStore::connect(&ingest_redis).await?,
        RedisStore::connect(&with_prefix(&cfg.redis, &format!("{run_id}n"))).await?,
        RedisStore::connect(&query_redis).await?,
        RedisStore::connect(&with_prefix(&cfg.redis, &format!("{run_id}s"))).await?,
        RedisStore::connect(&with_prefix(&cfg.redis, &format!("{run_id}r"))).await?,
        RedisStore::connect(&RedisConfig {
            partitions: 1,
            ..with_prefix(&cfg.redis, &format!("{run_id}f"))
        })
        .await?,
        RedisStore::connect(&with_prefix(&cfg.redis, &format!("{run_id}p"))).await?,
    ];
    let [ingest_store, naive_store, query_store, seed_store, retire_store, refill_store, profile_store] =
        &stores;
    let outcome = async {
        let mut out = phases::layout(ingest_store).await?;
        if cfg.runs(Phase::Profile) {
            out.extend(phases::profile(cfg, profile_store).await?);
        }
        if cfg.runs(Phase::Kafka) {
            let (bodies, _) = phases::workload(cfg)?;
            let services = stack::Services::start(&ingest_redis, database, true).await?;
            out.extend(phases::kafka(cfg, &services, ingest_store, &ingest_redis, bodies).await?);
        }
        if cfg.runs(Phase::Ingest) || cfg.runs(Phase::Freshness) {
            let (bodies, videos) = phases::workload(cfg)?;
            if cfg.runs(Phase::Ingest) {
                // Before any service runs: Redis's CPU time is the whole server's, and a running retirer
                // would be retiring the ingest load's slices meanwhile.
                out.extend(phases::retirement(cfg, retire_store).await?);
            }
            let services = stack::Services::start(&ingest_redis, database, true).await?;
            if cfg.runs(Phase::Ingest) {
                out.extend(
                    phases::ingest(
                        cfg,
                        &services,
                        ingest_store,
                        naive_store,
                        bodies.clone(),
                        videos,
                    )
                    .await?,
                );
            }
            if cfg.runs(Phase::Freshness) {
                out.extend(phases::freshness(cfg, &services, bodies).await?);
            }
        }
        if cfg.runs(Phase::Queries) || cfg.runs(Phase::Memory) {
            phases::prefill_windows(query_store, cfg.videos).await?;
        }
        if cfg.runs(Phase::Queries) {
            let services = stack::Services::start(&query_redis, database, false).await?;
            out.extend(phases::queries(cfg, &services, query_store, &pool).await?);
        }
        if cfg.runs(Phase::Memory) {
            // The day tail is measured on the minutes the ingest load wrote.
            let loaded = cfg.runs(Phase::Ingest) || cfg.runs(Phase::Freshness);
            out.extend(phases::memory(query_store, loaded.then_some(ingest_store)).await?);
        }
        if cfg.runs(Phase::Postgres) {
            out.extend(phases::postgres(cfg, seed_store, &pool).await?);
        }
        if cfg.runs(Phase::Range) {
            let services = stack::Services::start(&query_redis, database, false).await?;
            out.extend(phases::range(cfg, &services, &pool).await?);
        }
        if cfg.runs(Phase::Refill) {
            out.extend(phases::refill(cfg, refill_store).await?);
        }
        anyhow::Ok(out)
    }
    .await;
    let bar = phases::progress("removing the benchmark's keys");
    for store in &stores {
        // Best effort: a failure here must not hide the measurement's own outcome.
        if let Err(e) = store.measures().delete_all_keys().await {
            tracing::warn!(error = %e, prefix = %store.keys().pattern("*"), "could not remove the benchmark's keys");
        }
    }
    bar.finish_and_clear();
    pool.close().await;
    outcome
}
