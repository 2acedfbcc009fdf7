//! One function per group of figures; each measures topk and, where the issue names one, its baseline on the
//! same data, `repeats` times.

use crate::config::BenchConfig;
use crate::figures::{figure, quantile, Better, Figure};
use crate::load::{send, stop_after};
use crate::stack::{Services, TOKEN};
use crate::workload::Workload;
use bytes::Bytes;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use topk_core::domain::{TopK, VideoId, Window};
use topk_core::redis::RedisStore;
use topk_core::slices::{self, MINUTE_MS};

/// Pre-built POST bodies with their number of views, shared by the clients.
pub type Bodies = Arc<Vec<(Bytes, u64)>>;

/// A spinner on stderr naming the step in progress.
pub fn progress(what: &str) -> ProgressBar {
    // Without a terminal the spinner does not draw: say each step on its own line instead.
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("topk-bench: {what}");
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("template"));
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

async fn wait_drained(store: &RedisStore) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut backlog = 0;
        for p in store.keys().all_partitions() {
            backlog += store.log_backlog(p).await?;
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
        let bar = progress(&format!(
            "naive baseline (ZINCRBY per view and window), run {}/{}",
            r + 1,
            cfg.repeats
        ));
        let keys: Vec<String> = Window::ALL
            .iter()
            .map(|w| naive.keys().baseline(&format!("naive:{w}")))
            .collect();
        let keys = Arc::new(keys);
        redis_quiet(naive).await?;
        let cpu_before = naive.server_cpu_seconds().await?;
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
                    naive.naive_increment(&keys, &chunk).await?;
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
        base_cpu.push((naive.server_cpu_seconds().await? - cpu_before) * 1e6 / sent.max(1) as f64);
        base.push(sent as f64 / started.elapsed().as_secs_f64());
        bar.finish_and_clear();
    }
    for r in 0..cfg.repeats {
        let bar = progress(&format!("ingest over HTTP, run {}/{}", r + 1, cfg.repeats));
        redis_quiet(store).await?;
        let cpu_before = store.server_cpu_seconds().await?;
        let started = Instant::now();
        let accepted = send(
            &http,
            &services.ingest_url,
            TOKEN,
            bodies.clone(),
            cfg.clients,
            None,
            stop_after(cfg.duration()),
        )
        .await;
        wait_drained(store).await?;
        ours.push(accepted as f64 / started.elapsed().as_secs_f64());
        ours_cpu
            .push((store.server_cpu_seconds().await? - cpu_before) * 1e6 / accepted.max(1) as f64);
        bar.finish_and_clear();
    }
    Ok(vec![
        figure("ingest", "views/s", Better::Higher, &ours, Some(&base)),
        figure(
            "ingest_redis_cpu",
            "us/view",
            Better::Lower,
            &ours_cpu,
            Some(&base_cpu),
        ),
    ])
}

