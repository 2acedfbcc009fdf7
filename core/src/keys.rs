//! The Redis key schema: the only place that formats a key.
//!
//! Every key of partition `p` carries the hash tag `{p}`, so one partition's log, buckets, windows and cursors
//! share one Redis Cluster slot and its scripts stay atomic and legal in a cluster. Video ids are members,
//! never parts of keys.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{p}:log` | stream | the log: one entry per accepted batch and partition, field `#lines` (`<video> <views>\n` lines), and `t` (event time, ms) from a source that knows it |
//! | `P:{p}:s5:<slice>` | string | one 5-second slice (the minute window's slices): `<video> <views>\n` lines appended per batch, a video on several lines; readers sum them |
//! | `P:{p}:m:<minute>` | string | one minute still open to writes (hour and day slices), lines as in `s5` |
//! | `P:{p}:mz:<minute>` | string | a sealed minute: `<video> <views>\n` lines, ~11 bytes a video (the day tail) |
//! | `P:{p}:s5idx`, `P:{p}:midx` | sorted set | which slices/minutes have a bucket (score = member = slice) |
//! | `P:{p}:open` | sorted set | minutes whose open string is not sealed yet (score = member = minute) |
//! | `P:{p}:w:<window>` | hash | the window's views per video, kept incrementally |
//! | `P:{p}:top:<window>` | sorted set | the window's leaders: every video whose count is at least the threshold |
//! | `P:{p}:cursor` | hash | per sliding window, the newest slice already subtracted from it; `snapshot`: the newest minute closed for the snapshotter |
//! | `P:{p}:mf:<minute>` | string | a minute's bucket as it was when the snapshotter closed the minute, until written to Postgres |
//! | `P:{p}:late` | stream | late views (their minute closed already): fields `minute` and `#lines`, for the snapshotter |
//! | `P:{p}:sources` | hash | per source partition (`topic/partition` of Kafka), the last offset this log has taken |
//! | `P:{p}:idem:<key>` | string | a batch's `Idempotency-Key` on a partition it touched: the SHA-1 of the whole batch, for the key's retention |
//! | `P:{p}:idem-group:topk-<uuid>` | hash | the same for keys of the form topk generates for one group append (`topk-<uuid>.<i>`, also when a producer sends one back): field `<i>`, the batch's SHA-1; kept for the retention after the hash's last write |
//! | `P:{p}:replay` | hash | while `rebuild-redis` runs: what the workers had applied (`through`, `pending`) and the late stream's newest entry (`late`); gone when it finishes |
//! | `P:{p}:lead` | hash | per window, the leader thresholds and the state of a refill (see `lua/leaders.lua`) |
//! | `P:kafka:dead` | stream | Kafka records that could not be read (fields `source`, `offset`, `reason`, `value`), capped |
//! | `{P:kafka:dead}:offsets` | hash | per source partition, the last offset kept as a dead letter (in the stream's slot) |
//! | `P:layout` | string | the deployment's layout, recorded by the first process: `partitions=<P> keys=<version>` |
//! | `P:{baseline}:*` | sorted set | the benchmark's baselines only |

use crate::domain::{IdempotencyKey, VideoId, Window};

/// The version of this key layout: a build that lays keys out differently must not share a deployment's Redis
/// with this one.
pub const LAYOUT_VERSION: u32 = 1;

/// Consumer group the ingest workers share on every partition's log.
pub const CONSUMER_GROUP: &str = "workers";

/// Where an `Idempotency-Key` is recorded ([`KeySchema::idempotency`] on a partition; the claim,
/// [`KeySchema::idempotency_claim`], is always a string): a string key, or a field of a hash key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRecord {
    pub(crate) key: String,
    pub(crate) field: Option<String>,
}

/// A partition: videos are hashed to one of `P` partitions, fixed per deployment.
pub type Partition = u16;

/// Names every Redis key of one deployment (prefix) with `partitions` partitions.
#[derive(Debug, Clone)]
pub struct KeySchema {
    prefix: String,
    partitions: Partition,
}

impl KeySchema {
    /// `prefix` separates deployments (and tests) sharing one Redis; it must not contain `{` or `}`.
    pub fn new(prefix: impl Into<String>, partitions: Partition) -> Self {
        let prefix = prefix.into();
        assert!(partitions > 0, "at least one partition");
        assert!(
            !prefix.contains(['{', '}']),
            "the key prefix must not contain braces"
        );
        Self { prefix, partitions }
    }

