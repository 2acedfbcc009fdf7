//! One writer at a time: concurrent snapshotters and the advisory lock.

use crate::helpers::{fed, per_minute, stats, totals, MIN, T0};
use topk_snapshotter::jobs::snapshot_minutes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_snapshotters_at_once_write_once() {
    let (store, pool, events) = fed("two", 4, 400, 8 * MIN).await;
    let now = T0 + 9 * MIN;
    let (a, b) = tokio::join!(
        snapshot_minutes(&store, &pool, now),
        snapshot_minutes(&store, &pool, now)
    );
    assert_eq!(
        a.unwrap().rows + b.unwrap().rows,
        per_minute(&events, now).len() as u64
    );
    assert_eq!(stats(&pool).await, per_minute(&events, now));
    let total: i64 = totals(&pool).await.values().sum();
    assert_eq!(total, events.iter().map(|(_, _, n)| *n as i64).sum::<i64>());

    let lock = topk_snapshotter::leader::Leadership::try_acquire(&pool)
        .await
        .unwrap()
        .expect("first gets the lock");
    assert!(
        topk_snapshotter::leader::Leadership::try_acquire(&pool)
            .await
            .unwrap()
            .is_none(),
        "second stands by"
    );
    lock.release().await;
    assert!(topk_snapshotter::leader::Leadership::try_acquire(&pool)
        .await
        .unwrap()
        .is_some());
}
