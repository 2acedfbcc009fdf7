//! Test support: a private `redis-server` and PostgreSQL for one test run, and isolation per test.
//!
//! The servers start on first use, on free loopback ports, with data in a temporary folder, and a watchdog
//! shell stops them and removes the folder when the test process exits (statics are never dropped).
//! `TOPK_TEST_REDIS_URL` / `TOPK_TEST_DATABASE_URL` (a server URL ending in `/postgres`) reuse running servers.
//! Each test isolates itself with [`unique_name`] (a Redis key prefix) and [`fresh_database`].
//! Tests that kill, freeze or restart Redis start their own with [`RedisServer::start`] (or
//! [`RedisServer::start_persistent`]), and observe any server with [`RedisConn`], a client of their own.

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
    persistent: bool,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Starts a redis-server on a free port with no persistence.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a redis-server on a free port that logs every write to its append-only file and fsyncs it
    /// before answering (`appendfsync always`): a restart on the same folder loses nothing acknowledged.
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("topk-redis-")
            .tempdir()
            .expect("temp dir");
        let mut s = Self {
            port: free_port(),
            dir: tmp.path().to_owned(),
            persistent,
            child: None,
            _tmp: Some(tmp),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let aof: &[&str] = if self.persistent {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = Command::new(which("redis-server"))
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(aof)
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

    /// The server's process id (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server (SIGKILL): without persistence everything in it is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with `SHUTDOWN` (it writes its append-only file first) and waits for it to exit.
    pub fn shutdown(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The server closes the connection instead of answering: an error here is the expected outcome.
            let _ = RedisConn::open(self.port).and_then(|mut r| r.cmd(&["SHUTDOWN"]));
            let end = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() {
                if Instant::now() > end {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts the stopped server again on the same port and folder (with persistence, from its file).
    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }

    /// Kills the server and starts it again on the same port: empty without persistence.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): connections stay open and commands wait unanswered, as when Redis is
    /// stuck behind a slow command or a swapping host.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// A connection of the test's own to this server.
    pub fn conn(&self) -> RedisConn {
        RedisConn::open(self.port).expect("connect to the test redis-server")
    }
}

/// Sends a signal (by name, e.g. `TERM`) to a process.
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{name} {pid} failed");
}

/// One reply of the Redis protocol (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (status or bulk string).
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => self.text().and_then(|t| t.parse().ok()),
        }
    }
}

/// A minimal blocking Redis client for tests to observe a server (INFO, DBSIZE, SCAN) independently of the
/// service's client, so what it measures never depends on the code under test. Reads time out: a frozen
/// server fails a call rather than hanging the test.
#[derive(Debug)]
pub struct RedisConn {
    reader: std::io::BufReader<TcpStream>,
}

impl RedisConn {
    /// Connects to a server on a loopback port.
    pub fn open(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            reader: std::io::BufReader::new(stream),
        })
    }

    /// Connects to a `redis://host:port` URL's port on loopback.
    pub fn open_url(url: &str) -> std::io::Result<Self> {
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or(6379);
        Self::open(port)
    }

    /// Sends one command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        use std::io::Write;
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out)?;
        self.read_reply()
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        use std::io::BufRead;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        use std::io::Read;
        let line = self.read_line()?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP reply");
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        let n = || rest.parse::<i64>().map_err(|_| bad());
        Ok(match kind {
            "+" => Reply::Status(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(n()?),
            "$" if n()? < 0 => Reply::Bulk(None),
            "$" => {
                let mut buf = vec![0; n()? as usize + 2];
                self.reader.read_exact(&mut buf)?;
                buf.truncate(buf.len() - 2);
                Reply::Bulk(Some(buf))
            }
            "*" if n()? < 0 => Reply::Array(None),
            "*" => Reply::Array(Some(
                (0..n()?)
                    .map(|_| self.read_reply())
                    .collect::<Result<_, _>>()?,
            )),
            _ => return Err(bad()),
        })
    }

    /// One numeric field of `INFO section` (e.g. `used_memory` of `memory`).
    pub fn info_field(&mut self, section: &str, field: &str) -> Option<u64> {
        let info = self.cmd(&["INFO", section]).ok()?.text()?;
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| *k == field)
            .and_then(|(_, v)| v.trim().parse().ok())
    }

    /// Bytes the server uses for its data (`used_memory`).
    pub fn used_memory(&mut self) -> u64 {
        self.info_field("memory", "used_memory")
            .expect("INFO memory")
    }

    /// Every key whose name starts with `prefix`, optionally only those of a Redis type (SCAN ... TYPE).
    pub fn keys_with_prefix(&mut self, prefix: &str, kind: Option<&str>) -> Vec<String> {
        let pattern = format!("{prefix}*");
        let mut cursor = "0".to_owned();
        let mut keys = Vec::new();
        loop {
            let mut args = vec!["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"];
            if let Some(k) = kind {
                args.extend(["TYPE", k]);
            }
            let reply = self.cmd(&args).expect("SCAN");
            let Reply::Array(Some(parts)) = reply else {
                panic!("SCAN replied {reply:?}")
            };
            let next = parts[0].text().expect("SCAN cursor");
            if let Reply::Array(Some(found)) = &parts[1] {
                keys.extend(found.iter().filter_map(Reply::text));
            }
            if next == "0" {
                return keys;
            }
            cursor = next;
        }
    }

    /// Total entries of every stream whose key starts with `prefix` (the services' logs are streams).
    pub fn stream_entries(&mut self, prefix: &str) -> u64 {
        self.keys_with_prefix(prefix, Some("stream"))
            .iter()
            .map(|k| {
                self.cmd(&["XLEN", k])
                    .ok()
                    .and_then(|r| r.int())
                    .unwrap_or(0)
                    .max(0) as u64
            })
            .sum()
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
