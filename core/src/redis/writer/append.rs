//! Appending batches to the log (`lua/append.lua`), one at a time or as a group of batches that arrived
//! together: each partition the group touches gets one entry holding every batch's lines for it, so the
//! costs Redis pays per entry and per call (the script, the entry, the workers' read and acknowledgement) are
//! paid once per group, not once per batch.
//!
//! On one node a group is one script, stored whole or not at all, and each batch's `Idempotency-Key` is a
//! claim for the whole batch, written with the entries. On Redis Cluster a script reaches only the partitions
//! of the primary it runs on, so a group is one script per primary (`append_cluster.rs`, `nodes.rs`; one per
//! partition while slots move), and each batch is made exactly-once by its key instead: the key is claimed for
//! the batch first (`lua/claim_key.lua`), and every partition records it with the entry that carries the
//! batch, so sending the batch again with the same key stores only the parts that are missing. A batch sent
//! without a key gets one generated here wherever a failed append may have stored something (a part on a
//! cluster, the whole batch unconfirmed where replicas are awaited); the error then carries that key
//! ([`StoreError::Incomplete`]).
//!
//! With `wait_replicas` > 0, an append returns only once WAIT confirms its entries on that many replicas of
//! every node that took a part (`replicas.rs`), so a failover after the answer cannot lose them.

use super::replicas::Writers;
use crate::batch::{encode_lines, EVENT_TIME_FIELD, LINES_FIELD};
use crate::domain::{IdempotencyKey, VideoId};
use crate::keys::{KeyRecord, Partition};
use crate::redis::connection::client::{Value, ValueExt};
use crate::redis::{LogWriter, Result, Shared, StoreError};
use crate::wire::DatedViews;
use std::collections::BTreeMap;
use std::time::Duration;

/// What became of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The batch's entries are in the log now.
    Stored,
    /// An earlier request with the same `Idempotency-Key` stored this batch; nothing was written again.
    AlreadyStored,
}

/// One batch of a group append: its views (they happen when stored), the views its producer dated, and the
/// producer's `Idempotency-Key` when it sent one.
#[derive(Debug, Clone, Copy)]
pub struct AppendRequest<'a> {
    pub views: &'a [(VideoId, u64)],
    pub dated: &'a [DatedViews],
    pub key: Option<&'a IdempotencyKey>,
}

/// One partition's views of a batch, as its `<video> <n>` lines.
pub(in crate::redis) type Lines = (Partition, String);

/// One entry's worth of a batch: a partition's lines, and their event time when the producer dated them
/// (the entry then carries it beside its lines, [`EVENT_TIME_FIELD`]).
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) partition: Partition,
    pub(super) event_ms: Option<i64>,
    pub(super) lines: String,
}

/// A batch of the group being appended.
pub(super) struct Batch {
    pub(super) parts: Vec<Part>,
    /// Its key (the producer's, or generated), with the SHA-1 of the whole batch that the key's records
    /// hold, so the same key with another batch is told apart on every partition.
    pub(super) key: Option<Keyed>,
}

/// A batch's guard in one append script: where its key is recorded, and whether to look the record up first.
pub(super) struct Guard {
    pub(super) record: KeyRecord,
    pub(super) check: bool,
}

pub(super) struct Keyed {
    pub(super) key: IdempotencyKey,
    pub(super) fingerprint: String,
    /// Generated for this append: it cannot have been used before, so it is not claimed first (nor, on one
    /// node, looked for; a cluster looks every record up, as a command may be resent).
    pub(super) fresh: bool,
}

/// How a group's entries and key records are written: the entries' id (`*`, or `<ms>-*` for an injected
/// time) and how long the key records are kept.
#[derive(Clone, Copy)]
pub(super) struct Written<'a> {
    pub(super) id: &'a str,
    pub(super) retention_ms: u128,
}

/// What one script call made of each batch it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Taken {
    Stored,
    Before,
    Reused,
}

