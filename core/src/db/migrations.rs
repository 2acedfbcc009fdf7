//! Whether the database is migrated to what this build expects: readiness refuses a service whose history
//! queries would fail on a missing table or column.

use super::MIGRATOR;
use sqlx::PgPool;

/// The versions of this build's migrations that the database has not applied (all of them when it has none),
/// in order.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let applied: Vec<i64> = match sqlx::query_scalar(
        "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await
    {
        Ok(versions) => versions,
        // 42P01: undefined table, the database was never migrated.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect())
}
