//! The `ingest` and `ingest_redis_cpu` figures: views/s through the real services and Redis CPU per view,
//! beside the naive baseline (one pipelined ZINCRBY per view and window); on Redis Cluster also each primary's
//! Redis CPU per view (`ingest_redis_cpu.node.<host:port>`, over all the views: they sum to the total); and
//! `ranking_scans`, how often a read of the top 1000 over the windows the load built had to read a hash.

use super::{progress_of_run, redis_quiet, Bodies};
use crate::config::BenchConfig;
use crate::figures::{figure, Better, Figure};
use crate::load::{send, stop_after};
use crate::stack::{Services, TOKEN};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use topk_core::domain::{TopK, Window, MAX_K};
use topk_core::redis::RedisStore;

/// Waits (at most 5 minutes) until the workers have applied everything in the log, so a rate counts applied
/// views, not only accepted ones.
pub(super) async fn wait_drained(store: &RedisStore) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut backlog = 0;
        for p in store.keys().all_partitions() {
            backlog += store.log_state().log_backlog(p).await?;
        }
        if backlog == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the workers did not drain the log in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `bodies` over HTTP to ingest for the configured duration and waits until the workers have applied
/// them: the views accepted, and the time from the first request to the last view applied.
pub(super) async fn over_http(
    cfg: &BenchConfig,
    services: &Services,
    store: &RedisStore,
    http: &reqwest::Client,
    bodies: Bodies,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let accepted = send(
        http,
        &services.ingest_url,
        TOKEN,
        bodies,
        cfg.clients,
        None,
        stop_after(cfg.duration()),
    )
    .await;
    wait_drained(store).await?;
    Ok((accepted, started.elapsed()))
}

/// `ingest`: views/s accepted over HTTP and applied, against one pipelined ZINCRBY per view and window.
pub async fn ingest(
    cfg: &BenchConfig,
    services: &Services,
    store: &RedisStore,
    naive: &RedisStore,
    bodies: Bodies,
    videos: Arc<Vec<String>>,
) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    let (mut ours, mut base, mut ours_cpu, mut base_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The naive baseline first, while the ingest prefix is empty: Redis's CPU time is the whole server's, and
    // from the first load on, ingest's retirer keeps subtracting that load's slices for a minute and more (that
    // work then lands in our later repeats instead, which only makes our figure worse).
    for r in 0..cfg.repeats {
        let bar = progress_of_run("naive baseline (ZINCRBY per view and window)", r, cfg);
        let keys: Vec<String> = Window::ALL
            .iter()
            .map(|w| naive.keys().baseline(&format!("naive:{w}")))
            .collect();
        let keys = Arc::new(keys);
        redis_quiet(naive).await?;
        let cpu_before = naive.measures().server_cpu_seconds().await?;
        let stop = stop_after(cfg.duration());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..cfg.clients {
            let (naive, keys, videos, stop) =
                (naive.clone(), keys.clone(), videos.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut sent = 0u64;
                let mut at = c * 1000;
                while !stop.load(Ordering::Relaxed) {
                    let from = at % videos.len().saturating_sub(1000).max(1);
                    let chunk: Vec<&str> = videos[from..(from + 1000).min(videos.len())]
                        .iter()
                        .map(String::as_str)
                        .collect();
                    naive.measures().naive_increment(&keys, &chunk).await?;
                    sent += chunk.len() as u64;
                    at += 7919 * (c + 1);
                }
                anyhow::Ok(sent)
            }));
        }
        let mut sent = 0;
        for t in tasks {
            sent += t.await??;
        }
        base_cpu.push(
            (naive.measures().server_cpu_seconds().await? - cpu_before) * 1e6 / sent.max(1) as f64,
        );
        base.push(sent as f64 / started.elapsed().as_secs_f64());
        bar.finish_and_clear();
    }
    // On a cluster, each primary's share too (its CPU time over every view accepted), by node.
    let mut per_node: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut scans = Vec::new();
    for r in 0..cfg.repeats {
        let bar = progress_of_run("ingest over HTTP", r, cfg);
        redis_quiet(store).await?;
        let nodes_before = store.measures().server_cpu_seconds_per_node().await?;
        let cpu_before = store.measures().server_cpu_seconds().await?;
        let (accepted, took) = over_http(cfg, services, store, &http, bodies.clone()).await?;
        ours.push(accepted as f64 / took.as_secs_f64());
        ours_cpu.push(
            (store.measures().server_cpu_seconds().await? - cpu_before) * 1e6
                / accepted.max(1) as f64,
        );
        if store.is_cluster() {
            let before: BTreeMap<String, f64> = nodes_before.into_iter().collect();
            for (node, after) in store.measures().server_cpu_seconds_per_node().await? {
                // A node missing from the first reading (a failover meanwhile) has no share to report.
                if let Some(b) = before.get(&node) {
                    per_node
                        .entry(node)
                        .or_default()
                        .push((after - b) * 1e6 / accepted.max(1) as f64);
                }
            }
        }
        scans.push(ranking_scans(store).await?);
        bar.finish_and_clear();
    }
    let mut out = vec![
        figure("ingest", "views/s", Better::Higher, &ours, Some(&base)),
        figure(
            "ingest_redis_cpu",
            "us/view",
            Better::Lower,
            &ours_cpu,
            Some(&base_cpu),
        ),
    ];
    out.push(figure(
        "ranking_scans",
        "partitions/read",
        Better::Lower,
        &scans,
        None,
    ));
    for (node, cpu) in per_node {
        out.push(figure(
            format!("ingest_redis_cpu.node.{node}"),
            "us/view",
            Better::Lower,
            &cpu,
            None,
        ));
    }
    Ok(out)
}

/// Partitions whose hash a read of the top 1000 had to scan, per read, over the windows the load just built
/// (leader sets hold each partition's share of the top K; a scan means one held less than the merge needed).
/// Read after the load's CPU time is taken, so it is not part of it.
async fn ranking_scans(store: &RedisStore) -> anyhow::Result<f64> {
    const READS: usize = 10;
    let k = TopK::new(MAX_K)?;
    let mut scanned = 0;
    for w in Window::ALL {
        for _ in 0..READS {
            scanned += store.rankings().top_read(w, k).await?.scanned;
        }
    }
    Ok(scanned as f64 / (READS * Window::ALL.len()) as f64)
}