impl LogWriter {
    /// Appends a validated batch to the log. Returns once Redis has the entries (and, with `wait_replicas`,
    /// its replicas). On one node the batch is stored whole or not at all; on a cluster, see the module.
    pub async fn append(&self, views: &[(VideoId, u64)]) -> Result<()> {
        let request = AppendRequest {
            views,
            dated: &[],
            key: None,
        };
        let retention = self.generated_key_retention;
        self.one(request, "*", retention).await.map(|_| ())
    }

    /// [`Self::append`] under a producer's `Idempotency-Key`, kept for `retention`: a batch sent again with
    /// the same key within it stores only what is missing ([`AppendOutcome::AlreadyStored`] when nothing
    /// was); the same key with another batch is refused ([`StoreError::KeyReused`]) and stores nothing.
    pub async fn append_idempotent(
        &self,
        views: &[(VideoId, u64)],
        key: &IdempotencyKey,
        retention: Duration,
    ) -> Result<AppendOutcome> {
        let request = AppendRequest {
            views,
            dated: &[],
            key: Some(key),
        };
        self.one(request, "*", retention).await
    }

    /// [`Self::append`] with the event time given: the entries get ids `<at_ms>-<seq>`. Redis refuses a time
    /// before the log's last entry. For replays and tests that inject time.
    pub async fn append_at(&self, views: &[(VideoId, u64)], at_ms: i64) -> Result<()> {
        let request = AppendRequest {
            views,
            dated: &[],
            key: None,
        };
        self.append_request_at(request, at_ms).await.map(|_| ())
    }

    /// One batch of [`Self::append_group`] with the entries' time given (`<at_ms>-<seq>` ids), as a receiver
    /// would have stored it then: for tests of views their producer dated (`"at"`) under injected time.
    pub async fn append_request_at(
        &self,
        request: AppendRequest<'_>,
        at_ms: i64,
    ) -> Result<AppendOutcome> {
        let retention = self.generated_key_retention;
        self.one(request, &format!("{at_ms}-*"), retention).await
    }

    /// Appends a group of batches that arrived together, one entry per partition for the whole group; each
    /// batch's answer is as [`Self::append_idempotent`] (or [`Self::append`] without a key) would give it:
    /// a reused key refuses its batch alone, and the others are stored. Keys are kept for `retention`.
    pub async fn append_group(
        &self,
        requests: &[AppendRequest<'_>],
        retention: Duration,
    ) -> Vec<Result<AppendOutcome>> {
        self.append_group_at(requests, retention, "*").await
    }

    /// [`Self::append_group`] with the entries' id given (`*`, or `<ms>-*` for an injected time).
    async fn append_group_at(
        &self,
        requests: &[AppendRequest<'_>],
        retention: Duration,
        id: &str,
    ) -> Vec<Result<AppendOutcome>> {
        // The keys generated for this group's batches share a group, recorded once per partition.
        let group = uuid::Uuid::new_v4();
        let batches: Vec<Batch> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| self.batch(r, || IdempotencyKey::generated(group, i)))
            .collect();
        let how = Written {
            id,
            retention_ms: retention.as_millis().max(1),
        };
        let mut writers = Writers::new();
        let mut outcomes = if self.cluster {
            self.group_on_cluster(&batches, how, &mut writers).await
        } else {
            self.group_on_node(&batches, how, &mut writers).await
        };
        if outcomes.iter().any(Result::is_ok) {
            if let Err(e) = self.wait_for_replicas(writers).await {
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err(e.clone());
                }
            }
        }
        let answers: Vec<Result<AppendOutcome>> = batches
            .iter()
            .zip(outcomes)
            .map(|(batch, outcome)| match (outcome, &batch.key) {
                (Err(e), Some(k))
                    if self.hands_back_keys() && !matches!(e, StoreError::KeyReused) =>
                {
                    Err(StoreError::Incomplete {
                        key: k.key.clone(),
                        cause: Box::new(e),
                    })
                }
                (outcome, _) => outcome,
            })
            .collect();
        if self.cluster {
            // On one node a generated key is claimed in the append itself, with its batch or not at all.
            let handed_back = batches.iter().zip(&answers).filter_map(|(b, a)| match a {
                Err(StoreError::Incomplete { .. }) => b.key.as_ref().filter(|k| k.fresh),
                _ => None,
            });
            self.claim_handed_back(handed_back, how.retention_ms).await;
        }
        answers
    }

