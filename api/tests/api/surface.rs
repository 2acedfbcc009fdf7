//! What a client of the API sees besides the ranking itself, on a real API over real Redis and Postgres:
//! `Topk-As-Of` and `Cache-Control` on rankings, gzip for large answers, CORS for the listed origins only,
//! Swagger UI served from the binary, a video's ranks, and its views per hour from history.

use clap::Parser;
use reqwest::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::domain::{RankedVideo, VideoId};
use topk_core::redis::RedisStore;
use topk_testkit::fixtures::{apply_log, migrated_pool_at, redis_config, store_for};

struct Api {
    addr: SocketAddr,
    store: RedisStore,
    db: sqlx::PgPool,
    http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Api {
    /// An API on a deployment of its own (3 partitions, a migrated database), with `extra` flags.
    async fn start(label: &str, extra: &[&str]) -> Self {
        let redis = redis_config(label, 3);
        let store = store_for(&redis).await;
        let database = topk_testkit::fresh_database(label);
        let db = migrated_pool_at(&database).await;
        let mut args = vec![
            "topk-api".to_owned(),
            format!("--redis-url={}", redis.redis_url),
            format!("--key-prefix={}", redis.key_prefix),
            "--partitions=3".to_owned(),
            "--addr=127.0.0.1:0".to_owned(),
            format!("--database-url={database}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let app = topk_api::Application::build(
            topk_api::config::ApiConfig::try_parse_from(args).unwrap(),
        )
        .await
        .unwrap();
        let addr = app.local_addr();
        let stop = CancellationToken::new();
        tokio::spawn(app.run(stop.clone()));
        Self {
            addr,
            store,
            db,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            stop,
        }
    }

    async fn add(&self, views: &[(&str, u64)]) {
        let batch: Vec<(VideoId, u64)> = views
            .iter()
            .map(|(v, n)| (VideoId::parse(v).unwrap(), *n))
            .collect();
        self.store.writer().append(&batch).await.unwrap();
        apply_log(&self.store, "w", 1000).await;
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("http://{}{path}", self.addr))
    }

    /// The answer to `GET path` with `headers`.
    async fn response(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// `GET path`'s body as JSON.
    async fn json(&self, path: &str) -> Value {
        self.response(path, &[]).await.json().await.unwrap()
    }
}

/// A ranking says when it was read (RFC 3339 with milliseconds, within the cache's age of now) and how long
/// caches may keep it; a large answer is gzipped for a client that accepts it, a small one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rankings_say_their_age_and_large_answers_are_compressed() {
    let api = Api::start("age", &["--ranking-cache-ms=2500"]).await;
    let many: Vec<(String, u64)> = (0..1000)
        .map(|i| (format!("video-{i:04}"), 1 + i))
        .collect();
    let many: Vec<(&str, u64)> = many.iter().map(|(v, n)| (v.as_str(), *n)).collect();
    api.add(&many).await;

    let before = chrono::Utc::now();
    let r = api.response("/v1/topk?window=all&k=3", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let as_of = r.headers()["topk-as-of"].to_str().unwrap().to_owned();
    assert_eq!(as_of.len(), "2026-12-02T01:02:03.456Z".len(), "{as_of}");
    let at = chrono::DateTime::parse_from_rfc3339(&as_of).unwrap();
    let lag = (at.with_timezone(&chrono::Utc) - before).num_milliseconds();
    assert!(
        (-50..5_000).contains(&lag),
        "as of {as_of}, asked at {before}"
    );
    assert_eq!(r.headers()["cache-control"], "public, max-age=2");
    // Served from the shared ranking: the same moment.
    let again = api.response("/view/video?window=all&k=3", &[]).await;
    assert_eq!(again.headers()["topk-as-of"].to_str().unwrap(), as_of);

    let plain = api.response("/v1/topk?window=all&k=1000", &[]).await;
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_len = plain.bytes().await.unwrap().len();
    let gzipped = api
        .response("/v1/topk?window=all&k=1000", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let gzipped_len = gzipped.bytes().await.unwrap().len();
    assert!(
        gzipped_len * 3 < plain_len,
        "{gzipped_len} of {plain_len} bytes"
    );
    let small = api
        .response("/v1/topk?window=all&k=1", &[("accept-encoding", "gzip")])
        .await;
    assert!(
        small.headers().get("content-encoding").is_none(),
        "a tiny answer is sent as is"
    );
}

/// The hour's ranking asked for by a page on `origin`.
async fn ranking_from(origin: &str, api: &Api) -> reqwest::Response {
    api.response("/v1/topk?window=hour", &[("origin", origin)])
        .await
}

/// Browsers on a listed origin may read rankings (and `Topk-As-Of`); other origins get no CORS grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_grants_only_the_listed_origins() {
    let api = Api::start(
        "cors",
        &["--cors-origins=https://dash.example.com,http://localhost:3000"],
    )
    .await;
    let listed = ranking_from("https://dash.example.com", &api).await;
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://dash.example.com"
    );
    let exposed = listed.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("topk-as-of"), "{exposed}");
    let other = ranking_from("https://evil.example", &api).await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let preflight = api
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/v1/topk", api.addr),
        )
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );

    // Without the setting, no origin is granted.
    let closed = Api::start("cors-off", &[]).await;
    let r = ranking_from("https://dash.example.com", &closed).await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A malformed origin is refused when the settings are read.
    let bad = topk_api::config::ApiConfig::try_parse_from([
        "topk-api",
        "--cors-origins=dash.example.com/x",
    ]);
    assert!(bad.unwrap_err().to_string().contains("TOPK_CORS_ORIGINS"));
}

