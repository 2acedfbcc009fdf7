//! A batch of log entries folded into one sum per (5-second slice, video), each entry in the slice of its
//! event time: what one apply step hands the apply script.

use crate::batch::{EntryId, LogEntry};
use crate::slices::{slice5_of, SLICE5_PER_MINUTE};
use std::collections::BTreeMap;

/// One 5-second slice's increments within an aggregated batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceIncrements {
    pub slice5: i64,
    pub minute: i64,
    pub increments: Vec<(String, u64)>,
}

/// A batch of entries folded into per-(slice, video) sums, ready for the apply script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AggregatedBatch {
    /// Every entry of the batch, decodable or not: all are acknowledged together.
    pub ids: Vec<EntryId>,
    pub slices: Vec<SliceIncrements>,
    pub views: u64,
    /// Entries that could not be decoded, with the reason.
    pub rejected: Vec<(EntryId, String)>,
}

/// Folds entries into one sum per (5-second slice, video), each entry in the slice of its event time.
pub fn aggregate(entries: &[LogEntry]) -> AggregatedBatch {
    let mut sums: BTreeMap<i64, BTreeMap<&str, u64>> = BTreeMap::new();
    let mut out = AggregatedBatch::default();
    for entry in entries {
        out.ids.push(entry.id);
        match &entry.views {
            Ok(views) => {
                let slice = sums.entry(slice5_of(entry.event_ms)).or_default();
                for (video, n) in views {
                    *slice.entry(video.as_str()).or_default() += n;
                    out.views += n;
                }
            }
            Err(why) => out.rejected.push((entry.id, why.clone())),
        }
    }
    out.slices = sums
        .into_iter()
        .map(|(slice5, videos)| SliceIncrements {
            slice5,
            minute: slice5.div_euclid(SLICE5_PER_MINUTE),
            increments: videos.into_iter().map(|(v, n)| (v.to_owned(), n)).collect(),
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::VideoId;

    #[test]
    fn entries_aggregate_in_the_slice_of_their_event_time() {
        let entry = |ms: i64, event_ms: i64, v: &str, n: u64| LogEntry {
            id: EntryId { ms, seq: 0 },
            event_ms,
            views: Ok(vec![(VideoId::parse(v).unwrap(), n)]),
        };
        let now = 1_700_000_060_000;
        let batch = aggregate(&[
            entry(now, now, "a", 1),
            entry(now + 1, now - 3_600_000, "a", 2),
            entry(now + 2, now - 3_600_000 + 10, "b", 3),
        ]);
        let slices: Vec<(i64, Vec<(String, u64)>)> = batch
            .slices
            .into_iter()
            .map(|s| (s.slice5, s.increments))
            .collect();
        assert_eq!(
            slices,
            [
                (
                    slice5_of(now - 3_600_000),
                    vec![("a".into(), 2), ("b".into(), 3)]
                ),
                (slice5_of(now), vec![("a".into(), 1)]),
            ]
        );
        assert_eq!(batch.views, 6);
    }
}
