//! `topk range` over history written as the snapshotter writes it.

use crate::run::{cli_stack, Cli};
use topk_core::domain::RankedVideo;

/// Minutes since the epoch of 2026-11-`day` at `h`:`m` UTC.
fn minute(day: i64, h: i64, m: i64) -> i64 {
    // 2026-11-01T00:00:00Z.
    1_793_491_200 / 60 + (day - 1) * 1440 + h * 60 + m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_range_prints_as_a_table() {
    let s = cli_stack("cli_range").await;
    let row = |v: &str, n: u64| RankedVideo {
        video_id: v.into(),
        views: n,
    };
    let writes = vec![
        (
            minute(1, 10, 15),
            vec![row("vid-a", 1500), row("vid-b", 700)],
        ),
        (minute(3, 23, 59), vec![row("vid-b", 900), row("vid-c", 5)]),
        (minute(8, 0, 0), vec![row("vid-c", 1_000_000)]),
    ];
    topk_core::db::write_minutes(&s.db, 0, &writes, minute(8, 0, 0))
        .await
        .unwrap();

    // The week of 1 to 7 November: the views of the 8th are not in it.
    let run = s
        .topk(
            &[
                "range",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-08",
                "-k",
                "2",
            ],
            None,
        )
        .await
        .ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "rank  views  video",
            "   1  1,600  vid-b",
            "   2  1,500  vid-a",
            "from 2026-11-01T00:00:00Z to 2026-11-08T00:00:00Z",
            "history through the minute of 2026-11-08T00:00:00Z",
        ],
        "{run:?}"
    );
    let json = s
        .topk(
            &[
                "range",
                "--from",
                "2026-11-03T23:59:00+00:00",
                "--to",
                "2026-11-04",
                "--json",
            ],
            None,
        )
        .await
        .ok()
        .json();
    assert_eq!(
        json["videos"],
        serde_json::json!([{"videoId": "vid-b", "views": 900}, {"videoId": "vid-c", "views": 5}])
    );
    let run = s
        .topk(
            &["range", "--from", "2026-10-01", "--to", "2026-10-02"],
            None,
        )
        .await
        .ok();
    assert_eq!(
        run.stdout.lines().next(),
        Some("no views from 2026-10-01T00:00:00Z to 2026-10-02T00:00:00Z")
    );

    // A time that is not one: a usage error (2); an empty range: the API's 400 (1).
    let run = s
        .topk(
            &["range", "--from", "last-week", "--to", "2026-11-08"],
            None,
        )
        .await;
    assert!(run.failed_with(2).contains("--from"), "{run:?}");
    let run = s
        .topk(
            &["range", "--from", "2026-11-08", "--to", "2026-11-01"],
            None,
        )
        .await;
    assert!(
        run.failed_with(1)
            .starts_with("topk: 400 Bad Request: the range is empty"),
        "{run:?}"
    );
}
