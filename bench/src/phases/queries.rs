//! The query figures (`query_p50`, `query_p99`, `query_p999`, `query_rps`, `query_p99_vs_sql`) per window
//! and k, beside the per-query ZUNIONSTORE and SQL baselines; the cost of one refresh of the API's cached list
//! per window (`refresh_p50`, `refresh_redis_cpu`); and the prefill of the windows they read.

use super::{progress, redis_quiet};
use crate::config::BenchConfig;
use crate::figures::{figure, quantile, Better, Figure};
use crate::stack::Services;
use sqlx::PgPool;
use std::time::Instant;
use topk_core::domain::{TopK, Window, MAX_K};
use topk_core::redis::RedisStore;
use topk_core::slices::{self, MINUTE_MS};

/// Fills every window of every partition with `videos` distinct videos (counts falling like a Zipf curve).
pub async fn prefill_windows(store: &RedisStore, videos: u64) -> anyhow::Result<()> {
    let bar = progress(&format!(
        "filling the four windows with {videos} videos each"
    ));
    let keys = store.keys();
    let mut per_partition: Vec<Vec<(String, u64)>> =
        vec![Vec::new(); usize::from(keys.partitions())];
    for i in 0..videos {
        let id = format!("q{i}");
        let p = keys.partition_of(&topk_core::domain::VideoId::parse(&id)?);
        per_partition[usize::from(p)].push((id, videos / (i + 1) + 1));
    }
    for w in Window::ALL {
        for (p, members) in per_partition.iter().enumerate() {
            store
                .recovery()
                .seed_window(p as u16, w, members.iter().map(|(v, n)| (v.as_str(), *n)))
                .await?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// The query figures for each window and k, beside the per-query ZUNIONSTORE and SQL baselines.
pub async fn queries(
    cfg: &BenchConfig,
    services: &Services,
    store: &RedisStore,
    pool: &PgPool,
) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    let n = cfg.videos;
    let baseline_reps = if cfg.quick { 1 } else { 2 };
    for w in Window::ALL {
        let slices_in_window = slices::spec(w).map_or(1, |s| s.slices);
        // The card's layout: one sorted set per slice, every video in one of them.
        let union_keys: Vec<String> = (0..slices_in_window)
            .map(|s| store.keys().baseline(&format!("union:{w}:{s}")))
            .collect();
        if w != Window::All {
            let bar = progress(&format!(
                "building the {w} window's {slices_in_window} slice sets for the union baseline"
            ));
            let mut sets: Vec<Vec<(String, u64)>> = vec![Vec::new(); union_keys.len()];
            for i in 0..n {
                sets[(i % slices_in_window as u64) as usize]
                    .push((format!("q{i}"), n / (i + 1) + 1));
            }
            for (key, members) in union_keys.iter().zip(&sets) {
                store
                    .recovery()
                    .zadd_chunks(key.clone(), members.iter().map(|(v, c)| (v.as_str(), *c)))
                    .await?;
            }
            bar.finish_and_clear();
        }
        // The SQL's rows are per minute, so every video goes into one of the window's minutes: all of them
        // into the one bucket of the minute window (its 12 slices are 5-second ones, finer than the table).
        let minutes_in_window =
            slices::spec(w).map_or(1, |s| (s.slices * s.slice_ms / MINUTE_MS).max(1));
        let table = crate::sql::fill(pool, w, n, minutes_in_window).await?;
        let in_window = crate::sql::rows_in_window(pool, &table, w).await?;
        anyhow::ensure!(
            in_window == n,
            "the SQL baseline's {w} window holds {in_window} rows, not {n}"
        );
        for k in [10usize, 100, 1000] {
            // Before every k: the baselines of the k before wrote a million-member union and read the table.
            settle(store, pool).await?;
            let bar = progress(&format!("queries: {w} window, k={k}"));
            let url = format!("{}/v1/topk?window={w}&k={k}", services.api_url);
            // Warm-up: connections opened and the API's cached ranking read before the clock starts.
            timed_requests(&http, &url, 200, 4).await?;
            let (mut p50, mut p99, mut p999, mut rps) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..cfg.repeats {
                let (lat, per_sec) = timed_requests(&http, &url, cfg.query_requests, 4).await?;
                p50.push(quantile(&lat, 0.5));
                p99.push(quantile(&lat, 0.99));
                p999.push(quantile(&lat, 0.999));
                rps.push(per_sec);
            }
            let mut union = Vec::new();
            if w != Window::All {
                for _ in 0..baseline_reps {
                    let t = Instant::now();
                    let top = store
                        .measures()
                        .union_top(
                            store.keys().baseline("union:scratch"),
                            &union_keys,
                            Some(TopK::new(k)?),
                        )
                        .await?;
                    union.push(t.elapsed().as_secs_f64() * 1000.0);
                    anyhow::ensure!(
                        top.len() == k,
                        "the union baseline answered {} videos, not {k}",
                        top.len()
                    );
                }
            }
            let mut sql = Vec::new();
            for _ in 0..baseline_reps {
                let t = Instant::now();
                let top = crate::sql::top(pool, &table, w, k).await?;
                sql.push(t.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(
                    top.len() == k,
                    "the SQL baseline answered {} videos, not {k}",
                    top.len()
                );
            }
            let union = (!union.is_empty()).then_some(union.as_slice());
            out.push(figure(
                format!("query_p50.{w}.k{k}"),
                "ms",
                Better::Lower,
                &p50,
                union,
            ));
            out.push(figure(
                format!("query_p99.{w}.k{k}"),
                "ms",
                Better::Lower,
                &p99,
                union,
            ));
            out.push(figure(
                format!("query_p999.{w}.k{k}"),
                "ms",
                Better::Lower,
                &p999,
                union,
            ));
            out.push(figure(
                format!("query_p99_vs_sql.{w}.k{k}"),
                "ms",
                Better::Lower,
                &p99,
                Some(&sql),
            ));
            out.push(figure(
                format!("query_rps.{w}.k{k}"),
                "requests/s",
                Better::Higher,
                &rps,
                None,
            ));
            bar.finish_and_clear();
        }
        out.extend(refreshes(cfg, store, w).await?);
    }
    Ok(out)
}

/// `refresh_p50.<window>` and `refresh_redis_cpu.<window>`: what one refresh of the API's cached list costs,
/// the read every API process makes per window and cache period whatever its request rate, and which grows with
/// the partition count (a prefix of every partition's leaders, then the whole top K of the few that could hide
/// more). The store's own ranking read at k = 1000, one at a time from here while the API is idle (it reads Redis
/// only when asked), so Redis's CPU time is the reads' alone.
async fn refreshes(
    cfg: &BenchConfig,
    store: &RedisStore,
    w: Window,
) -> anyhow::Result<Vec<Figure>> {
    let bar = progress(&format!("ranking refreshes: {w} window"));
    let k = TopK::new(MAX_K)?;
    let reads = if cfg.quick { 20 } else { 200 };
    let (mut p50, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..cfg.repeats {
        let cpu_before = store.measures().server_cpu_seconds().await?;
        let mut lat = Vec::with_capacity(reads);
        for _ in 0..reads {
            let t = Instant::now();
            let top = store.rankings().top(w, k).await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(
                top.len() as u64 == cfg.videos.min(MAX_K as u64),
                "a refresh of the {w} window read {} videos",
                top.len()
            );
        }
        cpu.push((store.measures().server_cpu_seconds().await? - cpu_before) * 1e6 / reads as f64);
        p50.push(quantile(&lat, 0.5));
    }
    bar.finish_and_clear();
    Ok(vec![
        figure(format!("refresh_p50.{w}"), "ms", Better::Lower, &p50, None),
        figure(
            format!("refresh_redis_cpu.{w}"),
            "us/refresh",
            Better::Lower,
            &cpu,
            None,
        ),
    ])
}

/// Waits until the work the baselines' set-up left behind is done, so it does not land in topk's latencies:
/// Redis's forked child (the million-member union sets set off a snapshot or an append-only-file rewrite,
/// which takes a core for seconds) and Postgres's dirty pages from the SQL table (a forced checkpoint).
async fn settle(store: &RedisStore, pool: &PgPool) -> anyhow::Result<()> {
    let bar = progress("waiting for Redis's background save and Postgres's checkpoint");
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        // CHECKPOINT needs a privileged role; without it the run goes on, only less quiet.
        tracing::warn!(error = %e, "could not force a Postgres checkpoint");
    }
    redis_quiet(store).await?;
    bar.finish_and_clear();
    Ok(())
}

/// Latencies in ms of `count` GETs from `concurrency` clients, and the requests per second achieved.
async fn timed_requests(
    http: &reqwest::Client,
    url: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (http, url) = (http.clone(), url.to_owned());
        let mine = count / concurrency + usize::from(c < count % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(mine);
            for _ in 0..mine {
                let t = Instant::now();
                let r = http.get(&url).send().await?;
                anyhow::ensure!(r.status().is_success(), "{url} answered {}", r.status());
                r.bytes().await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(count);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, count as f64 / started.elapsed().as_secs_f64()))
}
