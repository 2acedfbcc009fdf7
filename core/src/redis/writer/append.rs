//! Appending a batch to the log: one entry per partition it touches (`lua/append.lua`).
//!
//! On one node the batch is one script, stored whole or not at all. On Redis Cluster no script may touch two
//! partitions (their slots live on different nodes), so each partition's entry is its own script, and the
//! batch is made exactly-once by its `Idempotency-Key` instead: every partition records the key with its
//! entry, so sending the batch again with the same key stores only the parts that are missing. A batch sent
//! without a key gets one generated here; when a part fails, the error carries that key
//! ([`StoreError::Incomplete`]) so the producer can complete the batch with it.
//!
//! With `wait_replicas` > 0, an append returns only once WAIT confirms its entries on that many replicas of
//! every node that took a part, so a failover after the answer cannot lose them.

use crate::batch::{encode_lines, LINES_FIELD};
use crate::domain::{IdempotencyKey, VideoId};
use crate::keys::Partition;
use crate::redis::connection::client::{Value, ValueExt};
use crate::redis::Info;
use crate::redis::{LogWriter, Result, Shared, StoreError};
use futures::future::join_all;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What became of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The batch's entries are in the log now.
    Stored,
    /// An earlier request with the same `Idempotency-Key` stored this batch; nothing was written again.
    AlreadyStored,
}

/// First pause before a failed part of a batch is sent again under its key.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// One partition's part of a batch: its `<video> <n>` lines.
type Part = (Partition, String);

/// The primaries that took a part of a batch, by replication ID (it changes when a replica takes over), each
/// with a key of a partition it holds, for WAIT.
type Writers = Mutex<BTreeMap<String, String>>;

/// The key a batch is appended under, and how long each partition keeps its record.
#[derive(Clone, Copy)]
struct Keyed<'a> {
    key: &'a IdempotencyKey,
    retention: Duration,
    /// The SHA-1 of the whole batch: a partition's record holds it, so the same key with another batch is
    /// told apart on every partition, not only on those whose lines differ.
    fingerprint: &'a str,
    fresh: Fresh,
}

/// Whether a key was generated for this append (it cannot have been used before).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Yes,
    No,
}

impl LogWriter {
    /// Appends a validated batch to the log. Returns once Redis has the entries (and, with `wait_replicas`,
    /// its replicas). On one node the batch is stored whole or not at all; on a cluster, see the module.
    pub async fn append(&self, views: &[(VideoId, u64)]) -> Result<()> {
        self.append_with(views, "*", None).await.map(|_| ())
    }

    /// [`Self::append`] under a producer's `Idempotency-Key`, recorded on each partition with its entry for
    /// `retention`: a batch sent again with the same key within it stores only what is missing
    /// ([`AppendOutcome::AlreadyStored`] when nothing was); the same key with another batch is refused
    /// ([`StoreError::KeyReused`]) and stores nothing.
    pub async fn append_idempotent(
        &self,
        views: &[(VideoId, u64)],
        key: &IdempotencyKey,
        retention: Duration,
    ) -> Result<AppendOutcome> {
        self.append_with(views, "*", Some((key, retention, Fresh::No)))
            .await
    }

    /// [`Self::append`] with the event time given: the entries get ids `<at_ms>-<seq>`. Redis refuses a time
    /// before the log's last entry. For replays and tests that inject time.
    pub async fn append_at(&self, views: &[(VideoId, u64)], at_ms: i64) -> Result<()> {
        self.append_with(views, &format!("{at_ms}-*"), None)
            .await
            .map(|_| ())
    }

