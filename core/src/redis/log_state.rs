//! Where the workers' consumer group stands on each partition's log: pending and undelivered entries, how far
//! the log is applied (the snapshotter closes minutes by it), and which workers read it recently.

use crate::batch::EntryId;
use crate::keys::{Partition, CONSUMER_GROUP};
use crate::redis::connection::client::{Value, ValueExt};
use crate::redis::{Result, Shared, StoreError};
use std::time::Duration;

use super::store::handle;

handle!(
    /// Where the log and its consumer group stand: the handle of backpressure, metrics and the snapshotter.
    LogState, store.log_state
);

/// The consumer group's position on one partition's log.
#[derive(Debug, Clone, Copy, Default)]
pub(in crate::redis) struct GroupState {
    /// Entries delivered and not yet acknowledged.
    pub(in crate::redis) pending: u64,
    pub(in crate::redis) oldest_pending: Option<EntryId>,
    pub(in crate::redis) last_delivered: Option<EntryId>,
    /// Entries not yet delivered.
    pub(in crate::redis) lag: u64,
    /// The first entry after `last_delivered`.
    pub(in crate::redis) first_undelivered: Option<EntryId>,
}

/// How far the workers are on one partition's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogPosition {
    /// Entries not yet applied: undelivered, or delivered and not acknowledged.
    pub backlog: u64,
    /// The time (Redis ms) of the oldest entry not yet applied; `None` when all is applied.
    pub oldest_waiting_ms: Option<i64>,
}

impl LogState {
    /// Partitions where a `rebuild-redis` started and has not finished (its saved state, `P:{p}:replay`, is
    /// still there): until it is run again to the end, workers must not apply and the snapshotter must not
    /// write, or the rerun would count what they did twice or not at all.
    pub async fn interrupted_rebuilds(&self) -> Result<Vec<Partition>> {
        let checks = self.keys.all_partitions().map(|p| async move {
            let key = self.keys.replay(p);
            let n: i64 = self.on_key("EXISTS", &key, vec![key.clone()]).await?;
            Ok::<_, StoreError>((p, n > 0))
        });
        Ok(futures::future::try_join_all(checks)
            .await?
            .into_iter()
            .filter_map(|(p, interrupted)| interrupted.then_some(p))
            .collect())
    }

    /// Where the workers stand on partition `p`'s log (one script call): what is left and since when.
    pub async fn log_position(&self, p: Partition) -> Result<LogPosition> {
        let state = self.group_state(p).await?;
        Ok(LogPosition {
            backlog: state.pending + state.lag,
            oldest_waiting_ms: [state.oldest_pending, state.first_undelivered]
                .into_iter()
                .flatten()
                .map(|id| id.ms)
                .min(),
        })
    }

    /// The workers that read or claimed from any partition's log within `within` (XINFO CONSUMERS): a rebuild
    /// refuses to run beside them. Returns `(partition, consumer, milliseconds since it was last seen)`.
    pub async fn active_consumers(
        &self,
        within: Duration,
    ) -> Result<Vec<(Partition, String, u64)>> {
        let mut active = Vec::new();
        for p in self.keys.all_partitions() {
            let log = self.keys.log(p);
            let reply: Result<Vec<Value>, _> = self
                .on_key(
                    "XINFO",
                    &log,
                    vec!["CONSUMERS".to_owned(), log.clone(), CONSUMER_GROUP.into()],
                )
                .await;
            let consumers = match reply {
                Ok(c) => c,
                // No log or no group: nobody consumes it.
                Err(StoreError::Redis(e))
                    if e.to_string().contains("NOGROUP")
                        || e.to_string().contains("no such key") =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            for consumer in consumers {
                let fields = consumer.into_array();
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|kv| kv[0].as_string().as_deref() == Some(name))
                        .and_then(|kv| kv.get(1).cloned())
                };
                let name = field("name")
                    .and_then(|v| v.as_string())
                    .unwrap_or_default();
                // `inactive` (Redis 7.2+) counts from the last read that returned entries or the last claim;
                // `idle` from any read attempt, which a polling worker also makes: either is recent for a
                // worker that runs.
                let seen = ["inactive", "idle"]
                    .into_iter()
                    .filter_map(|f| field(f).and_then(|v| v.as_i64()))
                    .filter(|ms| *ms >= 0)
                    .min()
                    .unwrap_or(i64::MAX) as u64;
                if seen <= within.as_millis() as u64 {
                    active.push((p, name, seen));
                }
            }
        }
        Ok(active)
    }

    /// Entries of partition `p`'s log not yet acknowledged, delivered or not (backlog for health and tests).
    pub async fn log_backlog(&self, p: Partition) -> Result<u64> {
        let state = self.group_state(p).await?;
        Ok(state.pending + state.lag)
    }

    /// Entries of partition `p`'s log delivered to a worker and not yet acknowledged.
    pub async fn pending(&self, p: Partition) -> Result<u64> {
        Ok(self.group_state(p).await?.pending)
    }

    /// The time up to which partition `p` has applied its log: the event time of its oldest entry not yet
    /// acknowledged, or `None` when nothing is waiting (the partition is past any time up to now).
    pub async fn applied_through_ms(&self, p: Partition) -> Result<Option<i64>> {
        let state = match self.group_state(p).await {
            // No group (ingest never ran, or Redis lost its data and no worker has come back): nothing is known
            // to be applied, so every entry of the log is waiting.
            Err(e) if e.is_missing_group() => {
                return Ok(self.first_undelivered(p, None).await?.map(|id| id.ms))
            }
            other => other?,
        };
        Ok([state.oldest_pending, state.first_undelivered]
            .into_iter()
            .flatten()
            .map(|id| id.ms)
            .min())
    }

    /// The first entry of partition `p`'s log after `last_delivered` (any entry when `None`).
    async fn first_undelivered(
        &self,
        p: Partition,
        last_delivered: Option<EntryId>,
    ) -> Result<Option<EntryId>> {
        let start = last_delivered.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let next: Vec<Value> = self
            .on_first_key(
                "XRANGE",
                vec![
                    self.keys.log(p),
                    start,
                    "+".into(),
                    "COUNT".into(),
                    "1".into(),
                ],
            )
            .await?;
        Ok(next
            .into_iter()
            .next()
            .and_then(|e| e.into_array().into_iter().next())
            .and_then(|v| v.as_string())
            .and_then(|s| EntryId::parse(&s)))
    }
}

impl Shared {
    /// Where the workers' consumer group stands on partition `p`'s log, read in one step
    /// (`lua/group_state.lua`), so that no worker's read falls between its parts.
    pub(in crate::redis) async fn group_state(&self, p: Partition) -> Result<GroupState> {
        let reply: Vec<Value> = self
            .eval(
                &self.scripts.group_state,
                vec![self.keys.log(p)],
                vec![CONSUMER_GROUP],
            )
            .await?;
        let id = |i: usize| {
            reply
                .get(i)
                .and_then(Value::as_string)
                .and_then(|s| EntryId::parse(&s))
        };
        let first_undelivered = id(4);
        Ok(GroupState {
            pending: reply.first().and_then(Value::as_i64).unwrap_or(0).max(0) as u64,
            oldest_pending: id(1),
            last_delivered: id(2),
            // Without Redis's lag, whether anything is undelivered at all.
            lag: reply
                .get(3)
                .and_then(Value::as_i64)
                .map_or(u64::from(first_undelivered.is_some()), |l| l.max(0) as u64),
            first_undelivered,
        })
    }
}
