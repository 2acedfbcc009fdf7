//! Views arriving while their slice is being retired: the real worker and retirer steps run concurrently on
//! injected time, with event times clustered on slice boundaries, and every window is compared with a brute
//! force count of the events after each round.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicI64};
use topk_core::domain::VideoId;

/// (slice length in ms, slices in the window), as the design gives them: a window covers the slices ending
/// with the current, partial one.
fn shape(w: Window) -> Option<(i64, i64)> {
    match w {
        Window::Minute => Some((5_000, 12)),
        Window::Hour => Some((60_000, 60)),
        Window::Day => Some((60_000, 1_440)),
        Window::All => None,
    }
}

fn brute_force(events: &[(i64, String, u64)], w: Window, now: i64) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for (t, v, n) in events {
        let inside =
            shape(w).is_none_or(|(g, slices)| t.div_euclid(g) > now.div_euclid(g) - slices);
        if inside {
            *out.entry(v.clone()).or_default() += n;
        }
    }
    out
}

/// The next event time: mostly on either side of a 5 s (and so also a minute) boundary, sometimes a jump of
/// minutes so that the hour window retires too, once a jump past a day.
fn next_time(t: i64, step: usize, steps: usize) -> i64 {
    let mut rng = rand::rng();
    if step == steps * 3 / 4 {
        return t + 24 * 3_600_000 + 7_000;
    }
    match rng.random_range(0..100) {
        0..=59 => {
            let boundary = (t.div_euclid(5_000) + 1) * 5_000;
            (boundary + rng.random_range(-3..=3)).max(t)
        }
        60..=94 => t + rng.random_range(0..2_000),
        _ => t + rng.random_range(60_000..900_000),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_arriving_while_their_slice_retires_count_exactly() {
    let env = Env::new(&topk_testkit::servers().redis_url, "retire", 3);
    let store = env.store().await;
    store.applier().ensure_log_groups().await.unwrap();
    // Event times start at Redis's clock, so bucket expiries computed from them are never in the past.
    let base = store.now_ms().await.unwrap();
    let clock = Arc::new(AtomicI64::new(base));
    let mut events: Vec<(i64, String, u64)> = Vec::new();
    let (rounds, steps) = (4, 150);
    let mut retired = 0u64;
    for round in 0..rounds {
        let appending = Arc::new(AtomicBool::new(true));
        let appender = {
            let (store, clock, appending) = (store.clone(), clock.clone(), appending.clone());
            tokio::spawn(async move {
                let mut events = Vec::new();
                let mut t = clock.load(Ordering::SeqCst);
                for step in 0..steps {
                    t = next_time(t, round * steps + step, rounds * steps);
                    let batch: Vec<(VideoId, u64)> = {
                        let mut rng = rand::rng();
                        (0..rng.random_range(1..4))
                            .map(|_| {
                                (
                                    VideoId::parse(&format!("s{}", rng.random_range(0..20)))
                                        .unwrap(),
                                    rng.random_range(1..4),
                                )
                            })
                            .collect()
                    };
                    store.writer().append_at(&batch, t).await.unwrap();
                    clock.store(t, Ordering::SeqCst);
                    events.extend(
                        batch
                            .into_iter()
                            .map(|(v, n)| (t, v.as_str().to_owned(), n)),
                    );
                }
                appending.store(false, Ordering::SeqCst);
                events
            })
        };
        let workers: Vec<_> = ["w1", "w2"]
            .into_iter()
            .map(|name| {
                let (store, appending) = (store.clone(), appending.clone());
                tokio::spawn(async move {
                    loop {
                        let busy = appending.load(Ordering::SeqCst);
                        let mut applied = 0;
                        for p in store.keys().all_partitions() {
                            applied += store
                                .applier()
                                .step(p, name, 4, Default::default())
                                .await
                                .unwrap()
                                .entries;
                        }
                        if applied == 0 && !busy {
                            return;
                        }
                    }
                })
            })
            .collect();
        let retirer = {
            let (store, clock, appending) = (store.clone(), clock.clone(), appending.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while appending.load(Ordering::SeqCst) {
                    let now = clock.load(Ordering::SeqCst);
                    n += store.applier().retire_all(now).await.unwrap() as u64;
                    tokio::task::yield_now().await;
                }
                n
            })
        };
        events.extend(appender.await.unwrap());
        for w in workers {
            w.await.unwrap();
        }
        retired += retirer.await.unwrap();
        drain(&store, Duration::from_secs(10)).await;

        let now = clock.load(Ordering::SeqCst);
        retired += store.applier().retire_all(now).await.unwrap() as u64;
        for w in Window::ALL {
            let want = brute_force(&events, w, now);
            assert_eq!(counted(&store, w).await, want, "round {round}: {w} window");
            if shape(w).is_some() {
                let mut reference = HashMap::new();
                for p in store.keys().all_partitions() {
                    reference.extend(store.history().reference_counts(p, w, now).await.unwrap());
                }
                reference.retain(|_, n| *n > 0);
                assert_eq!(reference, want, "round {round}: {w} slices");
            }
        }
    }
    let views: u64 = events.iter().map(|(_, _, n)| n).sum();
    report(&format!(
        "faults retire race: {} batches, {views} views at slice boundaries over {:.1} h of injected time, \
         {retired} slices retired concurrently, every window equal to brute force after each of {rounds} rounds",
        rounds * steps,
        (clock.load(Ordering::SeqCst) - base) as f64 / 3_600_000.0
    ));
    add_to_suite(0, views, views);
}