    async fn append_with(
        &self,
        views: &[(VideoId, u64)],
        id: &str,
        key: Option<(&IdempotencyKey, Duration, Fresh)>,
    ) -> Result<AppendOutcome> {
        // On a cluster, and wherever replicas are awaited, every append has a key: one is generated for a
        // batch sent without, so that an append that may have stored something (a part on a cluster; the
        // whole batch, unconfirmed, on one node) hands back the key that completes it without doubling it. A
        // fresh key cannot have been used before, so it is not claimed or looked for first.
        let generated;
        let key = match key {
            None if self.hands_back_keys() => {
                generated = IdempotencyKey::generate();
                Some((&generated, self.generated_key_retention, Fresh::Yes))
            }
            key => key,
        };
        let parts = self.split(views);
        // Only a keyed append needs the batch's fingerprint: a POST without a key on one node skips the hash.
        let fingerprint = key.map(|_| batch_fingerprint(&parts));
        let keyed =
            key.zip(fingerprint.as_deref())
                .map(|((key, retention, fresh), fingerprint)| Keyed {
                    key,
                    retention,
                    fingerprint,
                    fresh,
                });
        let writers = Writers::default();
        let outcome = match keyed {
            Some(keyed) if self.cluster => self.append_each(&parts, id, keyed, &writers).await,
            keyed => self.append_parts(&parts, id, keyed, &writers).await,
        };
        let outcome = match outcome {
            Ok(outcome) => self
                .wait_for_replicas(writers.into_inner().expect("writers lock"))
                .await
                .map(|()| outcome),
            failed => failed,
        };
        match (outcome, keyed) {
            (Err(e), Some(k)) if self.hands_back_keys() && !matches!(e, StoreError::KeyReused) => {
                Err(StoreError::Incomplete {
                    key: k.key.clone(),
                    cause: Box::new(e),
                })
            }
            (outcome, _) => outcome,
        }
    }

    /// Whether a failed append may have stored something (a part on a cluster, or a batch no replica
    /// confirmed): its error then carries the key to send it again with ([`StoreError::Incomplete`]).
    fn hands_back_keys(&self) -> bool {
        self.cluster || self.wait_replicas > 0
    }

