//! The seed's SQL baseline: a window's ranking computed in Postgres from per-minute rows at query time.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use topk_core::domain::Window;

/// A filled scratch table and the end of its window.
pub struct Table {
    name: String,
    at: DateTime<Utc>,
}

/// Fills a scratch table for `window` with one row per video (the cheapest layout for the SQL: `videos` rows
/// spread over the window's `minutes` up to `at`, the minute the fill started), its ids in byte order as in
/// `video_stats`.
pub async fn fill(
    pool: &PgPool,
    window: Window,
    videos: u64,
    minutes: i64,
) -> anyhow::Result<Table> {
    let (at,): (DateTime<Utc>,) = sqlx::query_as("SELECT date_trunc('minute', now())")
        .fetch_one(pool)
        .await?;
    let table = format!("bench_stats_{window}");
    execute(pool, &format!("DROP TABLE IF EXISTS {table}")).await?;
    execute(pool, &format!("CREATE TABLE {table} (video_id text COLLATE \"C\" NOT NULL, bucket_start timestamptz NOT NULL, views bigint NOT NULL)")).await?;
    let mut from = 0;
    while from < videos {
        let to = (from + 50_000).min(videos);
        let ids: Vec<String> = (from..to).map(|i| format!("q{i}")).collect();
        let ago: Vec<i64> = (from..to)
            .map(|i| (i % minutes.max(1) as u64) as i64)
            .collect();
        let views: Vec<i64> = (from..to).map(|i| (videos / (i + 1) + 1) as i64).collect();
        sqlx::query(&format!(
            "INSERT INTO {table} SELECT v, $4 - make_interval(mins => a::int), n \
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS t(v, a, n)"
        ))
        .bind(&ids)
        .bind(&ago)
        .bind(&views)
        .bind(at)
        .execute(pool)
        .await?;
        from = to;
    }
    execute(pool, &format!("CREATE INDEX ON {table} (bucket_start)")).await?;
    // VACUUM too: otherwise autovacuum visits the freshly loaded table in the middle of the measurements.
    execute(pool, &format!("VACUUM (ANALYZE) {table}")).await?;
    Ok(Table { name: table, at })
}

/// Runs one statement on the scratch table that binds nothing and returns nothing (DDL, maintenance).
async fn execute(pool: &PgPool, sql: &str) -> anyhow::Result<()> {
    sqlx::query(sql).execute(pool).await?;
    Ok(())
}

/// The window's condition on `bucket_start`, the query parameter `end` (`$1`, `$2`...) being its end.
fn window_condition(window: Window, end: &str) -> String {
    let span = match window {
        Window::Minute => "1 minute",
        Window::Hour => "1 hour",
        Window::Day => "1 day",
        Window::All => "1000 years",
    };
    format!("bucket_start > {end} - interval '{span}' AND bucket_start <= {end}")
}

/// How many rows the query of [`top`] aggregates: the bench checks it is every video.
pub async fn rows_in_window(pool: &PgPool, table: &Table, window: Window) -> anyhow::Result<u64> {
    let (rows,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM {} WHERE {}",
        table.name,
        window_condition(window, "$1")
    ))
    .bind(table.at)
    .fetch_one(pool)
    .await?;
    Ok(rows.try_into()?)
}

/// The seed's query: `SUM ... GROUP BY ... ORDER BY ... LIMIT k` over the window.
pub async fn top(
    pool: &PgPool,
    table: &Table,
    window: Window,
    k: usize,
) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(&format!(
        "SELECT video_id, sum(views)::bigint FROM {} WHERE {} \
         GROUP BY video_id ORDER BY 2 DESC, 1 DESC LIMIT $1",
        table.name,
        window_condition(window, "$2")
    ))
    .bind(k as i64)
    .bind(table.at)
    .fetch_all(pool)
    .await?)
}