/// `retire_redis_cpu`: Redis time per view spent after the views are counted, sealing their minute and
/// subtracting their slices from the minute, hour and day windows once they leave them (the ingest load is
/// too short for the hour and day windows to retire anything, and the naive baseline never subtracts).
/// Measured on a private key prefix with injected time: one minute of the workload's views is logged and
/// applied by the real worker step (every view, checked), then sealed and retired by the retirer's own steps at
/// a time past the day window, after which the sliding windows must be empty and the all-time one not.
pub async fn retirement(cfg: &BenchConfig, store: &RedisStore) -> anyhow::Result<Vec<Figure>> {
    const POST_VIEWS: usize = 1000;
    let posts = if cfg.quick { 100 } else { 2000 };
    let mut workload = Workload::new(cfg.videos, cfg.zipf_s, 7)?;
    store.ensure_log_groups().await?;
    let now = Utc::now().timestamp_millis();
    // Each repeat moves on by a day and an hour: starting five days ago keeps every repeat's event time in the
    // past (no running retirer has this prefix, whatever the time).
    let mut minute_start = now - now.rem_euclid(MINUTE_MS) - 5 * 86_400_000;
    let mut per_view = Vec::new();
    for r in 0..cfg.repeats {
        let bar = progress(&format!(
            "retirement: logging and applying {} views, run {}/{}",
            posts * POST_VIEWS,
            r + 1,
            cfg.repeats
        ));
        let mut views = 0u64;
        for i in 0..posts {
            let mut post: HashMap<String, u64> = HashMap::new();
            for _ in 0..POST_VIEWS {
                *post.entry(workload.video()).or_default() += 1;
            }
            let post: Vec<(VideoId, u64)> = post
                .into_iter()
                .map(|(v, n)| Ok((VideoId::parse(&v).map_err(anyhow::Error::msg)?, n)))
                .collect::<anyhow::Result<_>>()?;
            // Spread over the minute, as a minute of traffic is: every 5-second slice gets its share.
            let at = minute_start + (i as i64 * MINUTE_MS) / posts as i64;
            store.append_at(&post, at).await?;
            views += POST_VIEWS as u64;
        }
        let mut applied = 0;
        for p in store.keys().all_partitions() {
            loop {
                let step =
                    topk_ingest::worker::step(store, p, "bench", 256, Default::default()).await?;
                if step.entries == 0 {
                    break;
                }
                applied += step.views;
            }
        }
        anyhow::ensure!(
            applied == views,
            "the workers applied {applied} of the {views} views logged"
        );
        bar.set_message("sealing and retiring");
        // Past the day window (the hour a retired minute lingers is an EXPIRE on Redis's own clock).
        let after_everything = minute_start + 86_400_000 + 3_600_000 + 2 * MINUTE_MS;
        redis_quiet(store).await?;
        let cpu_before = store.server_cpu_seconds().await?;
        topk_ingest::retirer::seal_once(store, after_everything).await?;
        topk_ingest::retirer::retire_once(store, after_everything).await?;
        per_view.push((store.server_cpu_seconds().await? - cpu_before) * 1e6 / views as f64);
        // Every count left the sliding windows (their hashes, not just the leader sets), none left all-time.
        for w in Window::ALL {
            let mut left = 0;
            for p in store.keys().all_partitions() {
                left += store.window_counts(p, w).await?.len();
            }
            anyhow::ensure!(
                (left == 0) == (w != Window::All),
                "after retirement the {w} window holds {left} videos"
            );
        }
        minute_start = after_everything + MINUTE_MS;
        bar.finish_and_clear();
    }
    Ok(vec![figure(
        "retire_redis_cpu",
        "us/view",
        Better::Lower,
        &per_view,
        None,
    )])
}

