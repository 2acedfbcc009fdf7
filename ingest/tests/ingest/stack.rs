//! A [`Stack`]: ingest and the API in this process on free ports, isolated by a key prefix.

use clap::Parser;
use reqwest::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_core::domain::Window;
use topk_core::redis::RedisStore;

pub const TOKEN: &str = "test-token";

pub struct Stack {
    partitions: u16,
    pub store: RedisStore,
    pub ingest: SocketAddr,
    pub api: SocketAddr,
    stop: CancellationToken,
    pub http: reqwest::Client,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn env_args(redis_url: &str, prefix: &str, partitions: u16, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "topk".to_owned(),
        format!("--redis-url={redis_url}"),
        format!("--key-prefix={prefix}"),
        format!("--partitions={partitions}"),
        "--addr=127.0.0.1:0".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Starts ingest (in the given role) and the API in this process on free ports, isolated by a key prefix.
pub async fn stack(label: &str, partitions: u16, ingest_extra: &[&str]) -> Stack {
    stack_on(
        &topk_testkit::servers().redis_url,
        label,
        partitions,
        ingest_extra,
    )
    .await
}

/// [`stack`] on a given Redis (a `redis-cluster://` URL for a cluster).
pub async fn stack_on(
    redis_url: &str,
    label: &str,
    partitions: u16,
    ingest_extra: &[&str],
) -> Stack {
    let prefix = topk_testkit::unique_name(label);
    let stop = CancellationToken::new();
    let mut ingest_args = env_args(redis_url, &prefix, partitions, ingest_extra);
    ingest_args.push(format!("--token={TOKEN}"));
    ingest_args.push("--retire-interval-ms=50".into());
    let ingest_cfg = topk_ingest::config::IngestConfig::try_parse_from(ingest_args).unwrap();
    let store = RedisStore::connect(&ingest_cfg.redis).await.unwrap();
    let ingest = topk_ingest::Application::build(ingest_cfg).await.unwrap();
    let ingest_addr = ingest.local_addr().unwrap();
    tokio::spawn(ingest.run(stop.clone()));
    // The API is ready only with a migrated database (history reads it).
    let database = topk_testkit::fresh_database(label);
    topk_testkit::fixtures::migrated_pool_at(&database).await;
    let api_cfg = topk_api::config::ApiConfig::try_parse_from(env_args(
        redis_url,
        &prefix,
        partitions,
        &[&format!("--database-url={database}")],
    ))
    .unwrap();
    let api = topk_api::Application::build(api_cfg).await.unwrap();
    let api_addr = api.local_addr();
    tokio::spawn(api.run(stop.clone()));
    Stack {
        partitions,
        store,
        ingest: ingest_addr,
        api: api_addr,
        stop,
        http: reqwest::Client::new(),
    }
}

impl Stack {
    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        token: Option<&str>,
        content_type: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("http://{}/v1/views", self.ingest))
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn post(&self, views: &Value) -> (StatusCode, Value) {
        self.post_raw(views.to_string(), Some(TOKEN), Some("application/json"))
            .await
    }

    /// Posts `views` under an `Idempotency-Key`.
    pub async fn post_with_key(&self, views: &Value, key: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("http://{}/v1/views", self.ingest))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(views.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("http://{}{path}", self.api))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    async fn ranking(&self, window: &str) -> Vec<(String, u64)> {
        let (status, body) = self.get(&format!("/v1/topk?window={window}&k=1000")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["videoId"].as_str().unwrap().to_owned(),
                    r["views"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Polls until `window`'s ranking equals `want`, or panics after `within`.
    pub async fn wait_for(&self, window: &str, want: &[(&str, u64)], within: Duration) -> Duration {
        let want: Vec<(String, u64)> = want.iter().map(|(v, n)| (v.to_string(), *n)).collect();
        let started = Instant::now();
        loop {
            let got = self.ranking(window).await;
            if got == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "{window}: got {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Total views held anywhere in Redis for this stack: log entries and every window.
    pub async fn state_fingerprint(&self) -> (u64, Vec<Vec<(String, u64)>>) {
        let mut backlog = 0;
        let mut windows = Vec::new();
        for p in 0..self.partitions {
            backlog += self.store.log_state().log_backlog(p).await.unwrap();
            for w in Window::ALL {
                let mut c: Vec<(String, u64)> = self
                    .store
                    .recovery()
                    .window_counts(p, w)
                    .await
                    .unwrap()
                    .into_iter()
                    .collect();
                c.sort();
                windows.push(c);
            }
        }
        (backlog, windows)
    }
}
