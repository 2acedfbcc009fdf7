//! What the nodes of a test's cluster report (the slot map, the nodes, replication), read with the test's own
//! client, and the waits on it: formed, ok, a failover done.

use super::slots::SLOTS;
use super::{RedisCluster, WAIT};
use crate::redis_access::RedisAccess;
use crate::resp::{RedisConn, Reply};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use topk_core::redis::Info;

/// One entry of `CLUSTER SLOTS`: a range of slots, the port of the primary serving it and of its replicas.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub primary: u16,
    pub replicas: Vec<u16>,
}

impl RedisCluster {
    /// The slot map as a live node sees it, sorted by slot.
    pub fn slot_map(&self) -> Vec<SlotRange> {
        let port = self.any_live_port();
        slot_map_at(&self.access, port).unwrap_or_else(|e| panic!("CLUSTER SLOTS on {port}: {e}"))
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
        let view = cluster_nodes_at(&self.access, port)?;
        view.iter()
            .find(|n| n.master_id == id && n.flags.contains("slave") && !n.flags.contains("fail"))
            .map(|n| n.port)
            .ok_or_else(|| format!("node {port} knows no live replica of {primary_port}"))
    }

    /// The replica expected to take over from `port` if it is a primary now.
    pub(super) fn heir_now(&self, port: u16) -> Option<u16> {
        let serves = self.slot_map().iter().any(|r| r.primary == port);
        if serves {
            self.try_replica_of(port).ok()
        } else {
            None
        }
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

    /// Waits until every live node reports `cluster_state:ok` and the same slot map covering every slot.
    pub fn wait_ok(&self) {
        let bound = WAIT + Duration::from_millis(2 * self.node_timeout_ms);
        wait_until("the cluster to be ok", bound, || self.check_ok().map(drop));
    }

    /// Every live node reports `cluster_state:ok` and the same slot map, which covers every slot.
    pub(super) fn check_ok(&self) -> Result<Vec<SlotRange>, String> {
        let mut agreed: Option<(u16, Vec<SlotRange>)> = None;
        for port in self.live_ports() {
            let info = cluster_info_at(&self.access, port)?;
            let state = info.field("cluster_state").unwrap_or("?");
            if state != "ok" {
                return Err(format!("node {port} reports cluster_state:{state}"));
            }
            let map = slot_map_at(&self.access, port)?;
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
    pub(super) fn check_formed(&self, total: usize) -> Result<(), String> {
        let map = self.check_ok()?;
        for port in self.live_ports() {
            let known = cluster_info_at(&self.access, port)?
                .field("cluster_known_nodes")
                .and_then(|v| v.parse::<usize>().ok());
            if known != Some(total) {
                return Err(format!("node {port} knows {known:?} nodes, not {total}"));
            }
        }
        // CLUSTER SLOTS leaves out a replica until its first sync is done: ask every node itself. A replica
        // that never finished a sync cannot take over (its data counts as too old), so this matters.
        let primaries: BTreeSet<u16> = map.iter().map(|r| r.primary).collect();
        for port in self.live_ports() {
            let info = info_at(&self.access, port, "replication")?;
            let field = |k: &str| info.field(k).unwrap_or("");
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

/// Calls `check` every 50 ms until it succeeds, for at most `bound`; panics with its last error.
pub(super) fn wait_until<T>(
    what: &str,
    bound: Duration,
    check: impl FnMut() -> Result<T, String>,
) -> T {
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

fn query(access: &RedisAccess, port: u16, args: &[&str]) -> Result<Reply, String> {
    let reply = RedisConn::open_with(port, access)
        .and_then(|mut c| c.cmd(args))
        .map_err(|e| format!("{} on {port}: {e}", args.join(" ")))?;
    match reply {
        Reply::Error(e) => Err(format!("{} on {port}: -{e}", args.join(" "))),
        r => Ok(r),
    }
}

/// `CLUSTER INFO` on one node (the same `field:value` text as INFO).
fn cluster_info_at(access: &RedisAccess, port: u16) -> Result<Info, String> {
    let text = query(access, port, &["CLUSTER", "INFO"])?
        .text()
        .unwrap_or_default();
    Ok(Info::parse(&text))
}

/// `INFO section` on one node.
pub(super) fn info_at(access: &RedisAccess, port: u16, section: &str) -> Result<Info, String> {
    let text = query(access, port, &["INFO", section])?
        .text()
        .unwrap_or_default();
    Ok(Info::parse(&text))
}

/// `CLUSTER SLOTS` on one node, sorted by slot (replicas sorted by port).
fn slot_map_at(access: &RedisAccess, port: u16) -> Result<Vec<SlotRange>, String> {
    let reply = query(access, port, &["CLUSTER", "SLOTS"])?;
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
fn cluster_nodes_at(access: &RedisAccess, port: u16) -> Result<Vec<NodeLine>, String> {
    let text = query(access, port, &["CLUSTER", "NODES"])?
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

/// The loopback port of the node that serves `key` behind `url`: the node of a `redis://` URL, or the primary
/// that owns the key's slot behind a `redis-cluster://` URL (asked of its first node). For tests that observe
/// one key with a client of their own.
pub fn port_serving(url: &str, key: &str) -> u16 {
    let port = |addr: &str| -> u16 {
        addr.rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or(6379)
    };
    let Some(cluster) = url.strip_prefix("redis-cluster://") else {
        return port(url);
    };
    let first = port(cluster.split(['?', '/']).next().unwrap_or(cluster));
    let slot = super::slot_of(key);
    slot_map_at(&RedisAccess::default(), first)
        .unwrap_or_else(|e| panic!("CLUSTER SLOTS on {first}: {e}"))
        .into_iter()
        .find(|r| (r.start..=r.end).contains(&slot))
        .map(|r| r.primary)
        .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
}
