//! PostgreSQL for tests: its programs, a server owned by a test (stopped like a crash, started again), and
//! one-statement `psql` calls.

use crate::process::{free_port, is_root, run_ok, unique_name, watch_and_stop, which};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// The shell form of [`pg_command`], for the watchdog.
fn pg_command_line(program: &Path) -> String {
    if is_root() {
        format!("runuser -u postgres -- '{}'", program.display())
    } else {
        format!("'{}'", program.display())
    }
}

pub(crate) fn start_postgres() -> (String, u16) {
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
        Self::start_configured(|_| {})
    }

    /// [`Self::start`] with `configure` run on the data folder between `initdb` and the first start (to
    /// edit `postgresql.conf` and `pg_hba.conf`, e.g. [`crate::tls`]).
    pub fn start_configured(configure: impl FnOnce(&Path)) -> Self {
        let dir = crate::process::temp_dir("topk-pg-").keep();
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
        run_ok(
            pg_command(&pg_bin("initdb")).arg("-D").arg(&data).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ]),
            "initdb",
        );
        configure(&data);
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
        run_ok(
            pg_command(&pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-o", &options, "-l"])
                .arg(self.dir.join("postgres.log"))
                .args(["start", "-w"]),
            "pg_ctl start",
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
