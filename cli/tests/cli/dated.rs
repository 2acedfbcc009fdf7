//! Past views sent with their time: `topk send --at` and a CSV on stdin (`topk send --csv`), counted in the
//! windows that hold their time, and a bad row or time refused naming its line.

use crate::run::{cli_stack, Cli};
use chrono::{Duration as Span, SecondsFormat, Utc};
use std::time::Duration;

/// `ago` before now, as RFC 3339.
fn at(ago: Span) -> String {
    (Utc::now() - ago).to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_views_count_at_their_own_time() {
    let s = cli_stack("cli_dated").await;

    // Arrange / Act: two views two hours ago with --at; a CSV of views two days, three hours and seconds ago.
    let two_hours = at(Span::hours(2));
    let run = s
        .topk(&["send", "--at", &two_hours, "hours", "hours"], None)
        .await
        .ok();
    assert_eq!(run.stdout, "accepted 2 views in 1 batch\n");
    let csv = format!(
        "video_id,at,count\n\
         days,{days},4\n\
         \n\
         seconds,{seconds}\n\
         days,{days},1\n\
         hours,{hours3},3\n",
        days = at(Span::days(2)),
        seconds = at(Span::seconds(5)),
        hours3 = at(Span::hours(3)),
    );
    let run = s
        .topk(&["send", "--csv", "--batch-size", "2"], Some(&csv))
        .await
        .ok();
    assert_eq!(run.stdout, "accepted 9 views in 2 batches\n", "{run:?}");

    // Assert: all time holds every view, the day all but the two days old, the hour only the recent one.
    let within = Duration::from_secs(15);
    s.wait_for_ranking("all", &[("hours", 5), ("days", 5), ("seconds", 1)], within)
        .await;
    s.wait_for_ranking("day", &[("hours", 5), ("seconds", 1)], within)
        .await;
    s.wait_for_ranking("hour", &[("seconds", 1)], within).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_time_or_row_is_refused_naming_it() {
    let s = cli_stack("cli_dated_bad").await;

    // A time the command line cannot read never leaves it.
    let run = s.topk(&["send", "--at", "yesterday", "a"], None).await;
    assert!(run.failed_with(2).contains("RFC 3339"), "{run:?}");

    // A malformed row stops the run at its line; the batches before it stay accepted.
    let csv = format!("a,{}\nb\n", at(Span::hours(1)));
    let run = s
        .topk(&["send", "--csv", "--batch-size", "1"], Some(&csv))
        .await;
    assert!(
        run.failed_with(1)
            .contains("line 2 of stdin: expected video_id,at"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("accepted before this failure: 1 view"),
        "{run:?}"
    );

    // A time in the future is the server's to refuse: its 400, and the line it came from.
    let ahead = (Utc::now() + Span::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let csv = format!("c,{}\nd,{ahead}\n", at(Span::hours(1)));
    let run = s.topk(&["send", "--csv"], Some(&csv)).await;
    assert!(run.failed_with(1).contains("in the future"), "{run:?}");
    assert!(
        run.stderr.contains("element 1 is line 2 of stdin (\"d\")"),
        "{run:?}"
    );

    // --csv takes its views from stdin alone.
    let run = s.topk(&["send", "--csv", "a"], Some("")).await;
    assert!(
        run.failed_with(1).contains("--csv reads every view"),
        "{run:?}"
    );
}