    pub fn partitions(&self) -> Partition {
        self.partitions
    }

    pub fn all_partitions(&self) -> impl Iterator<Item = Partition> {
        0..self.partitions
    }

    /// The partition a video belongs to: FNV-1a of its id, stable across processes and releases.
    pub fn partition_of(&self, video: &VideoId) -> Partition {
        self.hash_to_partition(video.as_str())
    }

    /// FNV-1a of `text`, modulo the partition count.
    fn hash_to_partition(&self, text: &str) -> Partition {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h % u64::from(self.partitions)) as Partition
    }

    fn key(&self, p: Partition, rest: &str) -> String {
        format!("{}:{{{p}}}:{rest}", self.prefix)
    }

    /// The record of a batch's `Idempotency-Key` on partition `p`, written with the partition's entry: a string
    /// of its own, or, for a key topk generated ([`IdempotencyKey::generated_group`]), a field of the hash its
    /// group's batches share on the partition. A group's batches go into one entry per partition, so one hash
    /// (one key, one write) records them all there, where a string each would cost a key, a write and an
    /// expiry per batch.
    pub(crate) fn idempotency(&self, p: Partition, key: &IdempotencyKey) -> KeyRecord {
        match key.generated_group() {
            Some((group, index)) => KeyRecord {
                key: self.key(p, &format!("idem-group:{group}")),
                field: Some(index.to_owned()),
            },
            None => KeyRecord {
                key: self.key(p, &format!("idem:{}", key.as_str())),
                field: None,
            },
        }
    }

    /// Which batch an `Idempotency-Key` belongs to (the batch's fingerprint), on a partition chosen by the key
    /// alone: every append under the key claims it first, whatever partitions its batch touches, so the same
    /// key with another batch is refused before anything is written.
    pub(crate) fn idempotency_claim(&self, key: &IdempotencyKey) -> String {
        let home = self.hash_to_partition(key.as_str());
        self.key(home, &format!("idem-batch:{}", key.as_str()))
    }

    /// The last offset of each source partition (`topic/partition`) that partition `p`'s log has taken.
    pub(crate) fn source_offsets(&self, p: Partition) -> String {
        self.key(p, "sources")
    }

    pub fn log(&self, p: Partition) -> String {
        self.key(p, "log")
    }
    pub(crate) fn cursors(&self, p: Partition) -> String {
        self.key(p, "cursor")
    }
    /// The hash of a window's counts per video.
    pub fn window(&self, p: Partition, w: Window) -> String {
        self.key(p, &format!("w:{}", w.as_str()))
    }
    /// The sorted set of a window's leaders, which rankings read.
    pub(crate) fn leaders(&self, p: Partition, w: Window) -> String {
        self.key(p, &format!("top:{}", w.as_str()))
    }
    /// Per window, the leader thresholds and refill state.
    pub(crate) fn leader_state(&self, p: Partition) -> String {
        self.key(p, "lead")
    }
    pub(crate) fn slice5(&self, p: Partition, slice: i64) -> String {
        self.key(p, &format!("s5:{slice}"))
    }
    /// A minute's open string of appended lines, written by the workers until the minute is sealed.
    pub(crate) fn minute(&self, p: Partition, minute: i64) -> String {
        self.key(p, &format!("m:{minute}"))
    }
    /// A minute's sealed blob.
    pub(crate) fn sealed_minute(&self, p: Partition, minute: i64) -> String {
        self.key(p, &format!("mz:{minute}"))
    }
    /// Late views: views applied after their minute's bucket was closed to writes (the snapshotter wrote the
    /// minute, or the day window retired it), as stream entries of a minute and its lines, for the snapshotter
    /// to add to history.
    pub(crate) fn late(&self, p: Partition) -> String {
        self.key(p, "late")
    }
    /// What the workers had applied of the log past the checkpoint when `rebuild-redis` started (a hash: the
    /// last delivered id and the ids then pending), kept until the rebuild has redone it.
    pub fn replay(&self, p: Partition) -> String {
        self.key(p, "replay")
    }
    /// A minute's bucket frozen when the snapshotter closed the minute: what it writes to Postgres.
    pub(crate) fn frozen_minute(&self, p: Partition, minute: i64) -> String {
        self.key(p, &format!("mf:{minute}"))
    }
    /// Minutes with an open string not yet sealed.
    pub(crate) fn open_minutes(&self, p: Partition) -> String {
        self.key(p, "open")
    }
    pub(crate) fn slice5_index(&self, p: Partition) -> String {
        self.key(p, "s5idx")
    }
    pub(crate) fn minute_index(&self, p: Partition) -> String {
        self.key(p, "midx")
    }
    /// Kafka records that could not be read (the dead letters), one stream outside any partition.
    pub fn dead_letters(&self) -> String {
        format!("{}:kafka:dead", self.prefix)
    }

    /// Per source partition, the last offset kept as a dead letter: hash-tagged with the stream's whole name,
    /// so that both are in one Redis Cluster slot and one script checks and writes them.
    pub(crate) fn dead_letter_offsets(&self) -> String {
        format!("{{{}}}:offsets", self.dead_letters())
    }

    /// The deployment's recorded layout (partition count and key layout version): one key, outside any
    /// partition.
    pub(crate) fn layout(&self) -> String {
        format!("{}:layout", self.prefix)
    }

    /// The layout this process is configured with, as [`Self::layout`] records it.
    pub(crate) fn layout_value(&self) -> String {
        format!("partitions={} keys={LAYOUT_VERSION}", self.partitions)
    }

    /// A SCAN pattern for keys of this deployment: `rest` is matched after the prefix.
    pub fn pattern(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// A SCAN pattern for the sealed minutes of every partition.
    #[cfg(feature = "bench")]
    pub(crate) fn sealed_minute_pattern(&self) -> String {
        self.pattern("{*}:mz:*")
    }

    /// A SCAN pattern for every key of partition `p`.
    pub(crate) fn partition_pattern(&self, p: Partition) -> String {
        self.key(p, "*")
    }

    /// A key of the benchmark's baselines (one hash tag, so a union over them is legal in a cluster too).
    pub fn baseline(&self, name: &str) -> String {
        format!("{}:{{baseline}}:{name}", self.prefix)
    }

    /// The bucket key of a sliding window's slice: 5-second slices for the minute window, minutes otherwise.
    pub(crate) fn slice_bucket(&self, p: Partition, w: Window, slice: i64) -> String {
        match w {
            Window::Minute => self.slice5(p, slice),
            _ => self.minute(p, slice),
        }
    }

    /// The sealed form of a sliding window's slice: minutes are sealed, 5-second slices are not (they live a
    /// minute). `None` for the minute window.
    pub(crate) fn sealed_slice_bucket(
        &self,
        p: Partition,
        w: Window,
        slice: i64,
    ) -> Option<String> {
        match w {
            Window::Minute => None,
            _ => Some(self.sealed_minute(p, slice)),
        }
    }

    /// The index of which slices exist for a sliding window.
    pub(crate) fn slice_index(&self, p: Partition, w: Window) -> String {
        match w {
            Window::Minute => self.slice5_index(p),
            _ => self.minute_index(p),
        }
    }
}

