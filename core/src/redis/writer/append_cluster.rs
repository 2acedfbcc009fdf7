//! A group append on Redis Cluster (`append.rs` holds the rest of the append): each producer's key is claimed
//! for its batch first (`lua/claim_key.lua`), then one script goes to each primary for the partitions it
//! serves (`nodes.rs`), each partition recording every batch's key with the entry that carries it. A call
//! that fails sends its partitions again one call per partition, under the batches' keys, until the store's
//! timeout. Every call looks every key record up before it writes (the cluster client resends a command lost
//! with its connection, so any call, even under a key generated here, may have run before): a retry finds
//! what an earlier try stored, and stores only what is missing.

use super::append::{Batch, Guard, Keyed, Part, Taken, Written};
use super::replicas::Writers;
use super::AppendOutcome;
use crate::keys::Partition;
use crate::redis::{LogWriter, Result, StoreError};
use futures::future::join_all;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// First pause before a failed part of a batch is sent again under its key.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

impl LogWriter {
    /// On a cluster: each producer's key claimed for its batch first, then one script per primary for the
    /// partitions it serves (`nodes.rs`), each partition recording every batch's key with the entry that carries
    /// it; the partitions whose call failed are sent again one call per partition, under the batches' keys,
    /// until the store's timeout.
    pub(super) async fn group_on_cluster(
        &self,
        batches: &[Batch],
        how: Written<'_>,
        writers: &mut Writers,
    ) -> Vec<Result<AppendOutcome>> {
        let claims = join_all(batches.iter().map(|b| async move {
            match &b.key {
                Some(k) if !k.fresh => self.claim_key(k, how.retention_ms).await,
                _ => Ok(()),
            }
        }))
        .await;
        // Per batch: refused or failed before anything was written, or its parts' outcomes so far.
        let mut verdict: Vec<Option<Result<AppendOutcome>>> = claims
            .into_iter()
            .map(|claim| claim.err().map(Err))
            .collect();
        let mut stored = vec![false; batches.len()];
        let mut pending: BTreeMap<Partition, Vec<usize>> = BTreeMap::new();
        for (b, batch) in batches.iter().enumerate() {
            if verdict[b].is_none() {
                for part in &batch.parts {
                    // Once per partition: a batch with dated views has several parts on one partition.
                    let members = pending.entry(part.partition).or_default();
                    if members.last() != Some(&b) {
                        members.push(b);
                    }
                }
            }
        }
        let partitions: Vec<Partition> = pending.keys().copied().collect();
        // Entries at a given time (`<ms>-*`: replays and tests) go one call per partition: Redis refuses an
        // XADD behind a log's newest entry, and a call spanning partitions would fail after its first logs.
        let by_node = match how.id {
            "*" => self.by_node(&partitions).await,
            _ => None,
        };
        let mut calls = by_node.unwrap_or_else(|| partitions.iter().map(|&p| vec![p]).collect());
        let give_up = Instant::now() + self.timeout;
        let mut pause = RETRY_PAUSE;
        let mut failed: BTreeMap<usize, StoreError> = BTreeMap::new();
        loop {
            let answers = join_all(
                calls
                    .iter()
                    .map(|call| self.partitions_call(batches, &pending, call, how)),
            )
            .await;
            let mut retry: BTreeMap<Partition, Vec<usize>> = BTreeMap::new();
            failed.clear();
            for (call, (taken, own)) in calls.iter().zip(answers) {
                writers.extend(own);
                match taken {
                    Ok(taken) => {
                        let members = call.iter().flat_map(|p| pending[p].iter());
                        for (&b, t) in members.zip(taken) {
                            match t {
                                Taken::Stored => stored[b] = true,
                                Taken::Before => {}
                                // Its key holds another batch on this partition: never retried.
                                Taken::Reused => verdict[b] = Some(Err(StoreError::KeyReused)),
                            }
                        }
                    }
                    Err(e) => {
                        if call.len() > 1 {
                            // The node's partitions moved, or one is migrating: per partition for now.
                            self.nodes.forget();
                        }
                        for p in call {
                            for &b in &pending[p] {
                                failed.entry(b).or_insert_with(|| e.clone());
                            }
                            retry.insert(*p, pending[p].clone());
                        }
                    }
                }
            }
            retry.retain(|_, members| {
                members.retain(|b| verdict[*b].is_none());
                !members.is_empty()
            });
            if retry.is_empty() || Instant::now() + pause >= give_up {
                break;
            }
            tracing::debug!(
                parts = retry.len(),
                "appending again under the batches' keys"
            );
            tokio::time::sleep(pause).await;
            pause *= 2;
            pending = retry;
            calls = pending.keys().map(|&p| vec![p]).collect();
        }
        (0..batches.len())
            .map(|b| match verdict[b].take() {
                Some(v) => v,
                None => match failed.remove(&b) {
                    Some(e) => Err(e),
                    None if stored[b] => Ok(AppendOutcome::Stored),
                    // Found stored under a key generated here: this append's own earlier try (a call that
                    // ran but lost its reply), not a producer's retry.
                    None if batches[b].key.as_ref().is_some_and(|k| k.fresh) => {
                        Ok(AppendOutcome::Stored)
                    }
                    None => Ok(AppendOutcome::AlreadyStored),
                },
            })
            .collect()
    }

