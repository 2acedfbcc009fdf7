//! A Redis Cluster owned by one test: `2 × primaries` redis-server processes on loopback, one replica per
//! primary, formed with `redis-cli --cluster create`. A test can kill or freeze a node and wait for its
//! replica to take over, and move a slot live from one primary to another as `redis-cli --cluster reshard`
//! does, slowly enough to overlap a load if it wants. [`slot_of`] computes a key's slot as the server does.
//!
//! The nodes keep Redis's default `cluster-require-full-coverage yes`: once a dead primary is flagged as
//! failed and until its replica has taken over, every node refuses every command (`CLUSTERDOWN`), as a
//! production cluster with default settings does, so a test meets the real failure mode.
//!
//! Ports: each node needs its port and the cluster bus port (port + 10000), both free. They are picked at
//! random from 12000..22000 (bus ports 22000..32000), below Linux's ephemeral range (32768 and up), so
//! outgoing connections and [`crate::free_port`] never take them.

use crate::process::{signal, watch_and_stop, which};
use crate::resp::{RedisConn, Reply};
use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The hash slot of a key, as `CLUSTER KEYSLOT` computes it: CRC16 (XMODEM) modulo 16384 of the key, or
/// of its hash tag, the part between the first `{` and the first `}` after it when that part is not empty.
pub fn slot_of(key: &str) -> u16 {
    slot_of_bytes(key.as_bytes())
}