/// Swagger UI is served at /docs from the binary: its page, script and style, pointing at /openapi.json.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_is_served_from_the_binary() {
    let api = Api::start("docs", &[]).await;
    let page = api.response("/docs/", &[]).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    // The page's own scripts and styles come from this server, never another host.
    assert!(
        !html.contains("https://"),
        "an outside asset in the page: {html}"
    );
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
    ] {
        let r = api.response(asset, &[]).await;
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        let body = r.text().await.unwrap();
        assert!(body.len() > 100, "{asset} is empty");
        if asset.ends_with("initializer.js") {
            assert!(body.contains("/openapi.json"), "{body}");
        }
    }
    // Never framed by another page (clickjacking), scripts from this server only.
    for path in ["/docs/", "/docs/swagger-initializer.js"] {
        let r = api.response(path, &[]).await;
        let csp = r
            .headers()
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp:?}");
        assert!(csp.contains("script-src 'self';"), "{path}: {csp:?}");
        assert!(!csp.contains("unsafe-eval"), "{path}: {csp:?}");
    }
    let doc: Value = api.json("/openapi.json").await;
    assert!(doc["paths"]["/v1/videos/{videoId}/hourly"].is_object());
    assert_eq!(
        crate::names(&doc["tags"]),
        ["rankings", "videos", "history", "health"]
    );
}

/// A video's answer has its rank in each window's top 1000 (null elsewhere), and its views per hour come
/// from history: every hour of the last day, oldest first, zero where none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_has_its_ranks_and_its_hours() {
    let api = Api::start("video", &["--ranking-cache-ms=0"]).await;
    api.add(&[("alpha", 30), ("beta", 20), ("gamma", 10)]).await;
    let beta: Value = api.json("/v1/videos/beta").await;
    assert_eq!(beta["all"], 20);
    assert_eq!(beta["rank"]["all"], 2);
    assert_eq!(beta["rank"]["minute"], 2);
    let unknown: Value = api.json("/v1/videos/nobody").await;
    assert_eq!(unknown["all"], 0);
    assert_eq!(
        unknown["rank"],
        serde_json::json!({"minute": null, "hour": null, "day": null, "all": null})
    );

    // History: alpha had 7 views a minute ago and 5 three hours ago; beta 4 a minute ago.
    let now = chrono::Utc::now().timestamp_millis() / 60_000;
    let row = |v: &str, n| RankedVideo {
        video_id: v.into(),
        views: n,
    };
    topk_core::db::write_minutes(
        &api.db,
        0,
        &[
            (now - 180, vec![row("alpha", 5)]),
            (now - 1, vec![row("alpha", 7), row("beta", 4)]),
        ],
        now - 1,
    )
    .await
    .unwrap();
    let hourly: Value = api.json("/v1/videos/alpha/hourly").await;
    let hours = hourly["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    let hour_of = |minute: i64| {
        let t = chrono::DateTime::from_timestamp(minute / 60 * 3600, 0).unwrap();
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let views_at = |hour: &str| {
        hours
            .iter()
            .find(|h| h["hour"].as_str() == Some(hour))
            .map(|h| h["views"].as_u64().unwrap())
    };
    assert_eq!(views_at(&hour_of(now - 1)), Some(7), "{hourly}");
    assert_eq!(views_at(&hour_of(now - 180)), Some(5), "{hourly}");
    let total: u64 = hours.iter().map(|h| h["views"].as_u64().unwrap()).sum();
    assert_eq!(total, 12);
    let sorted = hours
        .windows(2)
        .all(|w| w[0]["hour"].as_str() < w[1]["hour"].as_str());
    assert!(sorted, "oldest first: {hourly}");
    let week: Value = api.json("/v1/videos/alpha/hourly?hours=168").await;
    assert_eq!(week["hours"].as_array().unwrap().len(), 168);
    for bad in [
        "/v1/videos/alpha/hourly?hours=0",
        "/v1/videos/alpha/hourly?hours=169",
        "/v1/videos/a%20b/hourly",
    ] {
        let r = api.response(bad, &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// Every error is JSON, also those of routes and extractors the API does not write itself: a path that is
/// not valid percent-encoded UTF-8, a file Swagger UI does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json() {
    let api = Api::start("json_errors", &[]).await;
    for (path, status) in [
        ("/v1/videos/%ff", StatusCode::BAD_REQUEST),
        ("/v1/videos/%ff/hourly", StatusCode::BAD_REQUEST),
        ("/assets/%ff", StatusCode::BAD_REQUEST),
        ("/docs/%ff", StatusCode::BAD_REQUEST),
        ("/docs/nope.js", StatusCode::NOT_FOUND),
        ("/nope", StatusCode::NOT_FOUND),
    ] {
        let r = api.response(path, &[]).await;
        assert_eq!(r.status(), status, "{path}");
        let content_type = r.headers().get("content-type").cloned();
        let body = r.text().await.unwrap();
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{path}: {body:?}"
        );
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
}
