//! One writer at a time: the snapshotter that holds the Postgres advisory lock ([`topk_core::db::SnapshotterLock`]) writes;
//! others stand by until it is free.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
pub use topk_core::db::SnapshotterLock as Leadership;

/// How often a standby tries the lock again.
const RETRY: Duration = Duration::from_secs(2);

/// Waits until the lock is ours (standby), or `stop`.
pub async fn acquire(pool: &sqlx::PgPool, stop: &CancellationToken) -> Option<Leadership> {
    let mut standing_by = false;
    loop {
        match Leadership::try_acquire(pool).await {
            Ok(Some(l)) => {
                tracing::info!("holding the snapshotter lock: writing");
                return Some(l);
            }
            Ok(None) if !standing_by => {
                standing_by = true;
                tracing::info!("another snapshotter holds the lock: standing by");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach Postgres for the snapshotter lock")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.cancelled() => return None,
        }
    }
}

/// Takes the lock for a one-off command (`snapshot`, `rebuild-redis`): waits at most `wait` while another
/// snapshotter holds it, then fails with an error that names the holder; stopped meanwhile (Ctrl-C), fails at
/// once. Never returns without the lock, so a one-off command never writes beside the scheduled writer.
pub async fn acquire_within(
    pool: &sqlx::PgPool,
    wait: Duration,
    stop: &CancellationToken,
) -> anyhow::Result<Leadership> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    loop {
        if let Some(lock) = Leadership::try_acquire(pool).await? {
            return Ok(lock);
        }
        if !said {
            said = true;
            tracing::info!(
                wait_secs = wait.as_secs(),
                "another snapshotter holds the lock: waiting for it"
            );
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let holder = Leadership::holder(pool)
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| "a session that has just released it".into());
            anyhow::bail!(
                "the snapshotter lock is held by {holder}: a snapshotter is running (stop it, or wait longer \
                 with --lock-wait-secs); nothing was written"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY.min(deadline - now)) => {}
            _ = stop.cancelled() => anyhow::bail!("stopped while waiting for the snapshotter lock; nothing was written"),
        }
    }
}
