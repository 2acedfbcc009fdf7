//! Mixed ingest and queries for a bounded time (`TOPK_LOAD_SECS`, default 20; `TOPK_SOAK_SECS` for a longer
//! soak), on a Redis of its own: Redis's memory, key count and log length are sampled every second and must
//! stay within what the retention allows; query latency is printed, never asserted (the machine is shared).

use super::*;

const PARTITIONS: u16 = 4;
const LOG_RETENTION_SECS: i64 = 5;

/// One sample of the server's state.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ms: i64,
    elapsed_s: f64,
    used_memory: u64,
    keys: u64,
    log_entries: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_keeps_memory_keys_and_log_bounded() {
    let secs: u64 = ["TOPK_SOAK_SECS", "TOPK_LOAD_SECS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(20);
    let redis = topk_testkit::RedisServer::start();
    let env = Env::new(&redis.url(), "load", PARTITIONS);
    let store = env.store().await;
    let retention = LOG_RETENTION_SECS.to_string();
    let iport = topk_testkit::free_port();
    let _ingest = env.ingest(
        "all",
        iport,
        &[("TOPK_LOG_RETENTION_SECS", retention.as_str())],
    );
    let aport = topk_testkit::free_port();
    let _api = env.api(aport, &[]);
    let started = Instant::now();
    let sender = Sender::start(iport, 2, 2_000, 50, "l");
    let queriers = [
        Querier::start(aport, "l", 2_000),
        Querier::start(aport, "l", 2_000),
    ];

    let mut samples: Vec<Sample> = Vec::new();
    let mut backlog_max = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let prefix = env.prefix.clone();
        let mut conn = redis.conn();
        let sample = tokio::task::spawn_blocking(move || Sample {
            at_ms: wall_ms(),
            elapsed_s: 0.0,
            used_memory: conn.used_memory(),
            keys: conn.keys_with_prefix(&prefix, None).len() as u64,
            log_entries: conn.stream_entries(&prefix),
        })
        .await
        .unwrap();
        samples.push(Sample {
            elapsed_s: started.elapsed().as_secs_f64(),
            ..sample
        });
        let mut backlog = 0;
        for p in store.keys().all_partitions() {
            backlog += store.log_state().log_backlog(p).await.unwrap();
        }
        backlog_max = backlog_max.max(backlog);
    }
    let tally = sender.finish().await;
    let mut queries = Vec::new();
    for q in queriers {
        queries.extend(q.finish().await);
    }
    let run = started.elapsed();
    drain(&store, Duration::from_secs(60)).await;

    // The log keeps acknowledged entries for the retention and is trimmed once a minute: it never holds more
    // than the batches of the last retention plus a minute (a batch is one entry per partition it touches),
    // plus what is not yet applied.
    let answered: Vec<i64> = tally.accepted_batches.iter().map(|(_, a, _)| *a).collect();
    for s in &samples {
        let window_ms = (LOG_RETENTION_SECS + 60 + 5) * 1_000;
        let recent = answered
            .iter()
            .filter(|&&a| a >= s.at_ms - window_ms && a <= s.at_ms + 1_000)
            .count() as u64;
        assert!(
            s.log_entries <= recent * PARTITIONS as u64 + backlog_max + 100,
            "the log holds {} entries at {:.0} s, more than the {recent} batches of the last {window_ms} ms make",
            s.log_entries,
            s.elapsed_s
        );
    }
    // Keys per partition: a fixed few, the minute window's live 5 s slices, one bucket per minute (kept a day
    // for the hour and day windows and the snapshots). Nothing per view, per request or per 5 s beyond that.
    for s in &samples {
        let minutes = (s.elapsed_s / 60.0).ceil() as u64 + 1;
        let bound = PARTITIONS as u64 * (30 + minutes);
        assert!(
            s.keys <= bound,
            "{} keys at {:.0} s, above {bound}",
            s.keys,
            s.elapsed_s
        );
    }
    // Memory: bounded by the videos (2000) and the minutes, not by the views sent; generous, since the
    // allocator's figures move.
    let warm = samples[samples.len() / 3];
    let last = *samples.last().unwrap();
    let minutes = (last.elapsed_s - warm.elapsed_s) / 60.0;
    let allowed = (16.0 + 4.0 * minutes) * 1024.0 * 1024.0;
    assert!(
        (last.used_memory as f64) <= warm.used_memory as f64 + allowed,
        "Redis memory grew from {} to {} bytes",
        warm.used_memory,
        last.used_memory
    );

    let unavailable = assert_queries_served("under load", &queries);
    let mem_mb = |b: u64| b as f64 / 1024.0 / 1024.0;
    report(&format!(
        "faults load {:.0} s: {} views accepted ({:.0}/s) in {} batches, {} queries ({:.0}/s, {unavailable} 503); \
         Redis memory {:.1} MB -> {:.1} MB (max {:.1} MB), keys {} -> {} (max {}), log entries max {}, backlog max {}",
        run.as_secs_f64(),
        tally.views_accepted,
        tally.views_accepted as f64 / run.as_secs_f64(),
        tally.batches_accepted,
        queries.len(),
        queries.len() as f64 / run.as_secs_f64(),
        mem_mb(samples[0].used_memory),
        mem_mb(last.used_memory),
        mem_mb(samples.iter().map(|s| s.used_memory).max().unwrap()),
        samples[0].keys,
        last.keys,
        samples.iter().map(|s| s.keys).max().unwrap(),
        samples.iter().map(|s| s.log_entries).max().unwrap(),
        backlog_max,
    ));
    report(&format!(
        "faults load query latency: {}",
        latency_line(&queries)
    ));
    assert!(tally.views_accepted > 1000, "too few views: {tally:?}");
    check_windows("load", &store, &tally, windows_since(started), 0).await;
}