    async fn one(
        &self,
        request: AppendRequest<'_>,
        id: &str,
        retention: Duration,
    ) -> Result<AppendOutcome> {
        self.append_group_at(&[request], retention, id)
            .await
            .pop()
            .expect("one outcome per batch")
    }

    /// Whether a failed append may have stored something (a part on a cluster, or a batch no replica
    /// confirmed): its error then carries the key to send it again with ([`StoreError::Incomplete`]).
    fn hands_back_keys(&self) -> bool {
        self.cluster || self.wait_replicas > 0
    }

    /// A request split by partition (and the dated views by slice), with its key: the producer's, or one
    /// generated where a failure could leave the batch stored without the producer knowing.
    fn batch(
        &self,
        request: &AppendRequest<'_>,
        generate: impl FnOnce() -> IdempotencyKey,
    ) -> Batch {
        let undated = self.split(request.views).into_iter().map(|l| (l, None));
        let dated = request.dated.iter().flat_map(|d| {
            self.split(&d.views)
                .into_iter()
                .map(move |l| (l, Some(d.event_ms)))
        });
        let parts: Vec<Part> = undated
            .chain(dated)
            .map(|((partition, lines), event_ms)| Part {
                partition,
                event_ms,
                lines,
            })
            .collect();
        let key = match request.key {
            Some(key) => Some((key.clone(), false)),
            None if self.hands_back_keys() => Some((generate(), true)),
            None => None,
        };
        let key = key.map(|(key, fresh)| Keyed {
            key,
            fingerprint: batch_fingerprint(&parts),
            fresh,
        });
        Batch { parts, key }
    }