    /// On a cluster: the key claimed for this batch first (`lua/claim_key.lua`), so that the same key with
    /// another batch stores nothing whatever its partitions, then one script per partition, all at once, and
    /// the parts that fail sent again under the key until the store's timeout.
    async fn append_each(
        &self,
        parts: &[Part],
        id: &str,
        keyed: Keyed<'_>,
        writers: &Writers,
    ) -> Result<AppendOutcome> {
        if keyed.fresh == Fresh::No {
            self.claim_key(keyed).await?;
        }
        let give_up = Instant::now() + self.timeout;
        let mut pending: Vec<Part> = parts.to_vec();
        let mut stored_any = false;
        let mut pause = RETRY_PAUSE;
        loop {
            let results = join_all(pending.iter().map(|part| {
                self.append_parts(std::slice::from_ref(part), id, Some(keyed), writers)
            }))
            .await;
            let mut failed = Vec::new();
            let mut first_error = None;
            for (part, result) in pending.iter().zip(results) {
                match result {
                    Ok(AppendOutcome::Stored) => stored_any = true,
                    Ok(AppendOutcome::AlreadyStored) => {}
                    // A reused key is the verdict that matters: it is never retried.
                    Err(StoreError::KeyReused) => return Err(StoreError::KeyReused),
                    Err(e) => {
                        failed.push(part.clone());
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                None if stored_any => return Ok(AppendOutcome::Stored),
                None => return Ok(AppendOutcome::AlreadyStored),
                Some(e) if Instant::now() + pause >= give_up => return Err(e),
                Some(e) => {
                    tracing::debug!(error = %e, parts = failed.len(), "appending again under the batch's key");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    pending = failed;
                }
            }
        }
    }

    /// Claims the key for this batch on its own partition ([`KeySchema::idempotency_claim`]); refuses
    /// ([`StoreError::KeyReused`]) a key another batch holds.
    ///
    /// [`KeySchema::idempotency_claim`]: crate::keys::KeySchema::idempotency_claim
    async fn claim_key(&self, keyed: Keyed<'_>) -> Result<()> {
        let claim = self.keys.idempotency_claim(keyed.key);
        let retention_ms = keyed.retention.as_millis().max(1).to_string();
        let args = vec![keyed.fingerprint.to_owned(), retention_ms];
        let ours: i64 = self
            .eval(&self.scripts.claim_key, vec![claim], args)
            .await?;
        match ours {
            1 => Ok(()),
            _ => Err(StoreError::KeyReused),
        }
    }

    /// One call of `lua/append.lua` for `parts` (all on one node: one partition on a cluster). With
    /// `wait_replicas`, the script names the primary that ran it (its replication ID), added to `writers`.
    async fn append_parts(
        &self,
        parts: &[Part],
        id: &str,
        keyed: Option<Keyed<'_>>,
        writers: &Writers,
    ) -> Result<AppendOutcome> {
        let mut keys: Vec<String> = parts.iter().map(|(p, _)| self.keys.log(*p)).collect();
        if let Some(k) = keyed {
            keys.extend(parts.iter().map(|(p, _)| self.keys.idempotency(*p, k.key)));
        }
        // On one node the script claims the key for the whole batch itself (on a cluster, `append_each` did).
        let claim = keyed.filter(|k| !self.cluster && k.fresh == Fresh::No);
        if let Some(k) = claim {
            keys.push(self.keys.idempotency_claim(k.key));
        }
        // At least 1 ms: 0 means "no key" to the script.
        let retention_ms = keyed.map_or(0, |k| k.retention.as_millis().max(1));
        let mut args = vec![
            self.append_deadline_ms(&keys[0]).await?.to_string(),
            id.to_owned(),
            LINES_FIELD.to_owned(),
            retention_ms.to_string(),
            keyed.map_or_else(String::new, |k| k.fingerprint.to_owned()),
            u8::from(self.wait_replicas > 0).to_string(),
            u8::from(claim.is_some()).to_string(),
        ];
        args.extend(parts.iter().map(|(_, lines)| lines.clone()));
        let first_key = keys[0].clone();
        let reply: Vec<Value> = self.eval(&self.scripts.append, keys, args).await?;
        let written = reply.first().and_then(ValueExt::as_i64).unwrap_or(i64::MIN);
        if let Some(replid) = reply.get(1).and_then(ValueExt::as_string) {
            writers
                .lock()
                .expect("writers lock")
                .entry(replid)
                .or_insert(first_key);
        }
        match written {
            -1 => {
                // Redis was frozen or slow: read its clock again before the next deadline.
                self.clock.forget();
                Err(StoreError::TooLate)
            }
            -2 => Err(StoreError::KeyReused),
            0 if keyed.is_some() => Ok(AppendOutcome::AlreadyStored),
            n if n > 0 => Ok(AppendOutcome::Stored),
            other => Err(StoreError::Reply(format!("append script answered {other}"))),
        }
    }
}

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
        let info: String = self
            .on_key_waiting("INFO", key, vec!["replication"])
            .await?;
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

    /// The batch's views grouped by partition, as each partition's lines.
    pub(in crate::redis) fn split(&self, views: &[(VideoId, u64)]) -> Vec<Part> {
        let mut by_partition: BTreeMap<Partition, Vec<(&VideoId, u64)>> = BTreeMap::new();
        for (video, n) in views {
            by_partition
                .entry(self.keys.partition_of(video))
                .or_default()
                .push((video, *n));
        }
        by_partition
            .into_iter()
            .map(|(p, views)| (p, encode_lines(views)))
            .collect()
    }

    /// With `wait_replicas` > 0: on every primary that took a part of the batch, WAIT until that many
    /// replicas have it, then check it on the primary itself (INFO: the same replication ID, and that many
    /// replicas at or past the offset it had after the write). The check makes the answer independent of the
    /// connection WAIT ran on: after a reconnect WAIT knows nothing of the write, and after a failover the new
    /// primary's ID differs. Fails with [`StoreError::NotReplicated`] when the replicas do not confirm within
    /// half the store's timeout. WAIT runs on a connection of its own: while it waits for a lagging replica,
    /// every other command to the node goes on.
    pub(in crate::redis) async fn wait_for_replicas(
        &self,
        writers: BTreeMap<String, String>,
    ) -> Result<()> {
        let wanted = self.wait_replicas;
        if wanted == 0 {
            return Ok(());
        }
        let give_up = Instant::now() + self.timeout / 2;
        let checks = join_all(writers.iter().map(|(replid, key)| async move {
            let (_, target) = self.replication(key, replid).await?;
            loop {
                let left = give_up
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .max(1);
                let _: i64 = self
                    .on_key_waiting("WAIT", key, vec![wanted.to_string(), left.to_string()])
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

/// The SHA-1 of a whole batch, as its partitions' lines in partition order.
fn batch_fingerprint(parts: &[Part]) -> String {
    let mut all = String::new();
    for (p, lines) in parts {
        all.push_str(&format!("#{p}\n{lines}"));
    }
    sha1_smol::Sha1::from(all).digest().to_string()
}
