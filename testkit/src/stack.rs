//! One deployment in the test's own process (zero2prod's `spawn_app`): `topk-ingest` (every role: receiver,
//! workers, retirer) and `topk-api` on free loopback ports, on a Redis under a key prefix of their own and a
//! fresh migrated database, stopped when the [`Stack`] is dropped; and the ranking poller tests wait with.

use crate::fixtures::migrated_pool_at;
use crate::process::unique_name;
use crate::servers::{fresh_database, servers};
use crate::wait::wait_until;
use clap::Parser;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use topk_core::domain::Window;
use topk_core::redis::RedisStore;

/// The ingest token of every stack.
pub const TOKEN: &str = "test-token";

/// How a [`Stack`] starts: [`Stack::builder`], options, then [`StackBuilder::start`].
#[derive(Debug, Clone)]
pub struct StackBuilder {
    label: String,
    redis_url: Option<String>,
    partitions: u16,
    ingest_args: Vec<String>,
}

impl StackBuilder {
    /// Runs on the Redis at `url` (a `redis-cluster://` URL for a cluster) instead of the shared one.
    pub fn redis_url(mut self, url: &str) -> Self {
        self.redis_url = Some(url.to_owned());
        self
    }

    /// The deployment's partition count (2 unless set).
    pub fn partitions(mut self, partitions: u16) -> Self {
        self.partitions = partitions;
        self
    }

