//! Views sent with `topk send` come back from `topk top` and `topk video`.

use crate::run::{cli_stack, Cli};
use std::time::Duration;

/// Ids as arguments and on stdin (2,500 lines with blank ones and CRLF endings: batches of 1,000, 1,000 and 500 ids),
/// then `top` in order with the right counts, as a table and as JSON, and `video` per window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_sent_are_ranked_and_counted() {
    let s = cli_stack("cli_round_trip").await;

    // Arrange / Act: 3 views from arguments, 2,500 from stdin.
    let run = s
        .topk(&["send", "vid-a", "vid-a", "vid-b"], None)
        .await
        .ok();
    assert_eq!(run.stdout, "accepted 3 views in 1 batch\n");
    let mut lines = String::new();
    for i in 0..2500 {
        let id = match i % 25 {
            0..=14 => "vid-c",  // 1,500
            15..=21 => "vid-d", // 700
            _ => "vid-a",       // 300
        };
        lines.push_str(id);
        lines.push_str(if i % 2 == 0 { "\n" } else { "\r\n" });
        if i % 100 == 0 {
            lines.push_str("\n  \n");
        }
    }
    let run = s.topk(&["send", "--json"], Some(&lines)).await.ok();
    let answers: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let accepted = |n: u64| serde_json::json!({ "accepted": n });
    assert_eq!(
        answers,
        [accepted(1000), accepted(1000), accepted(500)],
        "{run:?}"
    );
    // '-' reads stdin in place, beside ids given as arguments.
    let run = s
        .topk(&["send", "vid-e", "-", "vid-e"], Some("vid-b\n"))
        .await
        .ok();
    assert_eq!(run.stdout, "accepted 3 views in 1 batch\n");

    // Assert: every window ranks them, views descending.
    let want = [
        ("vid-c", 1500),
        ("vid-d", 700),
        ("vid-a", 302),
        ("vid-e", 2),
        ("vid-b", 2),
    ];
    for window in ["all", "hour"] {
        s.wait_for_ranking(window, &want, Duration::from_secs(15))
            .await;
        let json = s
            .topk(&["top", "--json", "--window", window, "-k", "1000"], None)
            .await
            .ok()
            .json();
        let want: serde_json::Value = want
            .iter()
            .map(|(v, n)| serde_json::json!({"videoId": v, "views": n}))
            .collect();
        assert_eq!(json, want, "{window}");
    }

    let run = s.topk(&["top", "-k", "3"], None).await.ok();
    let table: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        table[..4],
        [
            "rank  views  video",
            "   1  1,500  vid-c",
            "   2    700  vid-d",
            "   3    302  vid-a",
        ],
        "{run:?}"
    );
    // Then at most the line with the ranking's time, when the API sends one.
    assert!(
        table[4..].iter().all(|l| l.starts_with("as of ")),
        "{run:?}"
    );
    assert!(table.len() <= 5, "{run:?}");

    let run = s.topk(&["video", "vid-c"], None).await.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "video vid-c", "{run:?}");
    for (window, line) in ["hour", "day", "all"].iter().zip(&lines[3..]) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[..2], [*window, "1,500"], "{run:?}");
    }
    let json = s
        .topk(&["video", "vid-c", "--json"], None)
        .await
        .ok()
        .json();
    assert_eq!(json["videoId"], "vid-c");
    if json.get("rank").is_some() {
        // An API that ranks the video: a rank column, first in the hour.
        assert_eq!(lines[1].split_whitespace().last(), Some("rank"), "{run:?}");
        assert_eq!(lines[3].split_whitespace().nth(2), Some("1"), "{run:?}");
    }
    assert_eq!(
        (json["hour"].as_u64(), json["all"].as_u64()),
        (Some(1500), Some(1500))
    );

    let json = s
        .topk(&["video", "never-seen", "--json"], None)
        .await
        .ok()
        .json();
    assert_eq!(json["all"], 0);
}

/// An empty window says so rather than printing a bare header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_window_says_so() {
    let s = cli_stack("cli_empty").await;
    let run = s.topk(&["top", "--window", "day"], None).await.ok();
    assert_eq!(run.stdout.lines().next(), Some("no views in the last day"));
    assert_eq!(
        s.topk(&["top", "--json"], None).await.ok().json(),
        serde_json::json!([])
    );
}
