//! Test support: a private `redis-server` and PostgreSQL for one test run, and isolation per test.
//!
//! The servers start on first use, on free loopback ports, with data in a temporary folder, and a watchdog
//! shell stops them and removes the folder when the test process exits (statics are never dropped).
//! `TOPK_TEST_REDIS_URL` / `TOPK_TEST_DATABASE_URL` (a server URL ending in `/postgres`) reuse running servers.
//! Each test isolates itself with [`unique_name`] (a Redis key prefix) and [`fresh_database`].
//! Tests that kill or restart Redis start their own with [`RedisServer::start`].

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The servers shared by one test process.
#[derive(Debug)]
pub struct Servers {
    pub redis_url: String,
    /// URL of the `postgres` maintenance database, for creating test databases.
    pub postgres_admin_url: String,
    pg_port: u16,
}

static SERVERS: OnceLock<Servers> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The shared Redis and Postgres of this test process, started on first call.
pub fn servers() -> &'static Servers {
    SERVERS.get_or_init(|| {
        let redis_url = std::env::var("TOPK_TEST_REDIS_URL")
            .ok()
            .unwrap_or_else(|| {
                let server = RedisServer::start();
                let url = server.url();
                watch_and_stop(&format!("kill {}", server.pid()), &server.dir);
                std::mem::forget(server);
                url
            });
        let (postgres_admin_url, pg_port) = match std::env::var("TOPK_TEST_DATABASE_URL") {
            Ok(url) => {
                let port = url
                    .rsplit_once(':')
                    .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
                    .unwrap_or(5432);
                (url, port)
            }
            Err(_) => start_postgres(),
        };
        Servers {
            redis_url,
            postgres_admin_url,
            pg_port,
        }
    })
}

/// A name unique within the test run, usable as a Redis key prefix or a database name.
pub fn unique_name(label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    format!("t{}_{n}_{label}", std::process::id())
}

/// Creates an empty database for one test and returns its URL.
pub fn fresh_database(label: &str) -> String {
    let s = servers();
    let name = unique_name(label);
    psql(s.pg_port, &format!("CREATE DATABASE {name}")).expect("create test database");
    let base = s
        .postgres_admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&s.postgres_admin_url);
    format!("{base}/{name}")
}

/// Runs one SQL statement as the superuser on the shared server.
pub fn psql(port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new(pg_bin("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A `redis-server` owned by one test: it can be stopped and restarted; it is killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Starts a redis-server on a free port with no persistence.
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("topk-redis-")
            .tempdir()
            .expect("temp dir");
        let mut s = Self {
            port: free_port(),
            dir: tmp.path().to_owned(),
            child: None,
            _tmp: Some(tmp),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new(which("redis-server"))
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_port(self.port, "redis-server");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server (SIGKILL): everything in it is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback TCP port (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until something listens on `port`.
pub fn wait_port(port: u16, what: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port} within 30 s");
}

fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: run scripts/setup.sh"))
}

/// A PostgreSQL program: from PATH, else the newest /usr/lib/postgresql/*/bin (Debian keeps them there).
pub fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| which(name))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command that runs `program` as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start_postgres() -> (String, u16) {
    let server = PgServer::start();
    let stop = format!(
        "{} -D '{}' stop -m immediate -w",
        pg_command_line(&pg_bin("pg_ctl")),
        server.data.display()
    );
    watch_and_stop(&stop, &server.dir);
    let out = (server.admin_url(), server.port);
    std::mem::forget(server);
    out
}

/// A PostgreSQL server owned by one test (or the test process): it can be stopped and started again with its
/// data kept; it is stopped and its folder removed when dropped.
#[derive(Debug)]
pub struct PgServer {
    port: u16,
    dir: PathBuf,
    data: PathBuf,
    running: bool,
}

impl PgServer {
    /// Initializes a cluster in a temporary folder and starts it on a free port.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("topk-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let data = dir.join("data");
        std::fs::create_dir(&data).expect("pg data dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            assert!(
                status.map(|s| s.success()).unwrap_or(false),
                "chown the postgres test folder"
            );
        }
        let out = pg_command(&pg_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Self {
            port: free_port(),
            dir,
            data,
            running: false,
        };
        server.resume();
        server
    }

    /// URL of the `postgres` maintenance database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database on this server and returns its URL.
    pub fn create_database(&self, label: &str) -> String {
        let name = unique_name(label);
        psql(self.port, &format!("CREATE DATABASE {name}")).expect("create test database");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server at once (like a crash: no checkpoint), keeping its data.
    pub fn stop(&mut self) {
        if self.running {
            let _ = pg_command(&pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["stop", "-m", "immediate", "-w"])
                .output();
            self.running = false;
        }
    }

    /// Starts the stopped server again on the same port and waits until it answers queries.
    pub fn resume(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300 -k {}",
            self.port,
            self.data.display()
        );
        let out = pg_command(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("postgres.log"))
            .args(["start", "-w"])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            match psql(self.port, "SELECT 1") {
                Ok(_) => break,
                Err(e) if Instant::now() > end => panic!("postgres not ready: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shell form of [`pg_command`], for the watchdog.
fn pg_command_line(program: &Path) -> String {
    if is_root() {
        format!("runuser -u postgres -- '{}'", program.display())
    } else {
        format!("'{}'", program.display())
    }
}

/// Runs `stop` and removes `dir` once this test process has exited.
fn watch_and_stop(stop: &str, dir: &Path) {
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; {stop}; rm -rf '{dir}'",
        me = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