    /// On one node: the whole group in one script, each keyed batch guarded by its key's claim.
    async fn group_on_node(
        &self,
        batches: &[Batch],
        how: Written<'_>,
        writers: &mut Writers,
    ) -> Vec<Result<AppendOutcome>> {
        let guards: Vec<Option<Guard>> = batches
            .iter()
            .map(|b| {
                b.key.as_ref().map(|k| Guard {
                    record: KeyRecord {
                        key: self.keys.idempotency_claim(&k.key),
                        field: None,
                    },
                    check: !k.fresh,
                })
            })
            .collect();
        let parts: Vec<&[Part]> = batches.iter().map(|b| b.parts.as_slice()).collect();
        let members: Vec<&Batch> = batches.iter().collect();
        match self
            .append_script(&parts, &members, &guards, how, writers)
            .await
        {
            Ok(taken) => taken.into_iter().map(Taken::outcome).collect(),
            Err(e) => batches.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// One call of `lua/append.lua`: `batches[i]`'s `parts[i]` (on a cluster, on partitions of one primary),
    /// each batch guarded by `guards[i]`. With `wait_replicas`, the script names the primary that ran it, added
    /// to `writers`.
    pub(super) async fn append_script(
        &self,
        parts: &[&[Part]],
        batches: &[&Batch],
        guards: &[Option<Guard>],
        how: Written<'_>,
        writers: &mut Writers,
    ) -> Result<Vec<Taken>> {
        let mut logs: BTreeMap<Partition, usize> = BTreeMap::new();
        for part in parts.iter().flat_map(|parts| parts.iter()) {
            let next = logs.len() + 1;
            logs.entry(part.partition).or_insert(next);
        }
        let mut keys: Vec<String> = vec![String::new(); logs.len()];
        for (p, index) in &logs {
            keys[index - 1] = self.keys.log(*p);
        }
        let first_key = keys[0].clone();
        let mut args = vec![
            self.append_deadline_ms(&first_key).await?.to_string(),
            how.id.to_owned(),
            LINES_FIELD.to_owned(),
            how.retention_ms.to_string(),
            u8::from(self.wait_replicas > 0).to_string(),
            logs.len().to_string(),
            batches.len().to_string(),
            EVENT_TIME_FIELD.to_owned(),
        ];
        let mut batch_args = Vec::new();
        // A guard's key is named once however many batches it records (a group's hash).
        let mut guard_keys: BTreeMap<&str, usize> = BTreeMap::new();
        for ((batch, parts), guard) in batches.iter().zip(parts).zip(guards) {
            let (guard_index, check, field) = match guard {
                Some(g) => {
                    let index = *guard_keys.entry(&g.record.key).or_insert_with(|| {
                        keys.push(g.record.key.clone());
                        keys.len()
                    });
                    (index, g.check, g.record.field.clone().unwrap_or_default())
                }
                None => (0, false, String::new()),
            };
            batch_args.push(
                batch
                    .key
                    .as_ref()
                    .map_or_else(String::new, |k| k.fingerprint.clone()),
            );
            batch_args.push(guard_index.to_string());
            batch_args.push(u8::from(check).to_string());
            batch_args.push(field);
            batch_args.push(parts.len().to_string());
            for part in parts.iter() {
                batch_args.push(logs[&part.partition].to_string());
                batch_args.push(part.event_ms.map_or_else(String::new, |t| t.to_string()));
                batch_args.push(part.lines.clone());
            }
        }
        // On a cluster, keys of several partitions span slots: Redis takes them only as undeclared keys
        // (lua/append.lua says how the script stays whole then).
        let keys = if self.cluster && logs.len() > 1 {
            args.push(keys.len().to_string());
            args.append(&mut keys);
            vec![first_key.clone()]
        } else {
            args.push("0".to_owned());
            keys
        };
        args.append(&mut batch_args);
        let reply: Vec<Value> = self.eval(&self.scripts.append, keys, args).await?;
        let bad = || StoreError::Reply(format!("append script answered {reply:?}"));
        match reply.first().and_then(ValueExt::as_i64) {
            Some(-1) => {
                // Redis was frozen or slow: read its clock again before the next deadline.
                self.clock.forget();
                return Err(StoreError::TooLate);
            }
            Some(1) => {}
            _ => return Err(bad()),
        }
        if let Some(replid) = reply.get(1).and_then(ValueExt::as_string) {
            if !replid.is_empty() {
                writers.entry(replid).or_insert(first_key);
            }
        }
        reply[2..]
            .iter()
            .map(|v| match v.as_i64() {
                Some(1) => Ok(Taken::Stored),
                Some(0) => Ok(Taken::Before),
                Some(-2) => Ok(Taken::Reused),
                _ => Err(bad()),
            })
            .collect()
    }
}

impl Taken {
    pub(super) fn outcome(self) -> Result<AppendOutcome> {
        match self {
            Taken::Stored => Ok(AppendOutcome::Stored),
            Taken::Before => Ok(AppendOutcome::AlreadyStored),
            Taken::Reused => Err(StoreError::KeyReused),
        }
    }
}

impl Shared {
    /// The batch's views grouped by partition, as each partition's lines.
    pub(in crate::redis) fn split(&self, views: &[(VideoId, u64)]) -> Vec<Lines> {
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
}

/// The SHA-1 of a whole batch, as its partitions' lines in partition order, the dated ones after with their
/// time (so an undated batch's fingerprint is what it was before views could be dated).
fn batch_fingerprint(parts: &[Part]) -> String {
    let mut all = String::new();
    for part in parts {
        let (p, lines) = (part.partition, &part.lines);
        match part.event_ms {
            None => all.push_str(&format!("#{p}\n{lines}")),
            Some(t) => all.push_str(&format!("#{p}@{t}\n{lines}")),
        }
    }
    sha1_smol::Sha1::from(all).digest().to_string()
}
