//! The `memory_window` and `memory_tail` figures: Redis bytes per (video, window) and per sealed (video,
//! minute).

use crate::figures::{figure, Better, Figure};
use topk_core::redis::RedisStore;
use topk_core::slices;

/// `memory_window` and `memory_tail`: Redis bytes per (video, window) and per (video, minute) of the tail.
pub async fn memory(
    windows: &RedisStore,
    tail: Option<&RedisStore>,
) -> anyhow::Result<Vec<Figure>> {
    let (bytes, videos) = windows.measures().window_memory().await?;
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
            tail.applier()
                .seal_minutes(p, slices::minute_of(now_ms) + 1)
                .await?;
        }
        let (bytes, pairs) = tail.measures().sealed_minute_memory().await?;
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