/// The hash slot of `key`, as Redis Cluster computes it: CRC16 (XMODEM) of the key's `{tag}` when it has a
/// non-empty one, else of the whole key, modulo 16384. A partition's keys share the slot of its `{p}` tag.
pub fn hash_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_partition_hash_tag() {
        let k = KeySchema::new("topk", 16);
        assert_eq!(k.log(3), "topk:{3}:log");
        assert_eq!(k.window(0, Window::Day), "topk:{0}:w:day");
        assert_eq!(k.minute(15, 28_333_333), "topk:{15}:m:28333333");
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        let k = KeySchema::new("topk", 16);
        let v = VideoId::parse("abc").unwrap();
        assert_eq!(k.partition_of(&v), k.partition_of(&v.clone()));
        // FNV-1a("abc") = 0xe71fa2190541574b; pinned so a change of hash (which would move every video) fails.
        assert_eq!(k.partition_of(&v), (0xe71f_a219_0541_574b_u64 % 16) as u16);
    }

    /// Slots as `CLUSTER KEYSLOT` answered them on Redis 7.0.
    #[test]
    fn slots_are_the_clusters() {
        for (key, slot) in [
            ("{1}", 9842),
            ("a{1}", 9842),
            ("{3}", 1584),
            ("{10}", 247),
            ("foo", 12182),
            ("{}foo", 9500),
            ("{user1000}.following", 3443),
            ("foo{}{bar}", 8363),
        ] {
            assert_eq!(hash_slot(key.as_bytes()), slot, "{key}");
        }
    }
}
