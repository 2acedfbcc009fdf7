//! A [`Stack`]: ingest and the API in this process on free ports, on the shared Redis (isolated by a key
//! prefix) and a freshly migrated database, so a test can post views over HTTP and read what the API serves.

use clap::Parser;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The ingest token of every stack.
const TOKEN: &str = "test-token";

pub struct Stack {
    pub ingest: SocketAddr,
    pub api: SocketAddr,
    pub http: reqwest::Client,
    /// The API's database (migrated), for tests that write history.
    pub db: sqlx::PgPool,
    stop: CancellationToken,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn args(prefix: &str, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        "topk".to_owned(),
        format!("--redis-url={}", topk_testkit::servers().redis_url),
        format!("--key-prefix={prefix}"),
        "--partitions=2".to_owned(),
        "--addr=127.0.0.1:0".to_owned(),
    ];
    args.extend_from_slice(extra);
    args
}

/// Starts ingest (receiver and workers) and the API.
pub async fn stack(label: &str) -> Stack {
    let prefix = topk_testkit::unique_name(label);
    let stop = CancellationToken::new();
    let ingest_cfg = topk_ingest::config::IngestConfig::try_parse_from(args(
        &prefix,
        &[format!("--token={TOKEN}"), "--retire-interval-ms=50".into()],
    ))
    .unwrap();
    let ingest = topk_ingest::Application::build(ingest_cfg).await.unwrap();
    let ingest_addr = ingest.local_addr().unwrap();
    tokio::spawn(ingest.run(stop.clone()));
    let database = topk_testkit::fresh_database(label);
    let db = topk_testkit::fixtures::migrated_pool_at(&database).await;
    let api_cfg = topk_api::config::ApiConfig::try_parse_from(args(
        &prefix,
        &[format!("--database-url={database}")],
    ))
    .unwrap();
    let api = topk_api::Application::build(api_cfg).await.unwrap();
    let api_addr = api.local_addr();
    tokio::spawn(api.run(stop.clone()));
    Stack {
        ingest: ingest_addr,
        api: api_addr,
        http: reqwest::Client::new(),
        db,
        stop,
    }
}

impl Stack {
    /// Posts `count` views of each video over HTTP, as a client would.
    pub async fn post(&self, views: &[(&str, u64)]) {
        let body: Vec<Value> = views
            .iter()
            .map(|(video, count)| json!({"videoId": video, "count": count}))
            .collect();
        let response = self
            .http
            .post(format!("http://{}/v1/views", self.ingest))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// Polls until `window`'s top `want.len()` is `want`, or panics after `within`.
    pub async fn wait_for(&self, window: &str, want: &[(&str, u64)], within: Duration) {
        let want: Vec<(String, u64)> = want.iter().map(|(v, n)| (v.to_string(), *n)).collect();
        let started = Instant::now();
        loop {
            let url = format!("http://{}/v1/topk?window={window}&k=1000", self.api);
            let body: Value = self
                .http
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let got: Vec<(String, u64)> = body
                .as_array()
                .unwrap_or(&Vec::new())
                .iter()
                .map(|r| {
                    (
                        r["videoId"].as_str().unwrap().to_owned(),
                        r["views"].as_u64().unwrap(),
                    )
                })
                .collect();
            if got == want {
                return;
            }
            assert!(
                started.elapsed() < within,
                "{window}: got {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
