//! Minutes closed for the snapshotter, and late views: how history gets every view exactly once.
//!
//! The snapshotter closes the minutes it is about to write ([`HistoryFeed::close_minutes`]): each bucket is
//! frozen as it is, and from then on a view for a closed minute (or for one behind the day window, which no
//! bucket will carry to Postgres) also goes to the partition's late stream. The snapshotter writes the frozen
//! copies, then adds the late stream's views to the rows of their minutes ([`HistoryFeed::read_late`]).

use crate::batch::{decode_fields, EntryId};
use crate::domain::{RankedVideo, VideoId, Window};
use crate::keys::Partition;
use crate::redis::connection::client::{Value, ValueExt};
use crate::redis::{HistoryFeed, Result, StoreError};
use std::collections::HashMap;

/// One entry of a partition's late stream: views applied after their minute was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateViews {
    pub id: EntryId,
    /// The minute of the views' event time.
    pub minute: i64,
    pub views: Vec<(VideoId, u64)>,
}

impl HistoryFeed {
    /// Closes partition `p`'s minutes in `(after, through]` for the snapshotter (`lua/close_minutes.lua`):
    /// freezes the bucket of each that has one and returns those minutes, oldest first. With
    /// `TOPK_REDIS_WAIT_REPLICAS`, returns once that many replicas have the close: a failover must not move
    /// the snapshot cursor back behind minutes about to be written (their late views would then be taken as
    /// on time, and written twice).
    pub async fn close_minutes(&self, p: Partition, after: i64, through: i64) -> Result<Vec<i64>> {
        let k = &self.keys;
        let waits = self.wait_replicas > 0;
        loop {
            let listed = self
                .bucket_minutes(p, after, through.saturating_add(1))
                .await?;
            let mut keys = vec![k.cursors(p), k.minute_index(p)];
            let mut args = vec![
                after.to_string(),
                through.to_string(),
                u8::from(waits).to_string(),
            ];
            for &m in &listed {
                keys.extend([k.minute(p, m), k.sealed_minute(p, m), k.frozen_minute(p, m)]);
                args.push(m.to_string());
            }
            let reply: Vec<Value> = self.eval(&self.scripts.close_minutes, keys, args).await?;
            let closed = reply.first().and_then(ValueExt::as_i64).unwrap_or(-1);
            // -1: a worker indexed another minute between the listing and the script; list again.
            if closed < 0 {
                continue;
            }
            if let Some(replid) = reply.get(1).and_then(ValueExt::as_string) {
                let writer = std::iter::once((replid, k.cursors(p))).collect();
                self.wait_for_replicas(writer).await?;
            }
            return Ok(listed);
        }
    }

    /// Every video's views in the frozen copy of a closed minute, most viewed first (empty when the minute
    /// had no bucket left).
    pub async fn frozen_minute_counts(
        &self,
        p: Partition,
        minute: i64,
    ) -> Result<Vec<RankedVideo>> {
        let key = self.keys.frozen_minute(p, minute);
        let blob: Option<String> = self.on_first_key("GET", vec![key]).await?;
        let mut sums: HashMap<&str, u64> = HashMap::new();
        for (video, n) in crate::lines::decode(blob.as_deref().unwrap_or("")) {
            *sums.entry(video).or_default() += n;
        }
        Ok(crate::domain::rank(sums))
    }

    /// Whether partition `p` holds a frozen copy of `minute` (closed, not yet written and dropped).
    pub async fn has_frozen_minute(&self, p: Partition, minute: i64) -> Result<bool> {
        let n: i64 = self
            .on_first_key("EXISTS", vec![self.keys.frozen_minute(p, minute)])
            .await?;
        Ok(n > 0)
    }

    /// Drops the frozen copies of minutes written to Postgres, and the index entries the day window kept for
    /// those of them it has retired meanwhile (`lua/retire.lua`).
    pub async fn drop_frozen_minutes(&self, p: Partition, minutes: &[i64]) -> Result<()> {
        let day_cursor = self.read_cursor(p, Window::Day).await?.unwrap_or(-1);
        for chunk in minutes.chunks(500) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|&m| self.keys.frozen_minute(p, m))
                .collect();
            let _: i64 = self.on_first_key("DEL", keys).await?;
            let retired: Vec<String> = chunk
                .iter()
                .filter(|&&m| m <= day_cursor)
                .map(|m| m.to_string())
                .collect();
            if !retired.is_empty() {
                let mut args = vec![self.keys.minute_index(p)];
                args.extend(retired);
                let _: i64 = self.on_first_key("ZREM", args).await?;
            }
        }
        Ok(())
    }

    /// Up to `count` entries of partition `p`'s late stream after `after`, oldest first.
    pub async fn read_late(
        &self,
        p: Partition,
        after: EntryId,
        count: usize,
    ) -> Result<Vec<LateViews>> {
        let reply: Vec<Value> = self
            .on_first_key(
                "XRANGE",
                vec![
                    self.keys.late(p),
                    format!("({after}"),
                    "+".into(),
                    "COUNT".into(),
                    count.to_string(),
                ],
            )
            .await?;
        reply.into_iter().map(parse_late).collect()
    }

    /// Removes late entries up to `through`, once Postgres holds them.
    pub async fn trim_late(&self, p: Partition, through: EntryId) -> Result<()> {
        self.trim_before(self.keys.late(p), through.successor().to_string())
            .await?;
        Ok(())
    }
}

/// `[id, [field, value, ...]]` with fields `minute` and `#lines`.
fn parse_late(entry: Value) -> Result<LateViews> {
    let mut parts = entry.into_array().into_iter();
    let raw_id = parts.next().and_then(|v| v.as_string()).unwrap_or_default();
    let id = EntryId::parse(&raw_id)
        .ok_or_else(|| StoreError::Reply(format!("bad late entry id {raw_id:?}")))?;
    let flat: Vec<String> = parts.next().map(Value::into_strings).unwrap_or_default();
    let mut minute = None;
    let mut fields = Vec::new();
    for pair in flat.chunks(2) {
        match pair {
            [name, value] if name == "minute" => minute = value.parse().ok(),
            [name, value] => fields.push((name.clone(), value.clone())),
            _ => {}
        }
    }
    let minute =
        minute.ok_or_else(|| StoreError::Reply(format!("late entry {id} has no minute")))?;
    let views = decode_fields(fields)
        .map_err(|why| StoreError::Reply(format!("late entry {id}: {why}")))?;
    Ok(LateViews { id, minute, views })
}
