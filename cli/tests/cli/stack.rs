//! A [`Stack`]: ingest and the API in this process on free ports, and the `topk` binary run against it.

use clap::Parser;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "cli-test-token";

/// Ingest (all roles: receiver, workers, retirer) and the API, stopped when dropped.
pub struct Stack {
    pub ingest: SocketAddr,
    pub api: SocketAddr,
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
        "--partitions=4".to_owned(),
        "--addr=127.0.0.1:0".to_owned(),
    ];
    args.extend_from_slice(extra);
    args
}

/// Starts the stack under a key prefix and a database of its own.
pub async fn stack(label: &str) -> Stack {
    let prefix = topk_testkit::unique_name(label);
    let stop = CancellationToken::new();
    let ingest_cfg = topk_ingest::config::IngestConfig::try_parse_from(args(
        &prefix,
        // Workers apply what they find at once, so the test waits for them as little as possible.
        &[
            format!("--token={TOKEN}"),
            "--worker-batch-wait-ms=0".into(),
        ],
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
        db,
        stop,
    }
}

/// What a run of `topk` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the output unless the run succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

impl Stack {
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Runs `topk` with the stack's URLs and token in its environment.
    pub async fn topk(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let ingest = format!("http://{}", self.ingest);
        let env = [
            ("TOPK_API_URL", self.api_url()),
            ("TOPK_INGEST_URL", ingest),
            ("TOPK_INGEST_TOKEN", TOKEN.to_owned()),
        ];
        topk(&env, args, stdin).await
    }

    /// Polls `topk top --json` until the window's ranking is `want`, or panics after a deadline.
    pub async fn wait_for_ranking(&self, window: &str, want: &[(&str, u64)]) {
        let want: serde_json::Value = want
            .iter()
            .map(|(v, n)| serde_json::json!({"videoId": v, "views": n}))
            .collect();
        let started = Instant::now();
        loop {
            let got = self
                .topk(&["top", "--json", "--window", window, "-k", "1000"], None)
                .await
                .ok()
                .json();
            if got == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{window}: got {got}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the built `topk` with `env` (and none of the caller's TOPK_* settings), feeding it `stdin`.
pub async fn topk(env: &[(&str, String)], args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_topk"));
    command
        .args(args)
        .env_remove("TOPK_API_URL")
        .env_remove("TOPK_INGEST_URL")
        .env_remove("TOPK_INGEST_TOKEN")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("run topk");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let text = text.to_owned();
        // Written beside the wait, so a large input cannot block on a full pipe.
        tokio::spawn(async move {
            pipe.write_all(text.as_bytes()).await.unwrap();
        });
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("topk finished within a minute")
        .unwrap();
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}
