//! The node processes of a test's cluster: started, killed, frozen and resumed, on ports of their own.

use super::topology::info_at;
use super::{Node, RedisCluster, State};
use crate::process::{signal, which};
use crate::resp::RedisConn;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

impl RedisCluster {
    pub(super) fn start_node(&self) -> Node {
        let mut why = String::new();
        for _ in 0..5 {
            let port = reserve_port();
            let dir = self.dir.join(port.to_string());
            std::fs::create_dir_all(&dir).expect("node folder");
            let mut child = self.spawn(port, &dir);
            match self.wait_node(&mut child, port, &dir) {
                Ok(()) => {
                    let id = RedisConn::open_with(port, &self.access)
                        .and_then(|mut c| c.cmd(&["CLUSTER", "MYID"]))
                        .ok()
                        .and_then(|r| r.text())
                        .expect("CLUSTER MYID");
                    return Node {
                        port,
                        dir,
                        id,
                        child: Some(child),
                        state: State::Running,
                        heir: None,
                    };
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Another process took the port after it was checked: try another one.
                    why = e;
                }
            }
        }
        panic!("could not start a cluster node: {why}");
    }

    fn spawn(&self, port: u16, dir: &Path) -> Child {
        let timeout = self.node_timeout_ms.to_string();
        let conf = format!("nodes-{port}.conf");
        Command::new(which("redis-server"))
            .args(self.access.server_args(port))
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", &conf])
            .args(["--cluster-node-timeout", &timeout])
            .args(["--appendonly", "no", "--save", ""])
            // A replica's first sync starts at once, not after the default 5 s wait for more replicas.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .arg("--pidfile")
            .arg(dir.join("redis.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server")
    }

    /// Kills the node on `port` (SIGKILL): it loses everything it held.
    pub fn kill(&self, port: u16) {
        let heir = match self.with_node(port, |n| n.state) {
            State::Running => self.heir_now(port),
            _ => None,
        };
        self.with_node(port, |n| {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            n.state = State::Killed;
            n.heir = n.heir.or(heir);
        });
    }

    /// Starts a killed node again on its port and folder; it rejoins the cluster from its nodes file (a
    /// primary that was replaced comes back as a replica of its successor), with no data.
    pub fn start_again(&self, port: u16) {
        let dir = self.with_node(port, |n| {
            assert!(n.state == State::Killed, "node {port} is not killed");
            n.dir.clone()
        });
        let mut child = self.spawn(port, &dir);
        if let Err(e) = self.wait_node(&mut child, port, &dir) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("could not start cluster node {port} again: {e}");
        }
        self.with_node(port, |n| {
            n.child = Some(child);
            n.state = State::Running;
            n.heir = None;
        });
    }

    /// Freezes the node on `port` (SIGSTOP): its connections stay open and unanswered; after the node
    /// timeout the others consider it failed and its replica takes over.
    pub fn pause(&self, port: u16) {
        let heir = self.heir_now(port);
        self.with_node(port, |n| {
            assert!(n.state == State::Running, "node {port} is not running");
            signal(n.child.as_ref().map_or(0, Child::id), "STOP");
            n.state = State::Paused;
            n.heir = heir;
        });
    }

    /// Lets a frozen node run again (SIGCONT).
    pub fn resume(&self, port: u16) {
        self.with_node(port, |n| {
            assert!(n.state == State::Paused, "node {port} is not paused");
            signal(n.child.as_ref().map_or(0, Child::id), "CONT");
            n.state = State::Running;
            n.heir = None;
        });
    }

    /// Waits until the node just spawned on `port` answers as itself (its INFO names its own pid), or fails
    /// when it exits (its port was taken) or does not answer within 30 s.
    fn wait_node(&self, child: &mut Child, port: u16, dir: &Path) -> Result<(), String> {
        let log = || tail(&dir.join("redis.log"), 5);
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("node {port} exited ({status}):\n{}", log()));
            }
            if let Ok(info) = info_at(&self.access, port, "server") {
                return match info.field("process_id") {
                    Some(pid) if pid == child.id().to_string() => Ok(()),
                    other => Err(format!(
                        "port {port} is answered by another process ({other:?})"
                    )),
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "node {port} did not answer within 30 s:\n{}",
            log()
        ))
    }
}

pub(super) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Ports handed out in this process, never handed out twice (the check below cannot see a node that is
/// being started but does not listen yet).
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port in 12000..22000 that is bindable, with its bus port (port + 10000) bindable too.
pub(super) fn reserve_port() -> u16 {
    const LOW: u64 = 12_000;
    const HIGH: u64 = 22_000;
    let bindable = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32)
        ^ (taken.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        | 1;
    for _ in 0..10_000 {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = (LOW + x % (HIGH - LOW)) as u16;
        if !taken.contains(&port) && bindable(port) && bindable(port + 10_000) {
            taken.insert(port);
            return port;
        }
    }
    panic!("found no free port pair (port, port + 10000) in {LOW}..{HIGH}");
}
