//! The built `topk`, run: against a [`Stack`] ([`cli_stack`]; its URLs and token in the environment) with
//! [`Cli::topk`], or with an environment of the test's own with [`topk`].

use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use topk_testkit::stack::TOKEN;
use topk_testkit::Stack;

/// The stack the CLI's tests run against: 4 partitions, and workers that apply what they find at once, so
/// that a test waits for them as little as possible.
pub async fn cli_stack(label: &str) -> Stack {
    Stack::builder(label)
        .partitions(4)
        .ingest_args(&["--worker-batch-wait-ms=0"])
        .start()
        .await
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

    /// Panics with the output unless the run exited with `code`; its stderr, to say what it must say.
    pub fn failed_with(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "{self:?}");
        &self.stderr
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// `topk` against a stack.
pub trait Cli {
    /// Runs `topk` with the stack's URLs and token in its environment.
    fn topk(&self, args: &[&str], stdin: Option<&str>) -> impl std::future::Future<Output = Run>;
}

impl Cli for Stack {
    async fn topk(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let env = [
            ("TOPK_API_URL", self.api_url()),
            ("TOPK_INGEST_URL", self.ingest_url()),
            ("TOPK_INGEST_TOKEN", TOKEN.to_owned()),
        ];
        topk(&env, args, stdin).await
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
