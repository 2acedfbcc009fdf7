//! The minute writes into Postgres: the COPY and upsert paths, overlapping writers, byte-order ids.

use crate::helpers::{database, stats, totals, MIN, T0};
use chrono::{TimeZone, Utc};
use std::collections::BTreeMap;

fn ranked(rows: &[(&str, u64)]) -> Vec<topk_core::domain::RankedVideo> {
    rows.iter()
        .map(|(v, n)| topk_core::domain::RankedVideo {
            video_id: (*v).into(),
            views: *n,
        })
        .collect()
}

/// The fast path (COPY) and the conflict path (upsert, taken when a row already sits past the checkpoint)
/// leave the same rows and totals; the conflicting row is replaced, and totals are added once.
#[tokio::test]
async fn copy_path_and_conflict_path_write_the_same_rows() {
    use topk_core::db::{minute_start, write_minutes};
    let m0 = T0 / MIN;
    let minutes = vec![
        (m0, ranked(&[("b", 2), ("a", 5), ("c", 1)])),
        (m0 + 1, ranked(&[("a", 1), ("d", 7)])),
        (m0 + 3, ranked(&[("c", 4), ("b", 3), ("a", 2)])),
    ];
    let fast = database("copypath").await;
    let conflict = database("conflictpath").await;
    for pool in [&fast, &conflict] {
        write_minutes(pool, 0, &[(m0 - 1, ranked(&[("a", 1)]))], m0 - 1)
            .await
            .unwrap();
    }
    // A stale row past the checkpoint, as a restored backup with older checkpoints could hold.
    sqlx::query("INSERT INTO video_stats (video_id, bucket_start, views) VALUES ('d', $1, 99)")
        .bind(minute_start(m0 + 1))
        .execute(&conflict)
        .await
        .unwrap();

    let by_copy = write_minutes(&fast, 0, &minutes, m0 + 4).await.unwrap();
    let by_upsert = write_minutes(&conflict, 0, &minutes, m0 + 4).await.unwrap();
    assert!(!by_copy.upserted && by_upsert.upserted);
    assert_eq!((by_copy.minutes, by_copy.rows), (3, 8));
    assert_eq!(
        (by_upsert.minutes, by_upsert.rows),
        (by_copy.minutes, by_copy.rows)
    );
    let want = vec![
        ("a".to_owned(), T0 - MIN, 1),
        ("a".to_owned(), T0, 5),
        ("a".to_owned(), T0 + MIN, 1),
        ("a".to_owned(), T0 + 3 * MIN, 2),
        ("b".to_owned(), T0, 2),
        ("b".to_owned(), T0 + 3 * MIN, 3),
        ("c".to_owned(), T0, 1),
        ("c".to_owned(), T0 + 3 * MIN, 4),
        ("d".to_owned(), T0 + MIN, 7),
    ];
    assert_eq!(stats(&fast).await, want);
    assert_eq!(stats(&conflict).await, want);
    let want_totals: BTreeMap<String, i64> = [("a", 9), ("b", 5), ("c", 5), ("d", 7)]
        .into_iter()
        .map(|(v, n)| (v.to_owned(), n))
        .collect();
    assert_eq!(totals(&fast).await, want_totals);
    assert_eq!(totals(&conflict).await, want_totals);
    for pool in [&fast, &conflict] {
        let cp = topk_core::db::checkpoints(pool).await.unwrap();
        assert_eq!(cp[&0].minute_through, m0 + 4);
    }
}

/// Writes whose minutes overlap what is already written (two snapshotters whose chunks end at different
/// minutes) add only the minutes past the checkpoint, and never move it back.
#[tokio::test]
async fn overlapping_writes_add_only_the_minutes_past_the_checkpoint() {
    use topk_core::db::write_minutes;
    let pool = database("overlap").await;
    let m0 = T0 / MIN;
    let minute = |i: i64| (m0 + i, ranked(&[("a", 1), (&format!("v{i}"), 2)]));
    let first: Vec<_> = (0..5).map(minute).collect();
    let second: Vec<_> = (3..8).map(minute).collect();
    let w = write_minutes(&pool, 1, &first, m0 + 4).await.unwrap();
    assert_eq!((w.minutes, w.rows), (5, 10));
    let w = write_minutes(&pool, 1, &second, m0 + 7).await.unwrap();
    assert_eq!(
        (w.minutes, w.rows),
        (3, 6),
        "minutes 3 and 4 were written twice"
    );
    let w = write_minutes(&pool, 1, &first, m0 + 4).await.unwrap();
    assert_eq!(w, Default::default());
    assert_eq!(
        topk_core::db::checkpoints(&pool).await.unwrap()[&1].minute_through,
        m0 + 7
    );
    assert_eq!(totals(&pool).await["a"], 8);
    assert_eq!(stats(&pool).await.len(), 16);
}

/// Postgres orders video ids by their bytes, as Redis does, whatever the database's default collation: an
/// analyst's `ORDER BY views DESC, video_id DESC` breaks ties as the rankings do. Every `video_id` column,
/// daily partitions included, uses the "C" collation (a language collation would put "a" before "B").
#[tokio::test]
async fn video_ids_order_by_bytes_in_postgres_as_in_redis() {
    use topk_core::db::write_minutes;
    let pool = database("byteorder").await;
    let day = Utc.timestamp_millis_opt(T0).unwrap().date_naive();
    topk_core::db::retention::ensure_day_partitions(&pool, day, day)
        .await
        .unwrap();
    let ids = ["a", "B", "b", "Z9", "é", "e", "_x", "10", "9"];
    let tied: Vec<(&str, u64)> = ids.iter().map(|v| (*v, 3)).collect();
    write_minutes(&pool, 0, &[(T0 / MIN, ranked(&tied))], T0 / MIN)
        .await
        .unwrap();

    let not_bytewise: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND column_name = 'video_id' \
         AND collation_name IS DISTINCT FROM 'C' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(not_bytewise, vec![], "video_id columns not in byte order");

    let mut by_bytes: Vec<String> = ids.iter().map(|v| (*v).to_owned()).collect();
    by_bytes.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    for table in ["video_stats", "video_totals"] {
        let ordered: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT video_id FROM {table} ORDER BY video_id DESC"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        let ordered: Vec<String> = ordered.into_iter().map(|(v,)| v).collect();
        assert_eq!(ordered, by_bytes, "{table}");
    }
}
