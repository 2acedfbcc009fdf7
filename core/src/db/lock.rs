//! The snapshotter's Postgres advisory lock: only the snapshotter that holds it writes; others stand by.

use sqlx::{PgConnection, PgPool};

/// Key of the Postgres advisory lock held by the one snapshotter that writes.
pub const SNAPSHOTTER_LOCK: i64 = 0x746f_706b_736e_6170; // "topksnap"

/// The held lock: a session-level advisory lock lives as long as its connection, which is taken out of the pool
/// so that dropping it closes the session and frees the lock.
pub struct SnapshotterLock {
    conn: PgConnection,
}

impl SnapshotterLock {
    /// Takes the lock if free.
    pub async fn try_acquire(pool: &PgPool) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = pool.acquire().await?.detach();
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(SNAPSHOTTER_LOCK)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(Self { conn }))
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
