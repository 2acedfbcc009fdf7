//! `GET /v1/topk/range` on a real API over a real Postgres: minute rows written as the snapshotter writes them,
//! the period totals added, the answer exact; rounded to the hour once its history is rolled up; a JSON 400
//! for every bad query; and the route in the OpenAPI document with its examples.

use chrono::{DateTime, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use topk_core::db::retention::{maintain, RetentionPolicy};
use topk_core::domain::RankedVideo;
use topk_testkit::Stack;

/// Minutes since the epoch of a UTC time.
fn minute(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp()
        / 60
}

async fn get(s: &Stack, query: &str) -> (StatusCode, Value) {
    let r = s
        .http
        .get(format!("http://{}/v1/topk/range?{query}", s.api))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_is_summed_from_history_and_rounded_where_rolled_up() {
    let s = Stack::start("range_route").await;
    let row = |v: &str, n: u64| RankedVideo {
        video_id: v.into(),
        views: n,
    };
    // Arrange: partition 0 writes four minutes, partition 1 none; both are through 09:00 on the 2nd.
    let through = minute(2026, 11, 2, 9, 0);
    let writes = vec![
        (minute(2026, 11, 1, 10, 15), vec![row("a", 5), row("b", 4)]),
        (minute(2026, 11, 1, 10, 16), vec![row("a", 3)]),
        (minute(2026, 11, 1, 11, 30), vec![row("a", 2)]),
        (through, vec![row("c", 20)]),
    ];
    topk_core::db::write_minutes(&s.db, 0, &writes, through)
        .await
        .unwrap();
    topk_core::db::write_minutes(&s.db, 1, &[], through)
        .await
        .unwrap();
    let closed =
        topk_core::db::periods::close_periods(&s.db, 2, std::time::Duration::from_secs(60))
            .await
            .unwrap();
    assert_eq!(closed.days, 1, "{closed:?}");

    // Act and assert: a range through a whole day's and hours' totals and minute edges.
    let (status, body) = get(&s, "from=2026-11-01T10:15:30Z&to=2026-11-02T09:01:00Z&k=5").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "from": "2026-11-01T10:15:00Z",
            "to": "2026-11-02T09:01:00Z",
            "historyThrough": "2026-11-02T09:00:00Z",
            "resolution": "minute",
            "videos": [
                {"videoId": "c", "views": 20},
                {"videoId": "a", "views": 10},
                {"videoId": "b", "views": 4}
            ]
        })
    );
    // Dates, k, and an offset.
    let (_, body) = get(&s, "from=2026-11-01&to=2026-11-02&k=1").await;
    assert_eq!(body["videos"], json!([{"videoId": "a", "views": 10}]));
    let (_, body) = get(
        &s,
        "from=2026-11-01T11:16:00%2B01:00&to=2026-11-01T11:00:00Z",
    )
    .await;
    assert_eq!(
        body["videos"],
        json!([{"videoId": "a", "views": 3}]),
        "{body}"
    );

    // The 1st rolled up to hours: the same minutes are summed over their whole hour, and the answer says so.
    let policy = RetentionPolicy {
        hourly_after_days: 1,
        daily_after_days: 2,
        drop_after_days: 0,
    };
    let now: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 11, 3, 12, 0, 0).unwrap();
    maintain(&s.db, now, policy).await.unwrap();
    let (status, body) = get(&s, "from=2026-11-01T10:16:00Z&to=2026-11-01T10:17:00Z").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["from"], &body["to"], &body["resolution"]),
        (
            &json!("2026-11-01T10:00:00Z"),
            &json!("2026-11-01T11:00:00Z"),
            &json!("hour")
        ),
        "{body}"
    );
    assert_eq!(
        body["videos"],
        json!([{"videoId": "a", "views": 8}, {"videoId": "b", "views": 4}])
    );
    // Before any history: empty, and history says nothing yet about it.
    let (_, body) = get(&s, "from=2020-01-01&to=2020-01-02").await;
    assert_eq!(body["videos"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ranges_get_a_json_400_and_the_route_is_documented() {
    let s = Stack::start("range_bad").await;
    for bad in [
        "",
        "from=2026-11-01",
        "from=2026-11-02&to=2026-11-01",
        "from=2026-11-01T10:15:01Z&to=2026-11-01T10:15:59Z",
        "from=last+week&to=2026-11-01",
        "from=2026-11-01&to=2026-11-02&k=0",
        "from=2026-11-01&to=2026-11-02&k=1001",
    ] {
        let (status, body) = get(&s, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert!(body["error"].is_string(), "{bad:?}: {body}");
    }
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let route = &doc["paths"]["/v1/topk/range"]["get"];
    assert_eq!(route["tags"], json!(["history"]), "{route}");
    assert_eq!(crate::names(&route["parameters"]), ["from", "to", "k"]);
    for status in ["200", "400", "503"] {
        assert!(route["responses"][status].is_object(), "{status}: {route}");
    }
    let schema = &doc["components"]["schemas"]["RangeRanking"];
    assert_eq!(schema["example"]["resolution"], "minute", "{schema}");
}
