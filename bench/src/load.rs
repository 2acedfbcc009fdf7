//! The load generator: concurrent HTTP clients posting pre-built batches, flat out or at a fixed rate.

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Sends `bodies` round-robin from `clients` tasks until `stop` is set, at `rate` views/s overall when given.
/// Returns the views answered 202.
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    bodies: Arc<Vec<(Bytes, u64)>>,
    clients: usize,
    rate: Option<u64>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let accepted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, token, bodies, stop, accepted) = (
            http.clone(),
            format!("{url}/v1/views"),
            token.to_owned(),
            bodies.clone(),
            stop.clone(),
            accepted.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let per_batch = bodies.first().map_or(1, |b| b.1);
            let mut pace = rate.map(|r| {
                let per_client = (r as f64 / clients as f64).max(1.0);
                let mut t =
                    tokio::time::interval(Duration::from_secs_f64(per_batch as f64 / per_client));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = pace.as_mut() {
                    t.tick().await;
                }
                let (body, views) = &bodies[i % bodies.len()];
                i += clients;
                let sent = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 202 => {
                        accepted.fetch_add(*views, Ordering::Relaxed);
                    }
                    Ok(r) => tracing::warn!(status = %r.status(), "batch refused"),
                    Err(e) => tracing::warn!(error = %e, "batch not sent"),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    accepted.load(Ordering::Relaxed)
}

/// A stop flag set after `after`.
pub fn stop_after(after: Duration) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        flag.store(true, Ordering::Relaxed);
    });
    stop
}
