//! Which primary serves each partition on Redis Cluster, so that a group append sends one script per node
//! instead of one per partition (`append_cluster.rs`): at 64 partitions the per-call cost of a script was most
//! of what a batch's append cost a cluster when batches come one at a time.
//!
//! The map is read from CLUSTER SLOTS (within a quarter of the store's timeout) when first needed, again
//! after [`REREAD`], and again after a node's call failed ([`NodeMap::forget`]; per-partition calls serve
//! meanwhile). A stale map costs a failed call, never a wrong write: the script reads every key it will
//! write before it writes one, and Redis refuses a script's read of a key this node does not serve right now
//! (a slot moved away, or a key not yet or no longer here while its slot migrates), so the call fails having
//! written nothing and its partitions go one by one. (Calls at a given entry time never span partitions: an
//! XADD Redis refuses would fail one after its first writes; `append_cluster.rs`.)

use crate::keys::{hash_slot, Partition};
use crate::redis::connection::client::{Route, Value, ValueExt};
use crate::redis::{Result, Shared, StoreError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a map read from the cluster is trusted before it is read again.
const REREAD: Duration = Duration::from_secs(10);

/// How long after a failed node call appends go one call per partition before the map is read again (a slot
/// migration fails node calls until it ends; reading the map for every group meanwhile buys nothing).
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The primary (its node id) of each partition, in partition order, as last read; shared by every handle of a
/// store.
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
        let nodes = self.node_map(*partitions.first()?).await?;
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

    /// The map as last read, read again (from the primary of partition `via`) when it is older than
    /// [`REREAD`].
    async fn node_map(&self, via: Partition) -> Option<Arc<Vec<String>>> {
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
        // Bounded well below the store's timeout, once: the group's own calls must still fit in it.
        let read = tokio::time::timeout(self.timeout / 4, self.read_node_map(via)).await;
        match read.unwrap_or_else(|_| Err(StoreError::Reply("CLUSTER SLOTS timed out".into()))) {
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

    /// Each partition's primary, by node id (unlike the address, it names one node however the nodes announce
    /// themselves), read on the primary of partition `via`; a partition whose slot no range covers (the
    /// cluster is changing) fails the read.
    async fn read_node_map(&self, via: Partition) -> Result<Vec<String>> {
        let ranges = self.slot_ranges(&self.keys.log(via)).await?;
        self.keys
            .all_partitions()
            .map(|p| {
                let slot = hash_slot(self.keys.log(p).as_bytes());
                primary_of(&ranges, slot)
                    .map(|r| r.id.clone())
                    .ok_or_else(|| {
                        StoreError::Reply(format!("no primary serves slot {slot} in CLUSTER SLOTS"))
                    })
            })
            .collect()
    }

    /// The cluster's slot ranges and their primaries (CLUSTER SLOTS, asked once on the node of `via`'s slot).
    pub(in crate::redis) async fn slot_ranges(&self, via: &str) -> Result<Vec<SlotRange>> {
        // [[start, end, [host, port, id], replicas...], ...]
        let slots: Vec<Value> = self
            .query_routed(
                &::redis::cmd("CLUSTER").arg("SLOTS").clone(),
                Route::Key(via.to_owned()),
            )
            .await?;
        Ok(slots
            .into_iter()
            .filter_map(|range| {
                let mut range = range.into_array().into_iter();
                let start = u16::try_from(range.next()?.as_i64()?).ok()?;
                let end = u16::try_from(range.next()?.as_i64()?).ok()?;
                let primary = range.next()?.into_array();
                let host = primary.first()?.as_string()?;
                let port = primary.get(1)?.as_i64()?;
                let id = primary.get(2)?.as_string()?;
                Some(SlotRange {
                    start,
                    end,
                    addr: format!("{host}:{port}"),
                    id,
                })
            })
            .collect())
    }
}

/// A range of hash slots and the primary serving it, as CLUSTER SLOTS lists them.
pub(in crate::redis) struct SlotRange {
    start: u16,
    end: u16,
    /// `host:port`, as the node announces itself (the benchmark's measures name nodes by it).
    #[cfg_attr(not(feature = "bench"), allow(dead_code))]
    pub addr: String,
    /// The node id.
    pub id: String,
}

/// The range of `ranges` that holds `slot`.
pub(in crate::redis) fn primary_of(ranges: &[SlotRange], slot: u16) -> Option<&SlotRange> {
    ranges.iter().find(|r| (r.start..=r.end).contains(&slot))
}