    /// One script for the `partitions` of one primary: on each, the parts of the batches `pending` names for
    /// it, each guarded by its batch's key record there, looked up first. Answers per (partition, batch), in
    /// that order.
    async fn partitions_call(
        &self,
        batches: &[Batch],
        pending: &BTreeMap<Partition, Vec<usize>>,
        partitions: &[Partition],
        how: Written<'_>,
    ) -> (Result<Vec<Taken>>, Writers) {
        let mut parts: Vec<Vec<Part>> = Vec::new();
        let mut guards: Vec<Option<Guard>> = Vec::new();
        let mut members: Vec<&Batch> = Vec::new();
        for p in partitions {
            for &b in &pending[p] {
                let batch = &batches[b];
                parts.push(
                    batch
                        .parts
                        .iter()
                        .filter(|part| part.partition == *p)
                        .cloned()
                        .collect(),
                );
                guards.push(batch.key.as_ref().map(|k| Guard {
                    record: self.keys.idempotency(*p, &k.key),
                    check: true,
                }));
                members.push(batch);
            }
        }
        let parts: Vec<&[Part]> = parts.iter().map(Vec::as_slice).collect();
        let mut own = Writers::new();
        let taken = self
            .append_script(&parts, &members, &guards, how, &mut own)
            .await;
        (taken, own)
    }

    /// Claims the keys generated here that go back to their producers with a failure, each for its batch, as a
    /// producer's own key is claimed before its batch is appended. A generated key has records only on the
    /// partitions its batch reached: unclaimed, another batch sent under it would be stored on every partition
    /// this one did not reach. Best effort, within a quarter of the store's timeout (the failure has
    /// taken its time already): a key left unclaimed is handed back all the same, as sending the same batch
    /// again under it stays safe.
    pub(super) async fn claim_handed_back<'a>(
        &self,
        keys: impl Iterator<Item = &'a Keyed>,
        retention_ms: u128,
    ) {
        let claims = join_all(keys.map(|k| self.claim_key(k, retention_ms)));
        let unclaimed = match tokio::time::timeout(self.timeout / 4, claims).await {
            Ok(results) => results
                .into_iter()
                .filter_map(Result::err)
                .last()
                .map(|e| e.to_string()),
            Err(_) => Some("no answer in time".to_owned()),
        };
        if let Some(e) = unclaimed {
            tracing::warn!(
                error = %e,
                "a key handed back with a failed append could not be claimed for its batch: within its \
                 retention, another batch sent under it may be stored where this one was not"
            );
        }
    }

    /// Claims `k` for its batch on its own partition ([`crate::keys::KeySchema::idempotency_claim`]);
    /// refuses ([`StoreError::KeyReused`]) a key another batch holds.
    async fn claim_key(&self, k: &Keyed, retention_ms: u128) -> Result<()> {
        let claim = self.keys.idempotency_claim(&k.key);
        let args = vec![k.fingerprint.clone(), retention_ms.to_string()];
        let ours: i64 = self
            .eval(&self.scripts.claim_key, vec![claim], args)
            .await?;
        match ours {
            1 => Ok(()),
            _ => Err(StoreError::KeyReused),
        }
    }
}