/// [`slot_of`] for a key that is not UTF-8.
pub fn slot_of_bytes(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let len = rest.iter().position(|&b| b == b'}')?;
            (len > 0).then(|| &rest[..len])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % SLOTS
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One entry of `CLUSTER SLOTS`: a range of slots, the port of the primary serving it and of its replicas.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub primary: u16,
    pub replicas: Vec<u16>,
}

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
        assert!(
            primaries >= 3,
            "a Redis Cluster needs at least 3 primaries (asked for {primaries})"
        );
        let tmp = tempfile::Builder::new()
            .prefix("topk-cluster-")
            .tempdir()
            .expect("temp dir");
        let cluster = Self {
            nodes: Mutex::new(Vec::new()),
            node_timeout_ms,
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
        let out = Command::new(which("redis-cli"))
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create {} failed ({}):\n{}{}",
            addrs.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let total = 2 * primaries;
        wait_until("the cluster to form", WAIT, || cluster.check_formed(total));
        cluster
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_node(&self) -> Node {
        let mut why = String::new();
        for _ in 0..5 {
            let port = reserve_port();
            let dir = self.dir.join(port.to_string());
            std::fs::create_dir_all(&dir).expect("node folder");
            let mut child = self.spawn(port, &dir);
            match wait_node(&mut child, port, &dir) {
                Ok(()) => {
                    let id = RedisConn::open(port)
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
        let port_s = port.to_string();
        let timeout = self.node_timeout_ms.to_string();
        let conf = format!("nodes-{port}.conf");
        Command::new(which("redis-server"))
            .args(["--port", &port_s, "--bind", "127.0.0.1"])
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

    /// A `redis-cluster://` URL naming every primary (the first in the authority, the others as `node`
    /// parameters), the form topk reads; a client finds the replicas from any of them.
    pub fn url(&self) -> String {
        let primaries = self.primaries();
        let mut url = format!("redis-cluster://127.0.0.1:{}", primaries[0]);
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

    /// The slot map as a live node sees it, sorted by slot.
    pub fn slot_map(&self) -> Vec<SlotRange> {
        let port = self.any_live_port();
        slot_map_at(port).unwrap_or_else(|e| panic!("CLUSTER SLOTS on {port}: {e}"))
    }

    /// The ports of the primaries that serve slots now, ascending.
    pub fn primaries(&self) -> Vec<u16> {
        let set: BTreeSet<u16> = self.slot_map().iter().map(|r| r.primary).collect();
        set.into_iter().collect()
    }

    /// The port of the primary serving `slot` now (per `CLUSTER SLOTS` on a live node).
    pub fn primary_for_slot(&self, slot: u16) -> u16 {
        self.slot_map()
            .iter()
            .find(|r| (r.start..=r.end).contains(&slot))
            .map(|r| r.primary)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// The port of the replica of the primary on `primary_port` (per `CLUSTER NODES` on a live node), waiting
    /// up to 10 s for that node to learn of it: just after a start, gossip may not have told every node yet.
    pub fn replica_of(&self, primary_port: u16) -> u16 {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match self.try_replica_of(primary_port) {
                Ok(port) => return port,
                Err(e) if Instant::now() > end => panic!("replica of {primary_port}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn try_replica_of(&self, primary_port: u16) -> Result<u16, String> {
        let id = self.node_id(primary_port);
        let port = self.any_live_port_but(primary_port);
        let view = cluster_nodes_at(port)?;
        view.iter()
            .find(|n| n.master_id == id && n.flags.contains("slave") && !n.flags.contains("fail"))
            .map(|n| n.port)
            .ok_or_else(|| format!("node {port} knows no live replica of {primary_port}"))
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
        RedisConn::open(port).unwrap_or_else(|e| panic!("connect to cluster node {port}: {e}"))
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

    /// The replica expected to take over from `port` if it is a primary now.
    fn heir_now(&self, port: u16) -> Option<u16> {
        let serves = self.slot_map().iter().any(|r| r.primary == port);
        if serves {
            self.try_replica_of(port).ok()
        } else {
            None
        }
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
        if let Err(e) = wait_node(&mut child, port, &dir) {
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

    /// Waits until the replica of `old_primary` (its replica when it was killed or frozen) is a primary
    /// serving slots, `old_primary` serves none, and every live node reports `cluster_state:ok` and the same
    /// slot map; returns the new primary's port. Panics after 30 s plus twice the node timeout.
    pub fn wait_failover(&self, old_primary: u16) -> u16 {
        let heir = self
            .with_node(old_primary, |n| n.heir)
            .or_else(|| self.try_replica_of(old_primary).ok())
            .unwrap_or_else(|| panic!("{old_primary} has no replica to take over"));
        let bound = WAIT + Duration::from_millis(2 * self.node_timeout_ms);
        let mut last = String::new();
        let done = try_wait_until(bound, || {
            let map = self.check_ok()?;
            if map.iter().any(|r| r.primary == old_primary) {
                return Err(format!("{old_primary} still serves slots"));
            }
            if !map.iter().any(|r| r.primary == heir) {
                return Err(format!("{heir} serves no slot"));
            }
            Ok(heir)
        })
        .map_err(|e| last = e);
        done.unwrap_or_else(|()| {
            panic!(
                "waited {} s for replica {heir} to take over from primary {old_primary}; last: {last}\n\
                 log of {heir}:\n{}",
                bound.as_secs(),
                self.log_tail(heir, 20)
            )
        })
    }

    /// The last `lines` lines of the log of the node on `port`.
    pub fn log_tail(&self, port: u16, lines: usize) -> String {
        let dir = self.with_node(port, |n| n.dir.clone());
        tail(&dir.join("redis.log"), lines)
    }

    /// Waits until every live node reports `cluster_state:ok` and the same slot map covering every slot.
    pub fn wait_ok(&self) {
        let bound = WAIT + Duration::from_millis(2 * self.node_timeout_ms);
        wait_until("the cluster to be ok", bound, || self.check_ok().map(drop));
    }

    /// Moves `slot` with its keys to the primary on `to_port`, live, as `redis-cli --cluster reshard` does
    /// (100 keys per `MIGRATE`), and waits until every live node sees the new owner.
    pub fn migrate_slot(&self, slot: u16, to_port: u16) {
        self.migrate_slot_each(slot, to_port, 100, |_| {});
    }

    /// [`Self::migrate_slot`] `keys_per_step` keys at a time, sleeping `pause_between_steps` once the slot is
    /// marked migrating and after every batch: slow enough for a load to meet the slot mid-move (`ASK`).
    pub fn migrate_slot_with(
        &self,
        slot: u16,
        to_port: u16,
        keys_per_step: usize,
        pause_between_steps: Duration,
    ) {
        self.migrate_slot_each(slot, to_port, keys_per_step, |_| {
            std::thread::sleep(pause_between_steps)
        });
    }

    /// [`Self::migrate_slot`] `keys_per_step` keys at a time, calling `between(keys moved so far)` once the
    /// slot is marked importing on the target and migrating on the source, and after every batch.
    pub fn migrate_slot_each(
        &self,
        slot: u16,
        to_port: u16,
        keys_per_step: usize,
        mut between: impl FnMut(usize),
    ) {
        assert!(slot < SLOTS, "slot {slot} is out of range");
        assert!(keys_per_step > 0, "keys_per_step must be positive");
        let from_port = self.primary_for_slot(slot);
        if from_port == to_port {
            return;
        }
        assert!(
            self.primaries().contains(&to_port),
            "{to_port} is not a primary serving slots"
        );
        let (from_id, to_id) = (self.node_id(from_port), self.node_id(to_port));
        let slot_s = slot.to_string();
        let mut from = self.conn(from_port);
        let mut to = self.conn(to_port);
        ok(
            &mut to,
            &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id],
        );
        ok(
            &mut from,
            &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id],
        );
        between(0);
        let (to_s, count_s) = (to_port.to_string(), keys_per_step.to_string());
        let mut moved = 0;
        loop {
            let keys = ok(&mut from, &["CLUSTER", "GETKEYSINSLOT", &slot_s, &count_s]);
            let keys: Vec<String> = keys
                .array()
                .unwrap_or_default()
                .iter()
                .filter_map(Reply::text)
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_s, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            ok(&mut from, &args);
            moved += keys.len();
            between(moved);
        }
        // The target first (it bumps its config epoch, so its claim wins), then the source, then the others.
        let others: Vec<u16> = self
            .primaries()
            .into_iter()
            .filter(|p| ![from_port, to_port].contains(p) && self.live_ports().contains(p))
            .collect();
        for port in [to_port, from_port].into_iter().chain(others) {
            ok(
                &mut self.conn(port),
                &["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id],
            );
        }
        let bound = WAIT + Duration::from_millis(2 * self.node_timeout_ms);
        wait_until(
            &format!("every node to see slot {slot} on {to_port}"),
            bound,
            || {
                let map = self.check_ok()?;
                match map.iter().find(|r| (r.start..=r.end).contains(&slot)) {
                    Some(r) if r.primary == to_port => Ok(()),
                    other => Err(format!("slot {slot} is on {other:?}")),
                }
            },
        );
    }

    /// Every live node reports `cluster_state:ok` and the same slot map, which covers every slot.
    fn check_ok(&self) -> Result<Vec<SlotRange>, String> {
        let mut agreed: Option<(u16, Vec<SlotRange>)> = None;
        for port in self.live_ports() {
            let info = cluster_info_at(port)?;
            let state = info.get("cluster_state").map_or("?", String::as_str);
            if state != "ok" {
                return Err(format!("node {port} reports cluster_state:{state}"));
            }
            let map = slot_map_at(port)?;
            match &agreed {
                None => agreed = Some((port, map)),
                Some((first, m)) if *m != map => {
                    return Err(format!(
                        "nodes {first} and {port} disagree on the slot map: {m:?} / {map:?}"
                    ))
                }
                Some(_) => {}
            }
        }
        let (_, map) = agreed.ok_or("every node is killed or frozen")?;
        let covered: u32 = map
            .iter()
            .map(|r| u32::from(r.end) - u32::from(r.start) + 1)
            .sum();
        if covered != u32::from(SLOTS) {
            return Err(format!("the slot map covers {covered} slots"));
        }
        Ok(map)
    }

    /// [`Self::check_ok`], every node knows all `total`, and every primary has its replica connected and
    /// synced.
    fn check_formed(&self, total: usize) -> Result<(), String> {
        let map = self.check_ok()?;
        for port in self.live_ports() {
            let known = cluster_info_at(port)?
                .get("cluster_known_nodes")
                .and_then(|v| v.parse::<usize>().ok());
            if known != Some(total) {
                return Err(format!("node {port} knows {known:?} nodes, not {total}"));
            }
        }
        // CLUSTER SLOTS leaves out a replica until its first sync is done: ask every node itself. A replica
        // that never finished a sync cannot take over (its data counts as too old), so this matters.
        let primaries: BTreeSet<u16> = map.iter().map(|r| r.primary).collect();
        for port in self.live_ports() {
            let info = info_at(port, "replication")?;
            let field = |k: &str| info.get(k).map_or("", String::as_str);
            if primaries.contains(&port) {
                let replicas = field("connected_slaves");
                if replicas != "1" || !field("slave0").contains("state=online") {
                    return Err(format!(
                        "primary {port}: connected_slaves:{replicas}, slave0:{}",
                        field("slave0")
                    ));
                }
            } else if field("master_link_status") != "up" {
                return Err(format!(
                    "replica {port}: master_link_status:{}",
                    field("master_link_status")
                ));
            }
        }
        Ok(())
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

/// Sends a command that must not fail.
fn ok(conn: &mut RedisConn, args: &[&str]) -> Reply {
    match conn.cmd(args) {
        Ok(Reply::Error(e)) => panic!("{} replied -{e}", args[..2].join(" ")),
        Ok(reply) => reply,
        Err(e) => panic!("{}: {e}", args[..2].join(" ")),
    }
}

/// Calls `check` every 50 ms until it succeeds, for at most `bound`; panics with its last error.
fn wait_until<T>(what: &str, bound: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    try_wait_until(bound, check)
        .unwrap_or_else(|e| panic!("waited {} s for {what}; last: {e}", bound.as_secs()))
}

/// Calls `check` every 50 ms until it succeeds, for at most `bound`; fails with its last error.
fn try_wait_until<T>(
    bound: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let end = Instant::now() + bound;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > end => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn query(port: u16, args: &[&str]) -> Result<Reply, String> {
    let reply = RedisConn::open(port)
        .and_then(|mut c| c.cmd(args))
        .map_err(|e| format!("{} on {port}: {e}", args.join(" ")))?;
    match reply {
        Reply::Error(e) => Err(format!("{} on {port}: -{e}", args.join(" "))),
        r => Ok(r),
    }
}

fn fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

fn cluster_info_at(port: u16) -> Result<HashMap<String, String>, String> {
    let text = query(port, &["CLUSTER", "INFO"])?
        .text()
        .unwrap_or_default();
    Ok(fields(&text))
}

fn info_at(port: u16, section: &str) -> Result<HashMap<String, String>, String> {
    let text = query(port, &["INFO", section])?.text().unwrap_or_default();
    Ok(fields(&text))
}

/// `CLUSTER SLOTS` on one node, sorted by slot (replicas sorted by port).
fn slot_map_at(port: u16) -> Result<Vec<SlotRange>, String> {
    let reply = query(port, &["CLUSTER", "SLOTS"])?;
    let bad = || format!("CLUSTER SLOTS on {port}: unexpected reply {reply:?}");
    let node_port =
        |node: &Reply| -> Option<u16> { u16::try_from(node.array()?.get(1)?.int()?).ok() };
    let mut map = Vec::new();
    for entry in reply.array().ok_or_else(bad)? {
        let parts = entry.array().ok_or_else(bad)?;
        let slot = |i: usize| {
            parts
                .get(i)
                .and_then(Reply::int)
                .and_then(|n| u16::try_from(n).ok())
        };
        let (start, end) = (slot(0).ok_or_else(bad)?, slot(1).ok_or_else(bad)?);
        let primary = parts.get(2).and_then(node_port).ok_or_else(bad)?;
        let mut replicas: Vec<u16> = parts[3..].iter().filter_map(node_port).collect();
        replicas.sort_unstable();
        map.push(SlotRange {
            start,
            end,
            primary,
            replicas,
        });
    }
    map.sort();
    Ok(map)
}

struct NodeLine {
    port: u16,
    flags: String,
    master_id: String,
}

/// `CLUSTER NODES` on one node: each node's port, flags and primary's id (`-` for a primary).
fn cluster_nodes_at(port: u16) -> Result<Vec<NodeLine>, String> {
    let text = query(port, &["CLUSTER", "NODES"])?
        .text()
        .unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            // <id> <ip:port@cport[,hostname]> <flags> <master> ...
            let addr = f.get(1)?.split(['@', ',']).next()?;
            Some(NodeLine {
                port: addr.rsplit_once(':')?.1.parse().ok()?,
                flags: (*f.get(2)?).to_owned(),
                master_id: (*f.get(3)?).to_owned(),
            })
        })
        .collect())
}

/// Waits until the node just spawned on `port` answers as itself (its INFO names its own pid), or fails
/// when it exits (its port was taken) or does not answer within 30 s.
fn wait_node(child: &mut Child, port: u16, dir: &Path) -> Result<(), String> {
    let log = || tail(&dir.join("redis.log"), 5);
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("node {port} exited ({status}):\n{}", log()));
        }
        if let Ok(info) = info_at(port, "server") {
            return match info.get("process_id") {
                Some(pid) if *pid == child.id().to_string() => Ok(()),
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

/// Ports handed out in this process, never handed out twice (the check below cannot see a node that is
/// being started but does not listen yet).
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port in 12000..22000 that is bindable, with its bus port (port + 10000) bindable too.
fn reserve_port() -> u16 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
    }

    /// Values from `CLUSTER KEYSLOT` of redis-server 7.0.
    #[test]
    fn slot_of_matches_cluster_keyslot() {
        for (key, slot) in [
            ("P:{3}:log", 1584),
            ("P:{17}:day", 12304),
            ("foo", 12182),
            ("bar", 5061),
            ("{user1000}.following", 3443),
            ("{}x", 10595),
            ("a{}{b}", 15033),
            ("{a", 10276),
            ("x{b}y{c}", 3300),
            ("123456789", 12739),
            ("", 0),
        ] {
            assert_eq!(slot_of(key), slot, "{key}");
        }
    }
}
