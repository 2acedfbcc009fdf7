//! The real service processes of a test: spawned from cargo's binaries, on the test's Redis keys.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use topk_core::config::RedisConfig;
use topk_core::redis::RedisStore;

pub const TOKEN: &str = "fault-token";

/// A service binary built by cargo. `cargo test --workspace` builds every binary before the tests run; with
/// `-p topk-ingest` only this package's are, so a missing `topk-api` or `topk-snapshotter` is built here once
/// (`cargo build --bins` beforehand avoids it; an existing one is used as it is).
fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let ingest = PathBuf::from(env!("CARGO_BIN_EXE_topk-ingest"));
    let path = ingest.with_file_name(name);
    if path.is_file() {
        return path;
    }
    BUILT.get_or_init(|| {
        // The same profile as this test binary's (its folder is named after it).
        let profile = ingest
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|d| d.to_str())
            .map(|d| if d == "debug" { "dev" } else { d })
            .unwrap_or("dev")
            .to_owned();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--profile", &profile])
            .args(["-p", "topk-api", "-p", "topk-snapshotter", "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of the service binaries");
    });
    path
}

/// A service process owned by a test; killed when dropped. Its stderr goes to a file shown on failure.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

/// The settings every service shares.
#[derive(Clone, Debug)]
pub struct Env {
    pub redis_url: String,
    pub prefix: String,
    pub partitions: u16,
    pub database_url: Option<String>,
}

impl Env {
    pub fn new(redis_url: &str, label: &str, partitions: u16) -> Self {
        Self {
            redis_url: redis_url.to_owned(),
            prefix: topk_testkit::unique_name(label),
            partitions,
            database_url: None,
        }
    }

    /// A client of the test's own on this deployment's keys.
    pub async fn store(&self) -> RedisStore {
        RedisStore::connect(&RedisConfig {
            redis_url: self.redis_url.parse().expect("a Redis URL"),
            partitions: self.partitions,
            key_prefix: self.prefix.clone(),
            redis_timeout_ms: 5_000,
            wait_replicas: 0,
            redis_ca_file: None,
        })
        .await
        .unwrap()
    }

    fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(binary(bin));
        c.env("TOPK_REDIS_URL", &self.redis_url)
            .env("TOPK_KEY_PREFIX", &self.prefix)
            .env("TOPK_PARTITIONS", self.partitions.to_string())
            .env("TOPK_INGEST_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            // An error's message, not a backtrace of it (panics keep theirs), so a log's tail shows the cause.
            .env("RUST_LIB_BACKTRACE", "0");
        if let Some(db) = &self.database_url {
            c.env("TOPK_DATABASE_URL", db);
        }
        c
    }

    /// `topk-ingest` in a role (`all`, `receiver`, `worker`), listening on `port` unless a worker.
    pub fn ingest(&self, role: &str, port: u16, extra: &[(&str, &str)]) -> Proc {
        let p = self.ingest_unchecked(role, port, extra);
        if role != "worker" {
            topk_testkit::wait_port(port, "topk-ingest");
        }
        p
    }

    /// [`Self::ingest`] without waiting for its port (a process expected to refuse to start).
    pub fn ingest_unchecked(&self, role: &str, port: u16, extra: &[(&str, &str)]) -> Proc {
        let mut c = self.command("topk-ingest");
        c.env("TOPK_INGEST_ROLE", role)
            .env("TOPK_INGEST_ADDR", format!("127.0.0.1:{port}"))
            .envs(extra.iter().copied());
        Proc::spawn(&format!("topk-ingest {role}"), c)
    }

    pub fn api(&self, port: u16, extra: &[(&str, &str)]) -> Proc {
        let p = self.api_unchecked(port, extra);
        topk_testkit::wait_port(port, "topk-api");
        p
    }

    /// [`Self::api`] without waiting for its port (a process expected to refuse to start).
    pub fn api_unchecked(&self, port: u16, extra: &[(&str, &str)]) -> Proc {
        let mut c = self.command("topk-api");
        c.env("TOPK_API_ADDR", format!("127.0.0.1:{port}"))
            .envs(extra.iter().copied());
        Proc::spawn("topk-api", c)
    }

    pub fn snapshotter(&self, args: &[&str], extra: &[(&str, &str)]) -> Proc {
        let mut c = self.command("topk-snapshotter");
        c.args(args).envs(extra.iter().copied());
        Proc::spawn(&format!("topk-snapshotter {}", args.join(" ")), c)
    }

    /// Runs a `topk-snapshotter` subcommand to completion and asserts it succeeded.
    pub async fn snapshotter_once(&self, args: &[&str]) {
        let mut p = self.snapshotter(args, &[]);
        let name = p.name.clone();
        let (status, _) = p.wait_exit(Duration::from_secs(120)).await;
        assert!(status.success(), "{name}: {status:?}\n{}", p.log_tail());
    }
}

impl Proc {
    fn spawn(name: &str, mut c: Command) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The end of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let start = text.len().saturating_sub(3_000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().unwrap();
        }
    }

    /// Waits (polling) for the process to exit by itself, at most `within`; kills it and panics after that.
    pub async fn wait_exit(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let child = self.child.as_mut().expect("process running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return (status, started.elapsed());
            }
            if started.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "{} did not exit within {within:?}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then asserts the process exits 0 within `within`; returns how long it took.
    pub async fn terminate(&mut self, within: Duration) -> Duration {
        topk_testkit::signal(self.pid(), "TERM");
        let (status, took) = self.wait_exit(within).await;
        assert!(
            status.success(),
            "{} exited with {status:?} after SIGTERM\n{}",
            self.name,
            self.log_tail()
        );
        took
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
