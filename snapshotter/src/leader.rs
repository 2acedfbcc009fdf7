//! One writer at a time: the snapshotter that holds a Postgres advisory lock writes; others stand by.

use sqlx::{PgConnection, PgPool};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::db::SNAPSHOTTER_LOCK;

/// The held lock: a session-level advisory lock lives as long as its connection, which is taken out of the pool
/// so that dropping it closes the session and frees the lock.
pub struct Leadership {
    conn: PgConnection,
}

impl Leadership {
    /// Takes the lock if free.
    pub async fn try_acquire(pool: &PgPool) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = pool.acquire().await?.detach();
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(SNAPSHOTTER_LOCK)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(Self { conn }))
    }

    /// Waits until the lock is ours (standby), or `stop`.
    pub async fn acquire(pool: &PgPool, stop: &CancellationToken) -> Option<Self> {
        let mut standing_by = false;
        loop {
            match Self::try_acquire(pool).await {
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
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.cancelled() => return None,
            }
        }
    }

    /// Whether the lock is still held (its connection alive).
    pub async fn still_held(&mut self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .is_ok()
    }

    /// Releases the lock explicitly.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SNAPSHOTTER_LOCK)
            .execute(&mut self.conn)
            .await;
    }
}
