//! Waiting for replicas (`TOPK_REDIS_WAIT_REPLICAS`): an append, a source's records or a close of minutes
//! returns only once that many replicas of every primary that took a write have it, so a failover after the
//! answer cannot lose it.

use crate::redis::{Info, Result, Shared, StoreError};
use futures::future::join_all;
use std::collections::BTreeMap;
use std::time::Instant;

/// The primaries that took a write, by replication ID (it changes when a replica takes over), each with a key
/// of a partition it holds, for WAIT.
pub(in crate::redis) type Writers = BTreeMap<String, String>;

impl Shared {
    /// The replicas' acknowledged offsets and the primary's own offset, from INFO on the node that owns `key`,
    /// which must still be the primary with replication ID `replid`.
    pub(in crate::redis) async fn replication(
        &self,
        key: &str,
        replid: &str,
    ) -> Result<(Vec<u64>, u64)> {
        // On the connection WAIT runs on: any command there moves what its next WAIT covers to the
        // primary's offset now, past the write being confirmed.
        let info: String = self.on_key_waiting("INFO", key, &["replication"]).await?;
        let info = Info::parse(&info);
        if info.field("master_replid") != Some(replid) || info.field("role") != Some("master") {
            // Another primary took over since the write: it may not have it.
            return Err(StoreError::NotReplicated {
                acked: 0,
                wanted: self.wait_replicas,
            });
        }
        let offset = info.number("master_repl_offset").unwrap_or(0.0) as u64;
        let acked = info
            .replicas()
            .into_iter()
            .filter(|r| r.state == "online")
            .map(|r| r.offset)
            .collect();
        Ok((acked, offset))
    }

    /// With `wait_replicas` > 0: on every primary that took a part of the batch, WAIT until that many
    /// replicas have it, then check it on the primary itself (INFO: the same replication ID, and that many
    /// replicas at or past the offset it had after the write). The check makes the answer independent of the
    /// connection WAIT ran on: after a reconnect WAIT knows nothing of the write, and after a failover the new
    /// primary's ID differs. Fails with [`StoreError::NotReplicated`] when the replicas do not confirm within
    /// half the store's timeout. WAIT runs on a connection of its own: while it waits for a lagging replica,
    /// every other command to the node goes on.
    pub(in crate::redis) async fn wait_for_replicas(&self, writers: Writers) -> Result<()> {
        let wanted = self.wait_replicas;
        if wanted == 0 {
            return Ok(());
        }
        let give_up = Instant::now() + self.timeout / 2;
        let checks = join_all(writers.iter().map(|(replid, key)| async move {
            // A keyed command first: WAIT and INFO name no key, so on a cluster only this one can meet a
            // MOVED, which makes the connection learn of a failover (it would ask the old primary forever).
            let _: i64 = self.on_key_waiting("EXISTS", key, &[key.as_str()]).await?;
            let (_, target) = self.replication(key, replid).await?;
            loop {
                let left = give_up
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .max(1);
                let _: i64 = self
                    .on_key_waiting("WAIT", key, &[&wanted.to_string(), &left.to_string()])
                    .await?;
                let (acked, _) = self.replication(key, replid).await?;
                let confirmed = acked.iter().filter(|&&offset| offset >= target).count() as u32;
                if confirmed >= wanted {
                    return Ok(());
                }
                if Instant::now() >= give_up {
                    return Err(StoreError::NotReplicated {
                        acked: confirmed,
                        wanted,
                    });
                }
            }
        }))
        .await;
        checks.into_iter().collect()
    }
}
