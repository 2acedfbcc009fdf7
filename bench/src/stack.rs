//! The services under test: `topk-ingest` and `topk-api` started as their own processes on free ports, on a
//! private key prefix, and stopped (with everything they stored) at the end.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use topk_core::config::{DatabaseConfig, RedisConfig};

/// The bearer token the benchmark's ingest requires.
pub const TOKEN: &str = "bench-token";

/// Running services.
pub struct Services {
    children: Vec<Child>,
    /// Base URL of `topk-ingest` (nothing listens there when started without it).
    pub ingest_url: String,
    /// Base URL of `topk-api`.
    pub api_url: String,
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found next to topk-bench: build the workspace (cargo build --release)",
        path.display()
    );
    Ok(path)
}

impl Services {
    /// Starts the API, and ingest when `with_ingest`, against `redis` (its key prefix isolates the run) and waits
    /// until they are ready.
    pub async fn start(
        redis: &RedisConfig,
        database: &DatabaseConfig,
        with_ingest: bool,
    ) -> anyhow::Result<Self> {
        let (ingest_port, api_port) = (free_port()?, free_port()?);
        let env = |c: &mut Command| {
            c.env("TOPK_REDIS_URL", redis.redis_url.expose())
                .env("TOPK_KEY_PREFIX", &redis.key_prefix)
                .env("TOPK_PARTITIONS", redis.partitions.to_string())
                .env("TOPK_DATABASE_URL", &database.database_url)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
        };
        let mut ingest = Command::new(binary("topk-ingest")?);
        env(&mut ingest);
        ingest
            .env("TOPK_INGEST_ADDR", format!("127.0.0.1:{ingest_port}"))
            .env("TOPK_INGEST_TOKEN", TOKEN)
            .env("TOPK_MAX_BODY_BYTES", (8 << 20).to_string());
        let mut api = Command::new(binary("topk-api")?);
        env(&mut api);
        api.env("TOPK_API_ADDR", format!("127.0.0.1:{api_port}"));
        let mut children = vec![api.spawn()?];
        if with_ingest {
            children.push(ingest.spawn()?);
        }
        let services = Self {
            children,
            ingest_url: format!("http://127.0.0.1:{ingest_port}"),
            api_url: format!("http://127.0.0.1:{api_port}"),
        };
        let http = reqwest::Client::new();
        let urls = if with_ingest {
            vec![&services.ingest_url, &services.api_url]
        } else {
            vec![&services.api_url]
        };
        for url in urls {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !http
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                anyhow::ensure!(Instant::now() < deadline, "{url} did not become ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(services)
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
