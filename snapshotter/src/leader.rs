//! One writer at a time: the snapshotter that holds the Postgres advisory lock ([`SnapshotterLock`]) writes;
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