    /// Command-line arguments for ingest besides the stack's own (`--max-batch-len=5`, `--wait-replicas=1`).
    pub fn ingest_args(mut self, args: &[&str]) -> Self {
        self.ingest_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Starts ingest, then the API on a freshly migrated database (the API's history reads it).
    pub async fn start(self) -> Stack {
        crate::log_capture::init_test_log();
        let redis_url = self
            .redis_url
            .unwrap_or_else(|| servers().redis_url.clone());
        let prefix = unique_name(&self.label);
        let shared = |extra: &[String]| {
            let mut args = vec![
                "topk".to_owned(),
                format!("--redis-url={redis_url}"),
                format!("--key-prefix={prefix}"),
                format!("--partitions={}", self.partitions),
                "--addr=127.0.0.1:0".to_owned(),
            ];
            args.extend_from_slice(extra);
            args
        };
        // Workers retire often, so a view leaving the minute window shows within a test's patience.
        let mut ingest_args = vec![
            format!("--token={TOKEN}"),
            "--retire-interval-ms=50".to_owned(),
        ];
        ingest_args.extend(self.ingest_args);
        let ingest_cfg =
            topk_ingest::config::IngestConfig::try_parse_from(shared(&ingest_args)).unwrap();
        let store = RedisStore::connect(&ingest_cfg.redis)
            .await
            .expect("connect the stack's store");
        let stop = CancellationToken::new();
        let ingest = topk_ingest::Application::build(ingest_cfg).await.unwrap();
        let ingest_addr = ingest.local_addr().expect("role all serves views");
        tokio::spawn(ingest.run(stop.clone()));
        let database_url = fresh_database(&self.label);
        let db = migrated_pool_at(&database_url).await;
        let api_cfg = topk_api::config::ApiConfig::try_parse_from(shared(&[format!(
            "--database-url={database_url}"
        )]))
        .unwrap();
        let api = topk_api::Application::build(api_cfg).await.unwrap();
        let api_addr = api.local_addr();
        tokio::spawn(api.run(stop.clone()));
        Stack {
            ingest: ingest_addr,
            api: api_addr,
            http: reqwest::Client::new(),
            store,
            db,
            stop,
        }
    }
}

/// Ingest and the API of one test, in this process; both stop when it is dropped.
pub struct Stack {
    /// The receiver's address (`POST /v1/views`).
    pub ingest: SocketAddr,
    /// The API's address.
    pub api: SocketAddr,
    /// A client for both.
    pub http: reqwest::Client,
    /// A store of the test's own on the stack's keys, to arrange or inspect Redis.
    pub store: RedisStore,
    /// The API's database, migrated, for tests that write history.
    pub db: PgPool,
    stop: CancellationToken,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One row of a ranking: a video and its views.
pub type Row = (String, u64);

impl Stack {
    /// A stack labelled `label` (a prefix of its key prefix and database name), to configure and start.
    pub fn builder(label: &str) -> StackBuilder {
        StackBuilder {
            label: label.to_owned(),
            redis_url: None,
            partitions: 2,
            ingest_args: Vec::new(),
        }
    }

    /// A stack of 6 partitions on the shared Redis Cluster, spread over its three primaries, started.
    pub async fn on_cluster(label: &str) -> Stack {
        Self::builder(label)
            .redis_url(&crate::cluster_url())
            .partitions(6)
            .start()
            .await
    }

    /// A stack with the default settings, started.
    pub async fn start(label: &str) -> Stack {
        Self::builder(label).start().await
    }

    /// `http://` and the API's address.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// `http://` and the receiver's address.
    pub fn ingest_url(&self) -> String {
        format!("http://{}", self.ingest)
    }

    /// Posts `body` to the receiver with `token` and `content_type` when given; the status and the JSON body
    /// (`null` when there is none).
    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        token: Option<&str>,
        content_type: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/v1/views", self.ingest_url()))
            .body(body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        answer(request).await
    }

    /// Posts a JSON batch with the stack's token.
    pub async fn post(&self, views: &Value) -> (StatusCode, Value) {
        self.post_raw(views.to_string(), Some(TOKEN), Some("application/json"))
            .await
    }

    /// Posts a JSON batch under an `Idempotency-Key`.
    pub async fn post_with_key(&self, views: &Value, key: &str) -> (StatusCode, Value) {
        let request = self
            .http
            .post(format!("{}/v1/views", self.ingest_url()))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(views.to_string());
        answer(request).await
    }

    /// Posts `count` views of each video, as a client would, and asserts they were accepted.
    pub async fn post_views(&self, views: &[(&str, u64)]) {
        let body: Value = views
            .iter()
            .map(|(video, count)| json!({"videoId": video, "count": count}))
            .collect();
        let (status, answer) = self.post(&body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }

    /// GETs `path` of the API: the status and the JSON body (`null` when there is none).
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(self.http.get(format!("{}{path}", self.api_url()))).await
    }

    /// `window`'s whole ranking as the API serves it, or what was served instead.
    pub async fn ranking(&self, window: &str) -> Result<Vec<Row>, String> {
        let (status, body) = self.get(&format!("/v1/topk?window={window}&k=1000")).await;
        let rows = body.as_array().filter(|_| status == StatusCode::OK);
        let rows = rows.ok_or_else(|| format!("{status} {body}"))?;
        rows.iter()
            .map(|r| match (r["videoId"].as_str(), r["views"].as_u64()) {
                (Some(video), Some(views)) => Ok((video.to_owned(), views)),
                _ => Err(format!("a malformed row {r} in {body}")),
            })
            .collect()
    }

    /// Polls until `window`'s ranking is exactly `want`, in order; panics with the last ranking seen after
    /// `within`. Returns how long it took.
    pub async fn wait_for_ranking(
        &self,
        window: &str,
        want: &[(&str, u64)],
        within: Duration,
    ) -> Duration {
        self.wait_ranking(window, want, within, |got, want| got == want)
            .await
    }

    /// Polls until `window`'s ranking holds every row of `want` (others too, in any order); panics with the
    /// last ranking seen after `within`. Returns how long it took.
    pub async fn wait_for_ranking_containing(
        &self,
        window: &str,
        want: &[(&str, u64)],
        within: Duration,
    ) -> Duration {
        self.wait_ranking(window, want, within, |got, want| {
            want.iter().all(|row| got.contains(row))
        })
        .await
    }

    async fn wait_ranking(
        &self,
        window: &str,
        want: &[(&str, u64)],
        within: Duration,
        matches: impl Fn(&[Row], &[Row]) -> bool,
    ) -> Duration {
        let want: Vec<Row> = want.iter().map(|(v, n)| (v.to_string(), *n)).collect();
        let started = Instant::now();
        let what = format!("the {window} ranking to be {want:?}");
        wait_until(what, within, || async {
            let got = self.ranking(window).await?;
            if matches(&got, &want) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await;
        started.elapsed()
    }

    /// What this stack holds in Redis: the log entries not yet applied, and every window of every partition.
    /// Equal before and after a request when it changed nothing.
    pub async fn state_fingerprint(&self) -> (u64, Vec<Vec<Row>>) {
        let mut backlog = 0;
        let mut windows = Vec::new();
        for p in self.store.keys().all_partitions() {
            backlog += self.store.log_state().log_backlog(p).await.unwrap();
            for w in Window::ALL {
                let mut counts: Vec<Row> = self
                    .store
                    .recovery()
                    .window_counts(p, w)
                    .await
                    .unwrap()
                    .into_iter()
                    .collect();
                counts.sort();
                windows.push(counts);
            }
        }
        (backlog, windows)
    }

    /// Asserts that Redis holds what `before` ([`Self::state_fingerprint`]) found, `what` notwithstanding.
    /// Compared at once, no wait needed: the receiver appends before it answers, and the fingerprint counts a
    /// log entry whether a worker has applied it yet or not.
    pub async fn assert_unchanged(&self, before: &(u64, Vec<Vec<Row>>), what: &str) {
        assert_eq!(
            &self.state_fingerprint().await,
            before,
            "{what} changed Redis"
        );
    }
}

/// Sends `request`: the status and the JSON body (`null` when there is none).
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the stack answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}
