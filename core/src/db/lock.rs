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
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn try_acquire(pool: &PgPool) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = pool.acquire().await?.detach();
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(SNAPSHOTTER_LOCK)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then_some(Self { conn }))
    }

    /// Whether the lock is still held (its connection alive).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn still_held(&mut self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .is_ok()
    }

    /// Who holds the lock now, for an error that names them: the holder's backend process id, application
    /// name, client address and session start. `None` when nobody holds it.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn holder(pool: &PgPool) -> Result<Option<String>, sqlx::Error> {
        // A bigint advisory key is stored as classid (its high 32 bits) and objid (its low 32 bits).
        let row: Option<(i32, String, String, String)> = sqlx::query_as(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'a local socket'), \
                    coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '?') \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid \
             LIMIT 1",
        )
        .bind(SNAPSHOTTER_LOCK)
        .fetch_optional(pool)
        .await?;
        Ok(row.map(|(pid, app, from, since)| {
            let app = if app.is_empty() {
                "no application name".to_owned()
            } else {
                format!("application '{app}'")
            };
            format!("Postgres backend {pid} ({app}, from {from}, connected since {since})")
        }))
    }

    /// Releases the lock explicitly.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SNAPSHOTTER_LOCK)
            .execute(&mut self.conn)
            .await;
    }
}
