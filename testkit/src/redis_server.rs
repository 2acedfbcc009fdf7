//! A `redis-server` owned by one test, which it can kill, freeze, shut down and start again.

use crate::process::{free_port, signal, wait_port, which};
use crate::redis_access::RedisAccess;
use crate::resp::RedisConn;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` owned by one test: it can be stopped and restarted; it is killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    access: RedisAccess,
    pub(crate) dir: PathBuf,
    persistent: bool,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Starts a redis-server on a free port with no persistence.
    pub fn start() -> Self {
        Self::start_with(false, RedisAccess::default())
    }

    /// Starts a redis-server on a free port, without persistence, reached with `access` (a password, an ACL
    /// user with the default user off, TLS only).
    pub fn start_secured(access: RedisAccess) -> Self {
        Self::start_with(false, access)
    }

    /// Starts a redis-server on a free port that logs every write to its append-only file and fsyncs it
    /// before answering (`appendfsync always`): a restart on the same folder loses nothing acknowledged.
    pub fn start_persistent() -> Self {
        Self::start_with(true, RedisAccess::default())
    }

    fn start_with(persistent: bool, access: RedisAccess) -> Self {
        let tmp = crate::process::temp_dir("topk-redis-");
        let mut s = Self {
            port: free_port(),
            access,
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
            .args(self.access.server_args(self.port))
            .args(["--bind", "127.0.0.1", "--save", ""])
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

    /// topk's URL of this server, credentials included.
    pub fn url(&self) -> String {
        self.access.url(self.port)
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
            let _ = RedisConn::open_with(self.port, &self.access)
                .and_then(|mut r| r.cmd(&["SHUTDOWN"]));
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
        RedisConn::open_with(self.port, &self.access).expect("connect to the test redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
