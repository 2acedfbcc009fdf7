//! Which primary serves each partition on Redis Cluster, so that a group append sends one script per node
//! instead of one per partition (`append.rs`): the per-call cost of a script is most of what an append costs a
//! cluster at 64 partitions.
//!
//! The map is read from CLUSTER SLOTS when first needed, again after [`REREAD`], and again after a node's call
//! failed ([`NodeMap::forget`]; per-partition calls serve meanwhile). A stale map costs a failed call, never a
//! wrong write: the script reads every key it will write before it writes one, and Redis refuses a script's
//! read of a key this node does not serve right now (a slot moved away, or a key not yet or no longer here
//! while its slot migrates), so the call fails having written nothing and its partitions go one by one.

use crate::keys::{hash_slot, Partition};
use crate::redis::connection::client::{Value, ValueExt};
use crate::redis::{Result, Shared};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a map read from the cluster is trusted before it is read again.
const REREAD: Duration = Duration::from_secs(10);

/// How long after a failed node call appends go one call per partition before the map is read again (a slot
/// migration fails node calls until it ends; reading the map for every group meanwhile buys nothing).
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The primary (`host:port`) of each partition, in partition order, as last read; shared by every handle of
/// a store.
#[derive(Default)]
pub(in crate::redis) struct NodeMap {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    known: Option<(Instant, Arc<Vec<String>>)>,
    /// Until when appends go one call per partition.
    paused_until: Option<Instant>,
}

impl NodeMap {
    /// Forgets the map after a node call failed: the next groups go per partition for a moment, and the map is
    /// read again after that.
    pub(in crate::redis) fn forget(&self) {
        let mut state = self.state.lock().expect("node map lock");
        state.known = None;
        state.paused_until = Some(Instant::now() + PAUSE_AFTER_FAILURE);
    }
}

impl Shared {
    /// The partitions of `partitions` grouped by the primary that serves them, one group per node (in the
    /// order the partitions came); `None` when the map is unknown or paused after a failure, or cannot be
    /// read: then each partition is its own call.
    pub(in crate::redis) async fn by_node(
        &self,
        partitions: &[Partition],
    ) -> Option<Vec<Vec<Partition>>> {
        let nodes = self.node_map().await?;
        let mut groups: Vec<(&str, Vec<Partition>)> = Vec::new();
        for &p in partitions {
            let node = nodes.get(usize::from(p))?.as_str();
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, group)) => group.push(p),
                None => groups.push((node, vec![p])),
            }
        }
        Some(groups.into_iter().map(|(_, group)| group).collect())
    }

    async fn node_map(&self) -> Option<Arc<Vec<String>>> {
        {
            let state = self.nodes.state.lock().expect("node map lock");
            if state.paused_until.is_some_and(|t| Instant::now() < t) {
                return None;
            }
            if let Some((read_at, nodes)) = &state.known {
                if read_at.elapsed() < REREAD {
                    return Some(nodes.clone());
                }
            }
        }
        match self.read_node_map().await {
            Ok(nodes) => {
                let nodes = Arc::new(nodes);
                let mut state = self.nodes.state.lock().expect("node map lock");
                state.known = Some((Instant::now(), nodes.clone()));
                state.paused_until = None;
                Some(nodes)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the cluster's slot map; appending per partition");
                self.nodes.forget();
                None
            }
        }
    }

    /// Each partition's primary from CLUSTER SLOTS (`[[start, end, [host, port, id], replicas...], ...]`); a
    /// partition whose slot no range covers (the cluster is changing) fails the read.
    async fn read_node_map(&self) -> Result<Vec<String>> {
        let slots: Vec<Value> = self
            .on_key("CLUSTER", &self.keys.log(0), vec!["SLOTS"])
            .await?;
        let ranges: Vec<(u16, u16, String)> = slots
            .into_iter()
            .filter_map(|range| {
                let mut range = range.into_array().into_iter();
                let start = u16::try_from(range.next()?.as_i64()?).ok()?;
                let end = u16::try_from(range.next()?.as_i64()?).ok()?;
                let primary = range.next()?.into_array();
                let host = primary.first()?.as_string()?;
                let port = primary.get(1)?.as_i64()?;
                Some((start, end, format!("{host}:{port}")))
            })
            .collect();
        self.keys
            .all_partitions()
            .map(|p| {
                let slot = hash_slot(self.keys.log(p).as_bytes());
                ranges
                    .iter()
                    .find(|(start, end, _)| (*start..=*end).contains(&slot))
                    .map(|(_, _, node)| node.clone())
                    .ok_or_else(|| {
                        crate::redis::StoreError::Reply(format!(
                            "no primary serves slot {slot} in CLUSTER SLOTS"
                        ))
                    })
            })
            .collect()
    }
}
