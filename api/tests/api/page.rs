//! The leaderboard page in a real headless Chromium, against a real stack: views posted over HTTP to ingest,
//! the page served by the API, its script run by the browser, and the DOM it built read back.

use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use reqwest::StatusCode;
use std::path::PathBuf;
use std::time::Duration;
use topk_testkit::chromium::{self, Load};
use topk_testkit::stack::TOKEN;
use topk_testkit::{wait_until, Stack};

/// The page with the ranking of the hour and alpha's details open: three rows in order with their views
/// formatted, the as-of time, and the detail panel's counts. The hourly history is not asserted: the API
/// may not have it (the panel then says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_ranking_and_a_videos_details() {
    // Chromium first: the minute window asserted below must still hold the views posted next when the
    // page loads.
    let s = with_chromium("page").await;
    let ranked = [("alpha", 1234), ("beta", 20), ("gamma", 10)];
    s.post_views(&ranked).await;
    s.wait_for_ranking("hour", &ranked, Duration::from_secs(10))
        .await;

    let dom = load(&s, "/?window=hour#video=alpha").await;

    let shown = ranking_rows(&dom);
    assert_eq!(
        shown,
        [
            ["1", "alpha", "1,234"],
            ["2", "beta", "20"],
            ["3", "gamma", "10"]
        ],
        "{dom}"
    );
    assert!(
        dom.contains(r#"data-window="hour" aria-selected="true""#),
        "the hour tab is selected: {dom}"
    );
    assert!(
        text_of(&dom, "asof").starts_with("as of "),
        "as-of time: {dom}"
    );
    assert_eq!(text_of(&dom, "live"), "live", "{dom}");
    assert_eq!(text_of(&dom, "error"), "", "{dom}");

    assert!(!dom.contains(r#"id="detail" class="detail" aria-labelledby="detail-title" hidden"#));
    assert_eq!(text_of(&dom, "detail-id"), "alpha");
    let counts = table_rows(&dom, "detail-rows");
    let views: Vec<(&str, &str)> = counts
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(
        views,
        [
            ("Last minute", "1,234"),
            ("Last hour", "1,234"),
            ("Last day", "1,234"),
            ("All time", "1,234")
        ],
        "{dom}"
    );
    let history = text_of(&dom, "hourly-summary");
    assert!(
        history == "History unavailable." || history.contains("views"),
        "the hourly history settles either way: {history:?}"
    );

    // A window and k from the URL; an id that is markup stays text.
    let dom = load(&s, "/?window=all&k=1000#video=%3Cb%3Ex%3C%2Fb%3E").await;
    assert_eq!(table_rows(&dom, "rows").len(), 3, "{dom}");
    assert!(
        dom.contains(r#"<option selected="">1000</option>"#),
        "{dom}"
    );
    assert_eq!(text_of(&dom, "caption"), "Most viewed of all time");
    assert_eq!(text_of(&dom, "detail-id"), "&lt;b&gt;x&lt;/b&gt;");
    assert!(!dom.contains("<b>x</b>"), "{dom}");
    // The API's refusal of that id, in its own words.
    let refused = text_of(&dom, "detail-error");
    assert!(
        refused.starts_with("Could not load the counts: 400: "),
        "{refused:?}"
    );

    if std::env::var("TOPK_SCREENSHOT").as_deref() == Ok("1") {
        screenshot(&s).await;
    }
}

/// The past range view, opened by its URL: the ranking of the range from history (no movement column), the
/// range's tab selected, its moments in the form and the caption; a preset kept relative in the URL; an
/// empty range says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_past_range_view_shows_the_ranking_of_a_range() {
    let s = with_chromium("page_range").await;
    let row = |v: &str, n: u64| topk_core::domain::RankedVideo {
        video_id: v.into(),
        views: n,
    };
    // 2026-11-01T10:15Z, and two days before now.
    let past = 1_793_491_200 / 60 + 615;
    let recent = chrono::Utc::now().timestamp() / 60 - 2 * 1440;
    let writes = vec![
        (past, vec![row("alpha", 1234), row("beta", 20)]),
        (recent, vec![row("gamma", 50), row("alpha", 7)]),
    ];
    topk_core::db::write_minutes(&s.db, 0, &writes, recent)
        .await
        .unwrap();

    let dom = load(&s, "/?from=2026-11-01T00:00:00Z&to=2026-11-02&k=20").await;
    let shown = ranking_rows(&dom);
    assert_eq!(
        shown,
        [["1", "alpha", "1,234"], ["2", "beta", "20"]],
        "{dom}"
    );
    assert!(
        dom.contains(r#"data-window="range" aria-selected="true""#),
        "the range tab is selected: {dom}"
    );
    assert!(
        dom.contains(r#"<table id="ranking" class="past">"#),
        "{dom}"
    );
    assert!(!dom.contains(r#"id="range-form" class="range-form" aria-label="Past range" hidden"#));
    assert!(
        text_of(&dom, "caption").starts_with("Most viewed from "),
        "{dom}"
    );
    assert_eq!(text_of(&dom, "live"), "history", "{dom}");
    assert_eq!(text_of(&dom, "error"), "", "{dom}");
    if chrono::Local::now().offset().local_minus_utc() == 0 {
        assert!(dom.contains(r#"value="2026-11-01T00:00""#), "{dom}");
        assert!(dom.contains(r#"value="2026-11-02T00:00""#), "{dom}");
    }

    // A preset, relative to now: the last 7 days hold only the recent minute.
    let dom = load(&s, "/?range=last-7-days&k=10").await;
    let rows = table_rows(&dom, "rows");
    let videos: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(videos, ["gamma", "alpha"], "{dom}");

    let dom = load(&s, "/?from=2020-01-01&to=2020-01-02").await;
    assert!(table_rows(&dom, "rows").is_empty(), "{dom}");
    assert!(
        dom.contains(r#"<p id="empty" class="empty">No views in this range.</p>"#),
        "{dom}"
    );
}

/// The page's headers: a strict CSP, no caching of the HTML, the script as JavaScript; unknown assets 404.
#[tokio::test]
async fn the_page_and_its_assets_have_their_headers() {
    let s = Stack::start("page_headers").await;
    let get = |path: &str| s.http.get(format!("http://{}{path}", s.api)).send();

    let page = get("/").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let header = |name| page.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header(CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(CACHE_CONTROL), "no-cache");
    let csp = header(CONTENT_SECURITY_POLICY);
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "never framed: {csp}"
    );
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );

    let script = get("/assets/app.js").await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    let content_type = script.headers()[CONTENT_TYPE].to_str().unwrap();
    assert!(
        content_type.starts_with("text/javascript")
            || content_type.starts_with("application/javascript"),
        "{content_type}"
    );
    assert!(script.headers()[CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("max-age"));
    for (asset, kind) in [
        ("range.js", "text/javascript"),
        ("style.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let response = get(&format!("/assets/{asset}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    let missing = get("/assets/nope.js").await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
}

/// Swagger UI still works under its Content-Security-Policy: in Chromium, `/docs/` loads the OpenAPI
/// document and renders an operation of each route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_renders_under_its_policy() {
    let s = with_chromium("docs_csp").await;
    let dom = load(&s, "/docs/").await;
    assert!(dom.contains("opblock-summary-path"), "{dom}");
    for route in [
        "/v1/topk",
        "/view/video",
        "/v1/videos/{videoId}",
        "/healthz",
    ] {
        assert!(
            dom.contains(&format!(r#"data-path="{route}""#)),
            "{route} not rendered: {dom}"
        );
    }
}

/// Chromium ready (installed when missing, which can take a minute), then a stack of its own under `label`.
async fn with_chromium(label: &str) -> Stack {
    tokio::task::spawn_blocking(chromium::chromium)
        .await
        .unwrap();
    Stack::start(label).await
}

/// Loads `path` of the stack's API in Chromium and returns the DOM the page built. Chromium blocks, so it
/// runs off the runtime's threads: the servers it talks to run on them.
async fn load(s: &Stack, path: &str) -> String {
    let url = format!("http://{}{path}", s.api);
    let started = std::time::Instant::now();
    let dom = tokio::task::spawn_blocking(move || chromium::dump_dom(&url, Load::default()))
        .await
        .unwrap();
    eprintln!("chromium: {path} in {:.1?}", started.elapsed());
    dom
}

/// `docs/leaderboard.png`, with enough videos to look like the real thing, and one video's details open.
/// Views keep arriving while the page polls, so some rows show a movement.
async fn screenshot(s: &Stack) {
    let videos: Vec<String> = (0..25).map(|i| format!("video-{:02}", i + 1)).collect();
    let batch: Vec<(&str, u64)> = videos
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), 40_000 / (i as u64 + 1) + 7 * i as u64))
        .collect();
    s.post_views(&batch).await;
    // A day of history for the open video: one written minute per hour, as the snapshotter would leave it.
    let now = chrono::Utc::now().timestamp() / 60;
    let minutes: Vec<(i64, Vec<topk_core::domain::RankedVideo>)> = (1..24i64)
        .rev()
        .map(|h| {
            let views = 300 + (h * 37 % 11) as u64 * 60 + (24 - h as u64) * 25;
            let row = topk_core::domain::RankedVideo {
                video_id: "video-03".into(),
                views,
            };
            (now - h * 60, vec![row])
        })
        .collect();
    topk_core::db::write_minutes(&s.db, 0, &minutes, now - 60)
        .await
        .unwrap();
    let keep_posting = {
        let http = s.http.clone();
        let ingest = s.ingest;
        let videos = videos.clone();
        tokio::spawn(async move {
            for round in 0u64.. {
                let video = &videos[(round * 7 % 25) as usize];
                let body = serde_json::json!([{"videoId": video, "count": 900 + round * 13 % 700}]);
                let _ = http
                    .post(format!("http://{ingest}/v1/views"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    // The page opens once the whole batch ranks (the stream's views then keep moving rows).
    wait_until("the batch to rank", Duration::from_secs(10), || async {
        let rows = s.ranking("hour").await?;
        match rows.len() >= videos.len() {
            true => Ok(()),
            false => Err(format!("{} rows", rows.len())),
        }
    })
    .await;
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/leaderboard.png");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let url = format!("http://{}/?window=hour&k=20#video=video-03", s.api);
    tokio::task::spawn_blocking(move || {
        chromium::screenshot(
            &url,
            Load {
                virtual_ms: 4_000,
                ..Load::default()
            },
            &file,
        )
    })
    .await
    .unwrap();
    keep_posting.abort();
}

/// The ranking table's rank, video and views cells, row by row.
fn ranking_rows(dom: &str) -> Vec<[String; 3]> {
    table_rows(dom, "rows")
        .into_iter()
        .map(|r| [r[0].clone(), r[1].clone(), r[2].clone()])
        .collect()
}

/// The cells' text of each row of the `<tbody>` with this id, tags stripped and entities left as they are.
fn table_rows(dom: &str, tbody_id: &str) -> Vec<Vec<String>> {
    let start = dom
        .find(&format!(r#"<tbody id="{tbody_id}">"#))
        .unwrap_or_else(|| panic!("no tbody {tbody_id}: {dom}"));
    let body = &dom[start..];
    let body = &body[..body.find("</tbody>").expect("a closed tbody")];
    body.split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<t")
                .skip(1)
                .filter(|cell| cell.starts_with('d') || cell.starts_with('h'))
                .map(|cell| visible_text(&cell[cell.find('>').unwrap() + 1..]))
                .collect()
        })
        .collect()
}

/// The text of the element with this id (its first closing tag ends it; enough for this page's leaves).
fn text_of(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no #{id}: {dom}"));
    let rest = &dom[start..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    let end = rest.find("</").unwrap_or(rest.len());
    // Nested elements (the as-of <time>) end later: take up to the closing tag of the element's own name.
    let inner = if rest[..end].contains('<') {
        &rest[..rest.find("</span>").unwrap_or(rest.len())]
    } else {
        &rest[..end]
    };
    visible_text(inner)
}

/// Text with tags removed, and what is there only for screen readers (`sr-only`) dropped.
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let tag_end = rest[open..].find('>').map_or(rest.len(), |i| open + i + 1);
        let tag = &rest[open..tag_end];
        rest = &rest[tag_end..];
        if tag.contains("sr-only") {
            rest = &rest[rest.find("</").unwrap_or(rest.len())..];
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}
