//! The `freshness_p50` and `freshness_p99` figures: how soon an accepted view is readable, under load.

use super::{progress_of_run, Bodies};
use crate::config::BenchConfig;
use crate::figures::{figure, quantile, Better, Figure};
use crate::load::send;
use crate::stack::{Services, TOKEN};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `freshness_p50`, `freshness_p99`: from a POST's answer to the view being counted, under a steady load.
pub async fn freshness(
    cfg: &BenchConfig,
    services: &Services,
    bodies: Bodies,
) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for r in 0..cfg.repeats {
        let bar = progress_of_run(
            &format!("freshness at {} views/s", cfg.freshness_rate),
            r,
            cfg,
        );
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
