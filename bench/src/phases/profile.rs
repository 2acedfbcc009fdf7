//! "Where Redis time goes" (`--only profile`): the Redis CPU per view of each stage of a view's life, and per
//! command within each stage (INFO commandstats), measured apart on a private prefix with injected time.
//! One minute of the workload's views is logged (the receiver's append), applied (the workers' step, at most
//! `TOPK_WORKER_BATCH_ENTRIES` = 256 entries a call, as they run), then sealed and retired past the day
//! window (the retirer's steps, the snapshotter having closed the minute as it does in a deployment).
//! Stages: `append`, `apply`, `seal` (closed minutes packed), `retire_minute`, `retire_hour`, `retire_day`.
//! Figures: `profile_cpu.<stage>` (us/view) and per command `profile.<stage>.<command>` (us/view, Redis's
//! own accounting, which counts a script's inner commands in their rows as well as in `evalsha`) and
//! `profile_calls.<stage>.<command>` (calls per 1,000 views).

use super::{
    close_minutes, drop_closed, five_days_ago_minute, past_the_day_window, progress_of_run,
    redis_quiet, POST_VIEWS,
};
use crate::config::BenchConfig;
use crate::figures::{figure, Better, Figure};
use crate::workload::Workload;
use std::collections::{BTreeMap, HashMap};
use topk_core::domain::{VideoId, Window};
use topk_core::redis::RedisStore;
use topk_core::slices::MINUTE_MS;

/// Entries a worker applies in one call (`TOPK_WORKER_BATCH_ENTRIES`' default).
const WORKER_BATCH_ENTRIES: usize = 256;

/// Per (stage, command), the repeats' calls per 1,000 views and microseconds per view.
type CommandSamples<'a> = HashMap<(&'a str, String), (Vec<f64>, Vec<f64>)>;

/// What one stage cost: Redis CPU seconds, and calls and microseconds per command.
struct Cost {
    cpu: f64,
    commands: BTreeMap<String, (u64, u64)>,
}

async fn snapshot(store: &RedisStore) -> anyhow::Result<Cost> {
    let m = store.measures();
    Ok(Cost {
        cpu: m.server_cpu_seconds().await?,
        commands: m.command_stats().await?,
    })
}

/// `after - before`, per view.
fn per_view(before: &Cost, after: &Cost, views: u64) -> (f64, BTreeMap<String, (f64, f64)>) {
    let v = views.max(1) as f64;
    let commands = after
        .commands
        .iter()
        .map(|(name, (calls, usec))| {
            let (c0, u0) = before.commands.get(name).copied().unwrap_or((0, 0));
            (
                name.clone(),
                ((calls - c0) as f64 * 1000.0 / v, (usec - u0) as f64 / v),
            )
        })
        .filter(|(_, (calls, _))| *calls > 0.0)
        .collect();
    ((after.cpu - before.cpu) * 1e6 / v, commands)
}

/// The profile of `store`'s deployment (its partition count, one node or a cluster).
pub async fn profile(cfg: &BenchConfig, store: &RedisStore) -> anyhow::Result<Vec<Figure>> {
    let posts = if cfg.quick { 200 } else { 2000 };
    let mut workload = Workload::new(cfg.videos, cfg.zipf_s, 11)?;
    store.applier().ensure_log_groups().await?;
    let mut minute_start = five_days_ago_minute();
    let stages = [
        "append",
        "apply",
        "seal",
        "retire_minute",
        "retire_hour",
        "retire_day",
    ];
    let mut cpu: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut commands: CommandSamples = HashMap::new();
    let views = (posts * POST_VIEWS) as u64;
    let label = format!("profile: {views} views logged, applied and retired, stage by stage");
    for r in 0..cfg.repeats {
        let bar = progress_of_run(&label, r, cfg);
        let bodies: Vec<Vec<(VideoId, u64)>> = (0..posts)
            .map(|_| workload.counted(POST_VIEWS))
            .collect::<anyhow::Result<_>>()?;
        let mut measured = Vec::new();
        redis_quiet(store).await?;
        let before = snapshot(store).await?;
        let writer = store.writer();
        for (i, post) in bodies.iter().enumerate() {
            // Spread over the minute, as a minute of traffic is: every 5-second slice gets its share.
            let at = minute_start + (i as i64 * MINUTE_MS) / posts as i64;
            writer.append_at(post, at).await?;
        }
        let appended = snapshot(store).await?;
        measured.push(per_view(&before, &appended, views));
        let applier = store.applier();
        let mut applied = 0;
        for p in store.keys().all_partitions() {
            loop {
                let step = applier
                    .step(p, "profile", WORKER_BATCH_ENTRIES, Default::default())
                    .await?;
                if step.entries == 0 {
                    break;
                }
                applied += step.views;
            }
        }
        anyhow::ensure!(applied == views, "applied {applied} of {views} views");
        let after_apply = snapshot(store).await?;
        measured.push(per_view(&appended, &after_apply, views));
        let after_everything = past_the_day_window(minute_start);
        let closed = close_minutes(store, minute_start).await?;
        let mut last = snapshot(store).await?;
        applier.seal_all(after_everything).await?;
        let sealed = snapshot(store).await?;
        measured.push(per_view(&last, &sealed, views));
        last = sealed;
        for window in Window::SLIDING {
            applier.retire_window(window, after_everything).await?;
            let retired = snapshot(store).await?;
            measured.push(per_view(&last, &retired, views));
            last = retired;
        }
        drop_closed(store, closed).await?;
        for (stage, (stage_cpu, stage_commands)) in stages.iter().zip(measured) {
            cpu.entry(stage).or_default().push(stage_cpu);
            for (name, (calls, usec)) in stage_commands {
                let entry = commands.entry((stage, name)).or_default();
                entry.0.push(calls);
                entry.1.push(usec);
            }
        }
        minute_start = after_everything + MINUTE_MS;
        bar.finish_and_clear();
    }
    let mut out = Vec::new();
    for stage in stages {
        out.push(figure(
            format!("profile_cpu.{stage}"),
            "us/view",
            Better::Lower,
            &cpu[stage],
            None,
        ));
        let mut rows: Vec<_> = commands.iter().filter(|((s, _), _)| *s == stage).collect();
        rows.sort_by(|a, b| {
            crate::figures::median(&b.1 .1).total_cmp(&crate::figures::median(&a.1 .1))
        });
        for ((_, name), (calls, usec)) in rows {
            out.push(figure(
                format!("profile.{stage}.{name}"),
                "us/view",
                Better::Lower,
                usec,
                None,
            ));
            out.push(figure(
                format!("profile_calls.{stage}.{name}"),
                "calls/1k views",
                Better::Lower,
                calls,
                None,
            ));
        }
    }
    Ok(out)
}
