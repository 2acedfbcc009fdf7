//! A Redis Cluster owned by one test: `2 × primaries` redis-server processes on loopback, one replica per
//! primary, formed with `redis-cli --cluster create`. A test can kill or freeze a node and wait for its
//! replica to take over, and move a slot live from one primary to another as `redis-cli --cluster reshard`
//! does, slowly enough to overlap a load if it wants. [`slot_of`] computes a key's slot as the server does.
//! [`RedisCluster::start_secured`] runs every node with a password, an ACL user, or TLS only (bus and
//! replication included), as managed clusters do.
//!
//! # Layout
//! - `process`: the node processes: start, kill, freeze, resume, and their ports.
//! - `topology`: what the nodes report (slot map, nodes, replication) and the waits on it (formed, ok,
//!   failover).
//! - `migration`: a slot moved live between primaries.
//! - `slots`: a key's hash slot (CRC16).
//!
//! The nodes keep Redis's default `cluster-require-full-coverage yes`: once a dead primary is flagged as
//! failed and until its replica has taken over, every node refuses every command (`CLUSTERDOWN`), as a
//! production cluster with default settings does, so a test meets the real failure mode.
//!
//! Ports: each node needs its port and the cluster bus port (port + 10000), both free. They are picked at
//! random from 12000..22000 (bus ports 22000..32000), below Linux's ephemeral range (32768 and up), so
//! outgoing connections and [`crate::free_port`] never take them.

mod migration;
mod process;
mod slots;
mod topology;

pub use slots::{slot_of, slot_of_bytes, SLOTS};
pub use topology::{port_serving, SlotRange};

use crate::process::watch_and_stop;
use crate::redis_access::RedisAccess;
use crate::resp::RedisConn;
use process::tail;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use topology::wait_until;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Paused,
    Killed,
}

#[derive(Debug)]
struct Node {
    port: u16,
    dir: PathBuf,
    id: String,
    child: Option<Child>,
    state: State,
    /// When a test killed or froze this node as a primary: its replica then, the one expected to take over.
    heir: Option<u16>,
}

/// A Redis Cluster owned by one test; every node is killed when it is dropped.
///
/// Methods take `&self`, so a test can share the cluster with threads that load it while it kills a node
/// or moves a slot.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Mutex<Vec<Node>>,
    node_timeout_ms: u64,
    /// How every node is reached (credentials, TLS), by the nodes themselves and by the test.
    access: RedisAccess,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// How long a cluster may take to form, agree, or finish a failover on top of its node timeout.
const WAIT: Duration = Duration::from_secs(30);
impl RedisCluster {
    /// Starts `primaries` primaries (at least 3, as `redis-cli --cluster create` requires) with one replica
    /// each, forms the cluster, and returns once every node reports `cluster_state:ok`, every replica is
    /// connected to its primary and every node sees the same slot map. `node_timeout_ms` is
    /// `cluster-node-timeout`: how long a node may be unreachable before failover starts.
    pub fn start(primaries: usize, node_timeout_ms: u64) -> Self {
        Self::start_secured(primaries, node_timeout_ms, RedisAccess::default())
    }

    /// [`Self::start`] with every node reached with `access`: a password (`requirepass`, `masterauth`), an
    /// ACL user with the default user off, or TLS only with `tls-cluster` and `tls-replication`.
    pub fn start_secured(primaries: usize, node_timeout_ms: u64, access: RedisAccess) -> Self {
        assert!(
            primaries >= 3,
            "a Redis Cluster needs at least 3 primaries (asked for {primaries})"
        );
        let tmp = crate::process::temp_dir("topk-cluster-");
        let cluster = Self {
            nodes: Mutex::new(Vec::new()),
            node_timeout_ms,
            access,
            dir: tmp.path().to_owned(),
            _tmp: tmp,
        };
        // Statics are never dropped and a test process can die without unwinding: the watchdog kills every
        // node (through its pid file, which start_again rewrites) once this process is gone.
        let stop = format!(
            "for f in '{}'/*/redis.pid; do p=$(cat \"$f\" 2>/dev/null) || continue; \
             grep -qas redis-server /proc/\"$p\"/cmdline && kill -9 \"$p\"; done",
            cluster.dir.display()
        );
        watch_and_stop(&stop, &cluster.dir);
        for _ in 0..2 * primaries {
            // Pushed one by one: a panic on a later node still drops (kills) the earlier ones.
            let node = cluster.start_node();
            cluster.lock().push(node);
        }
        let addrs: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        crate::process::run_ok(
            Command::new(crate::process::which("redis-cli"))
                .args(cluster.access.cli_args())
                .arg("--cluster")
                .arg("create")
                .args(&addrs)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdin(Stdio::null()),
            &format!("redis-cli --cluster create {}", addrs.join(" ")),
        );
        let total = 2 * primaries;
        wait_until("the cluster to form", WAIT, || cluster.check_formed(total));
        cluster
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A `redis-cluster://` URL naming every primary (the first in the authority, the others as `node`
    /// parameters), the form topk reads; a client finds the replicas from any of them.
    pub fn url(&self) -> String {
        let primaries = self.primaries();
        let access = &self.access;
        let mut url = format!(
            "{}://{}127.0.0.1:{}",
            access.scheme(true),
            access.userinfo(),
            primaries[0]
        );
        for (i, p) in primaries[1..].iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{p}"));
        }
        url
    }

    /// `cluster-node-timeout` of the nodes, in milliseconds.
    pub fn node_timeout_ms(&self) -> u64 {
        self.node_timeout_ms
    }

    /// The port of every node, primaries and replicas, in the order they were started (killed ones too).
    pub fn ports(&self) -> Vec<u16> {
        self.lock().iter().map(|n| n.port).collect()
    }

    /// The ports of the nodes that are neither killed nor frozen.
    pub fn live_ports(&self) -> Vec<u16> {
        self.lock()
            .iter()
            .filter(|n| n.state == State::Running)
            .map(|n| n.port)
            .collect()
    }

    /// The cluster node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        self.with_node(port, |n| n.id.clone())
    }

    /// The process id of the node on `port` (0 once killed).
    pub fn node_pid(&self, port: u16) -> u32 {
        self.with_node(port, |n| n.child.as_ref().map_or(0, Child::id))
    }

    /// A connection of the test's own to the node on `port` (it follows no redirection).
    pub fn conn(&self, port: u16) -> RedisConn {
        RedisConn::open_with(port, &self.access)
            .unwrap_or_else(|e| panic!("connect to cluster node {port}: {e}"))
    }

    fn with_node<T>(&self, port: u16, f: impl FnOnce(&mut Node) -> T) -> T {
        let mut nodes = self.lock();
        let node = nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node of this cluster listens on {port}"));
        f(node)
    }

    fn any_live_port(&self) -> u16 {
        self.any_live_port_but(0)
    }

    fn any_live_port_but(&self, port: u16) -> u16 {
        self.live_ports()
            .into_iter()
            .find(|&p| p != port)
            .expect("every node of the cluster is killed or frozen")
    }

    /// The last `lines` lines of the log of the node on `port`.
    pub fn log_tail(&self, port: u16, lines: usize) -> String {
        let dir = self.with_node(port, |n| n.dir.clone());
        tail(&dir.join("redis.log"), lines)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in self.lock().iter_mut() {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