/// `freshness_p50`, `freshness_p99`: from a POST's answer to the view being counted, under a steady load.
pub async fn freshness(
    cfg: &BenchConfig,
    services: &Services,
    bodies: Bodies,
) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for r in 0..cfg.repeats {
        let bar = progress(&format!(
            "freshness at {} views/s, run {}/{}",
            cfg.freshness_rate,
            r + 1,
            cfg.repeats
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let background = {
            let (http, url, bodies, stop, clients, rate) = (
                http.clone(),
                services.ingest_url.clone(),
                bodies.clone(),
                stop.clone(),
                cfg.clients,
                cfg.freshness_rate,
            );
            tokio::spawn(async move {
                send(&http, &url, TOKEN, bodies, clients, Some(rate), stop).await
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut samples = Vec::new();
        for i in 0..cfg.probes {
            let id = format!("probe-{}-{r}-{i}", std::process::id());
            let answer = http
                .post(format!("{}/v1/views", services.ingest_url))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!([{ "videoId": id }]))
                .send()
                .await?;
            anyhow::ensure!(
                answer.status().as_u16() == 202,
                "probe refused: {}",
                answer.status()
            );
            let answered = Instant::now();
            loop {
                let seen: serde_json::Value = http
                    .get(format!("{}/v1/videos/{id}", services.api_url))
                    .send()
                    .await?
                    .json()
                    .await?;
                if seen["all"].as_u64().unwrap_or(0) >= 1 {
                    break;
                }
                anyhow::ensure!(
                    answered.elapsed() < Duration::from_secs(60),
                    "probe {id} not visible after 60 s"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            samples.push(answered.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        background.await?;
        p50.push(quantile(&samples, 0.5));
        p99.push(quantile(&samples, 0.99));
        bar.finish_and_clear();
    }
    Ok(vec![
        figure("freshness_p50", "ms", Better::Lower, &p50, None),
        figure("freshness_p99", "ms", Better::Lower, &p99, None),
    ])
}

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
    }
    Ok(out)
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

/// Waits (at most 5 minutes) until Redis runs no background save or append-only-file rewrite: its fork's page
/// copying is counted in Redis's own CPU time and slows the next measurement, whichever load started it.
async fn redis_quiet(store: &RedisStore) -> anyhow::Result<()> {
    let started = Instant::now();
    while store.persistence_busy().await? {
        if started.elapsed() > Duration::from_secs(300) {
            tracing::warn!("Redis still saving after 5 minutes; measuring anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

/// `memory_window` and `memory_tail`: Redis bytes per (video, window) and per (video, minute) of the tail.
pub async fn memory(
    windows: &RedisStore,
    tail: Option<&RedisStore>,
) -> anyhow::Result<Vec<Figure>> {
    let (bytes, videos) = windows.window_memory().await?;
    let per_window = bytes as f64 / videos.max(1) as f64;
    let mut out = vec![figure(
        "memory_window",
        "bytes",
        Better::Lower,
        &[per_window],
        None,
    )];
    if let Some(tail) = tail {
        // The day tail is the sealed minutes: seal every minute the load wrote, as the retirer does once
        // they end.
        let now_ms = tail.now_ms().await?;
        for p in tail.keys().all_partitions() {
            tail.seal_minutes(p, slices::minute_of(now_ms) + 1).await?;
        }
        let (bytes, pairs) = tail.sealed_minute_memory().await?;
        let per_minute = bytes as f64 / pairs.max(1) as f64;
        out.push(figure(
            "memory_tail",
            "bytes",
            Better::Lower,
            &[per_minute],
            None,
        ));
    }
    Ok(out)
}

/// `snapshot` and `rebuild`: rows/s from Redis minute buckets into Postgres, and back.
pub async fn postgres(
    cfg: &BenchConfig,
    store: &RedisStore,
    pool: &PgPool,
) -> anyhow::Result<Vec<Figure>> {
    let bar = progress("seeding minute buckets for the snapshot");
    let keys = store.keys().clone();
    let now_ms = store.now_ms().await?;
    let newest = slices::minute_of(now_ms) - 2;
    for p in keys.all_partitions() {
        for m in 0..cfg.seed_minutes as i64 {
            let minute = newest - m;
            let members: Vec<(String, u64)> = (0..cfg.seed_videos)
                .map(|j| (format!("s{p}_{j}"), j % 97 + 1))
                .collect();
            store
                .seed_sealed_minute(p, minute, members.iter().map(|(v, n)| (v.as_str(), *n)))
                .await?;
        }
    }
    bar.finish_and_clear();
    let (mut snap, mut rebuild) = (Vec::new(), Vec::new());
    for r in 0..cfg.repeats {
        let bar = progress(&format!(
            "snapshot and rebuild-redis, run {}/{}",
            r + 1,
            cfg.repeats
        ));
        sqlx::query(
            "TRUNCATE video_stats, video_totals, ingest_checkpoints, global_topk_snapshots",
        )
        .execute(pool)
        .await?;
        let t = Instant::now();
        let report = topk_snapshotter::jobs::snapshot_minutes(store, pool, now_ms).await?;
        snap.push(report.rows as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let restored = topk_snapshotter::rebuild::rebuild(store, pool, now_ms, false).await?;
        rebuild
            .push((restored.minute_rows + restored.total_rows) as f64 / t.elapsed().as_secs_f64());
        bar.finish_and_clear();
    }
    tracing::debug!(at = %Utc::now(), "postgres figures done");
    Ok(vec![
        figure("snapshot", "rows/s", Better::Higher, &snap, None),
        figure("rebuild", "rows/s", Better::Higher, &rebuild, None),
    ])
}

/// The workload's pre-built request bodies and a pool of ids for the naive baseline.
pub fn workload(cfg: &BenchConfig) -> anyhow::Result<(Bodies, Arc<Vec<String>>)> {
    let mut w = Workload::new(cfg.videos, cfg.zipf_s, 42)?;
    let bodies = w.batches(256, cfg.batch);
    let videos = (0..200_000).map(|_| w.video()).collect();
    Ok((Arc::new(bodies), Arc::new(videos)))
}
