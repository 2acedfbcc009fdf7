//! The `range` figures: the top K of a past range from history, `GET /v1/topk/range` on the API, against the
//! plain SQL over `video_stats` (`SUM(views) ... GROUP BY video_id ORDER BY 2 DESC, 1 DESC LIMIT k`) on the same
//! seeded history in the same run, each answer checked equal to the SQL's.
//!
//! - `range_p50.<span>.k<k>`, `range_p99.<span>.k<k>`: spans of a whole hour, a whole day and seven whole days
//!   (how analysts ask: "10:00 to 11:00", "28 November", "last week"), k = 100 and 1000; one client, one
//!   request at a time, the range moving over the history from request to request;
//! - `range_cut_p50` and `range_cut_p99`, the same spans starting and ending at :17 past an hour, so that the
//!   partial hours at both ends are summed from minute rows;
//! - `range_rows_per_day.<table>` and `range_bytes_per_row.<table>` for `video_stats` and the two tables of
//!   totals, and `range_totals_add`, the seconds the snapshotter's step took per million minute rows to add
//!   the seeded history to the totals: the inputs of CAPACITY.md.

use super::progress;
use crate::config::BenchConfig;
use crate::figures::{figure, quantile, Better, Figure};
use crate::range_seed::{self, Seeded, DAY};
use crate::stack::Services;
use sqlx::PgPool;
use std::time::Instant;
use topk_core::db::minute_start;

const HOUR: i64 = 60;

/// A span measured: its name in the figures, its length and how many of them fit in the history.
const SPANS: [(&str, i64); 3] = [("1h", HOUR), ("1d", DAY), ("7d", 7 * DAY)];

/// The range figures.
pub async fn range(
    cfg: &BenchConfig,
    services: &Services,
    pool: &PgPool,
) -> anyhow::Result<Vec<Figure>> {
    // Eight days, so that seven whole days fit twice and a cut week once.
    let days = 8;
    super::reset_history(pool).await?;
    let per_minute = (cfg.range_rows as f64 / (7 * DAY) as f64).ceil() as usize;
    let seeded = range_seed::seed(
        pool,
        cfg.videos,
        cfg.zipf_s,
        per_minute.max(1),
        days,
        cfg.redis.partitions,
    )
    .await?;
    let mut out = storage(pool, &seeded).await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        tracing::warn!(error = %e, "could not force a Postgres checkpoint");
    }
    let http = reqwest::Client::new();
    let requests = cfg.range_requests.max(1);
    let sql_runs = if cfg.quick { 1 } else { 3 };
    for cut in [false, true] {
        for (span, length) in SPANS {
            for k in [100usize, 1000] {
                let bar = progress(&format!(
                    "range: {}{span}, k={k}",
                    if cut { "cut " } else { "" }
                ));
                let ranges = ranges(&seeded, length, cut);
                // The SQL first: its answers are what every answer of ours is checked against.
                let mut sql = Vec::new();
                let mut want = Vec::new();
                for i in 0..sql_runs {
                    let (from, to) = ranges[i % ranges.len()];
                    let t = Instant::now();
                    let top = sql_top(pool, from, to, k).await?;
                    sql.push(t.elapsed().as_secs_f64() * 1000.0);
                    want.push(top);
                }
                let url = |i: usize| {
                    let (from, to) = ranges[i % ranges.len()];
                    format!(
                        "{}/v1/topk/range?from={}&to={}&k={k}",
                        services.api_url,
                        minute_start(from).format("%Y-%m-%dT%H:%M:%SZ"),
                        minute_start(to).format("%Y-%m-%dT%H:%M:%SZ")
                    )
                };
                for (i, want) in want.iter().enumerate() {
                    let got = get(&http, &url(i)).await?;
                    anyhow::ensure!(
                        &got == want,
                        "{}: the range answered other videos than the SQL",
                        url(i)
                    );
                }
                let (mut p50, mut p99) = (Vec::new(), Vec::new());
                for _ in 0..cfg.repeats {
                    let mut lat = Vec::with_capacity(requests);
                    for i in 0..requests {
                        let t = Instant::now();
                        let r = http.get(url(i)).send().await?;
                        anyhow::ensure!(
                            r.status().is_success(),
                            "{} answered {}",
                            url(i),
                            r.status()
                        );
                        r.bytes().await?;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    p50.push(quantile(&lat, 0.5));
                    p99.push(quantile(&lat, 0.99));
                }
                let name = if cut { "range_cut" } else { "range" };
                out.push(figure(
                    format!("{name}_p50.{span}.k{k}"),
                    "ms",
                    Better::Lower,
                    &p50,
                    Some(&sql),
                ));
                out.push(figure(
                    format!("{name}_p99.{span}.k{k}"),
                    "ms",
                    Better::Lower,
                    &p99,
                    Some(&sql),
                ));
                bar.finish_and_clear();
            }
        }
    }
    Ok(out)
}

/// The ranges a span is measured on, `[from, to)` in minutes: every whole hour or day of the history in turn
/// (hours spread over it), or the same starting at :17.
fn ranges(seeded: &Seeded, length: i64, cut: bool) -> Vec<(i64, i64)> {
    let shift = if cut { 17 } else { 0 };
    let end = seeded.first_day + seeded.days * DAY;
    let step = if length == HOUR { 7 * HOUR } else { DAY };
    (0..)
        .map(|i| seeded.first_day + i * step + shift)
        .take_while(|from| from + length <= end)
        .map(|from| (from, from + length))
        .collect()
}

/// The plain SQL over `video_stats`.
async fn sql_top(
    pool: &PgPool,
    from: i64,
    to: i64,
    k: usize,
) -> anyhow::Result<Vec<(String, u64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT video_id, SUM(views)::bigint FROM video_stats \
         WHERE bucket_start >= $1 AND bucket_start < $2 \
         GROUP BY video_id ORDER BY 2 DESC, 1 DESC LIMIT $3",
    )
    .bind(minute_start(from))
    .bind(minute_start(to))
    .bind(k as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(v, n)| (v, n as u64)).collect())
}

/// The videos of the API's answer.
async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let r = http.get(url).send().await?;
    anyhow::ensure!(r.status().is_success(), "{url} answered {}", r.status());
    let body: serde_json::Value = r.json().await?;
    Ok(body["videos"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|v| {
            (
                v["videoId"].as_str().unwrap_or_default().to_owned(),
                v["views"].as_u64().unwrap_or_default(),
            )
        })
        .collect())
}

/// Rows a day and bytes a row of `video_stats` and the tables of totals, and the time the totals took.
async fn storage(pool: &PgPool, seeded: &Seeded) -> anyhow::Result<Vec<Figure>> {
    let mut out = Vec::new();
    for (name, table) in [
        ("minute", "video_stats"),
        ("hourly", "video_stats_hourly"),
        ("daily", "video_stats_daily"),
    ] {
        let (rows, bytes) = range_seed::size(pool, table).await?;
        let per_day = rows as f64 / seeded.days as f64;
        out.push(figure(
            format!("range_rows_per_day.{name}"),
            "rows",
            Better::Lower,
            &[per_day],
            None,
        ));
        out.push(figure(
            format!("range_bytes_per_row.{name}"),
            "B",
            Better::Lower,
            &[bytes as f64 / rows.max(1) as f64],
            None,
        ));
    }
    out.push(figure(
        "range_totals_add",
        "s per M minute rows",
        Better::Lower,
        &[seeded.totals_secs / (seeded.rows as f64 / 1e6)],
        None,
    ));
    Ok(out)
}
