//! The history the `range` figures read: days of minute rows in `video_stats`, each minute `rows_per_minute`
//! distinct videos drawn Zipf(s) over the workload's videos (views drawn until the minute holds that many,
//! so a popular video has many views in every minute and most videos few), written by binary `COPY` into the
//! daily partitions; then the checkpoints at its last minute, as the snapshotter leaves them, and the period
//! totals added by the snapshotter's own step (timed).

use crate::phases::progress;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Zipf};
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use topk_core::db::{self, retention};

/// Minutes in a day.
pub const DAY: i64 = 1440;

/// What was seeded.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    /// The first day's start, in minutes since the epoch.
    pub first_day: i64,
    /// Whole days seeded.
    pub days: i64,
    /// Rows in `video_stats`.
    pub rows: u64,
    /// Seconds the snapshotter's step took to add every hour and day to the period totals.
    pub totals_secs: f64,
}

/// Seeds `days` days ending `days_ago` days before today (UTC), for `partitions` partitions' checkpoints.
pub async fn seed(
    pool: &PgPool,
    videos: u64,
    zipf_s: f64,
    rows_per_minute: usize,
    days: i64,
    partitions: u16,
) -> anyhow::Result<Seeded> {
    let today = chrono::Utc::now().timestamp() / 60 / DAY * DAY;
    let first_day = today - (days + 1) * DAY;
    let zipf = Zipf::new(videos as f64, zipf_s)?;
    let mut rng = StdRng::seed_from_u64(29);
    let mut rows = 0;
    for d in 0..days {
        let day = first_day + d * DAY;
        let bar = progress(&format!(
            "range: seeding day {}/{days} of video_stats ({rows_per_minute} rows a minute)",
            d + 1
        ));
        let date = db::minute_start(day).date_naive();
        retention::ensure_day_partitions(pool, date, date).await?;
        let mut day_rows: Vec<(String, i64, i64)> =
            Vec::with_capacity(DAY as usize * rows_per_minute);
        for m in day..day + DAY {
            let mut minute: HashMap<u64, i64> = HashMap::with_capacity(rows_per_minute);
            while minute.len() < rows_per_minute {
                *minute.entry(zipf.sample(&mut rng) as u64).or_default() += 1;
            }
            day_rows.extend(minute.into_iter().map(|(v, n)| (format!("v{v}"), m, n)));
        }
        // Key order, as the snapshotter writes: each index insert lands next to the previous one.
        day_rows.sort_unstable();
        for chunk in day_rows.chunks(200_000) {
            let mut copy = pool
                .copy_in_raw(
                    "COPY video_stats (video_id, bucket_start, views) FROM STDIN (FORMAT binary)",
                )
                .await?;
            copy.send(copy_binary(chunk)).await?;
            copy.finish().await?;
        }
        rows += day_rows.len() as u64;
        bar.finish_and_clear();
    }
    let last = first_day + days * DAY - 1;
    for p in 0..partitions {
        sqlx::query(
            "INSERT INTO ingest_checkpoints (partition, last_entry_id, minute_through) VALUES ($1, $2, $3)",
        )
        .bind(i32::from(p))
        .bind(format!("{}-0", (last + 1) * 60_000 - 1))
        .bind(db::minute_start(last))
        .execute(pool)
        .await?;
    }
    let bar = progress("range: adding the seeded hours and days to the period totals");
    let t = Instant::now();
    let closed =
        db::periods::close_periods(pool, partitions, Duration::from_secs(24 * 3600)).await?;
    let totals_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        closed.hours as i64 == days * 24 && closed.days as i64 == days,
        "the period totals took {closed:?} of {days} days"
    );
    // So that reads use index-only scans and autovacuum does not visit these tables during the measurements.
    for table in ["video_stats", "video_stats_hourly", "video_stats_daily"] {
        sqlx::query(&format!("VACUUM (ANALYZE) {table}"))
            .execute(pool)
            .await?;
    }
    bar.finish_and_clear();
    Ok(Seeded {
        first_day,
        days,
        rows,
        totals_secs,
    })
}

/// Microseconds from the Unix epoch to Postgres's (2000-01-01), the origin of a binary `timestamptz`.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// `(video_id, minute, views)` rows in `COPY`'s binary format.
fn copy_binary(rows: &[(String, i64, i64)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(21 + rows.iter().map(|r| 30 + r.0.len()).sum::<usize>());
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    for (id, minute, views) in rows {
        buf.extend_from_slice(&3i16.to_be_bytes());
        buf.extend_from_slice(&(id.len() as i32).to_be_bytes());
        buf.extend_from_slice(id.as_bytes());
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&(minute * 60_000_000 - PG_EPOCH_US).to_be_bytes());
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&views.to_be_bytes());
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    buf
}

/// Rows and bytes (indexes included) of a table; a partitioned one's over its partitions.
pub async fn size(pool: &PgPool, table: &str) -> anyhow::Result<(i64, i64)> {
    let (rows,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await?;
    // A partitioned table's own size is 0: its partitions' are summed; a plain table has no partition tree.
    let (bytes,): (Option<i64>,) = sqlx::query_as(
        "SELECT coalesce((SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_partition_tree($1::regclass)), \
                pg_total_relation_size($1::regclass))",
    )
    .bind(table)
    .fetch_one(pool)
    .await?;
    Ok((rows, bytes.unwrap_or(0)))
}
