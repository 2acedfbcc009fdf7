//! Merging the partitions' rankings into the exact global top K, and how far to read each partition for it.
//! Each video lives in exactly one partition, so the global top K is within the union of the partitions' top K
//! lists. A partition's leader set holds only its share of the top K, with every video above its threshold;
//! these pure functions decide how little of each leader set that takes to read, and when a partition's hash
//! must be read as well.

use crate::domain::{ranking_order, RankedVideo, TopK};

/// Merges per-partition rankings (each already in [`ranking_order`]) into the global top `k`.
///
/// Each video lives in exactly one partition, so the global top K is contained in the union of the partitions'
/// top K lists.
pub fn merge_rankings(lists: Vec<Vec<RankedVideo>>, k: TopK) -> Vec<RankedVideo> {
    let mut all: Vec<RankedVideo> = lists.into_iter().flatten().collect();
    all.sort_unstable_by(ranking_order);
    all.truncate(k.get());
    all
}

/// How many members to read first from each of `partitions` lists for a global top `k`: a partition holds about
/// k / partitions of it, so twice that share and a few more make a second read rare, and a refresh of the top
/// 1000 over 16 partitions reads ~2,100 members instead of 16,000.
pub fn first_read_len(k: TopK, partitions: usize) -> usize {
    if partitions <= 1 {
        return k.get();
    }
    (2 * k.get())
        .div_ceil(partitions)
        .saturating_add(8)
        .min(k.get())
}

/// The lists (indexes into `lists`) that must be read further, up to `k`, before [`merge_rankings`] is exact.
///
/// `lists[i]` is the first `asked[i]` members of partition i in [`ranking_order`] (fewer: the partition has no
/// more). Its unread members all rank after its last read one. Let `cut` be the k-th of everything read: the
/// true k-th ranks at or before it (k members known rank there), so a list whose last member ranks after `cut`
/// hides nothing of the top k. Any other list that may hold more (it returned all it was asked, less than k)
/// must be read further; a list of k members never needs to be, since one partition gives at most k.
pub fn lists_to_extend(lists: &[Vec<RankedVideo>], asked: &[usize], k: TopK) -> Vec<usize> {
    let may_hold_more = |i: usize| lists[i].len() >= asked[i] && asked[i] < k.get();
    let mut read: Vec<&RankedVideo> = lists.iter().flatten().collect();
    let cut = if read.len() >= k.get() {
        let (_, kth, _) = read.select_nth_unstable_by(k.get() - 1, |a, b| ranking_order(a, b));
        Some((*kth).clone())
    } else {
        None
    };
    (0..lists.len())
        .filter(|&i| may_hold_more(i))
        .filter(|&i| match (&cut, lists[i].last()) {
            (Some(cut), Some(last)) => ranking_order(last, cut) != std::cmp::Ordering::Greater,
            _ => true,
        })
        .collect()
}

/// The partitions whose window hash must be read, and from which count, before [`merge_rankings`] of `lists` is
/// the exact top `k`; `None` when it already is. Call it once [`lists_to_extend`] names no list.
///
/// A partition's leader set holds every video of the partition counted at or above its threshold
/// (`completes[i]`, `lua/leaders.lua`), but only about its share of the top K, not the whole top K. Let `floor`
/// be the k-th count among the leaders read (1 when fewer than k were read: then every video may be in the top
/// k). The true k-th count is at or above `floor` (k videos are known to be counted there), so every video of
/// the top k is counted at or above it, and is a leader wherever the threshold is at or below `floor`. Only a
/// partition whose threshold is above `floor` can hide one, counted in `[floor, threshold)`: read every video of
/// its hash counted at or above `floor` in place of its list, and the merge is exact. Leader sets sized for
/// their share keep every threshold below the k-th count, so this is the exception (a partition holding far
/// more than its share of the top K), not the rule.
pub fn partitions_to_scan(
    lists: &[Vec<RankedVideo>],
    completes: &[u64],
    k: TopK,
) -> Option<ScanPlan> {
    let mut counts: Vec<u64> = lists.iter().flatten().map(|r| r.views).collect();
    let floor = if counts.len() >= k.get() {
        let (_, kth, _) = counts.select_nth_unstable_by(k.get() - 1, |a, b| b.cmp(a));
        (*kth).max(1)
    } else {
        1
    };
    let partitions: Vec<usize> = (0..completes.len())
        .filter(|&i| completes[i] > floor)
        .collect();
    (!partitions.is_empty()).then_some(ScanPlan { floor, partitions })
}

/// What [`partitions_to_scan`] asks for: every video counted at or above `floor` in each of `partitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPlan {
    pub floor: u64,
    pub partitions: Vec<usize>,
}

/// The reads of a global top K from the partitions' leader sets, as steps the caller carries out ([`Self::next`]):
/// a short prefix of every leader set, then the rest of the few that could hide more of the top
/// ([`lists_to_extend`]), then the hash of any partition whose threshold is above the K-th count merged
/// ([`partitions_to_scan`]), until nothing more is needed. A list read again, or a hash scanned, replaces the
/// first, and both checks run again on what was read, so a ranking that moved in between (a slice retired
/// during a scan) is still checked against the lists merged. A scanned partition's list holds every video it
/// counted at or above the floor of the scan, so that floor is its threshold from then on: it is scanned
/// again only if the K-th count merged falls below it. Pure, so the property tests drive the same steps as the
/// store's reads.
#[derive(Debug, Clone)]
pub struct TopKRead {
    k: TopK,
    first: usize,
    lists: Vec<Vec<RankedVideo>>,
    completes: Vec<u64>,
    asked: Vec<usize>,
    scanned: usize,
}

/// What [`TopKRead::next`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextRead {
    /// The first `n` leaders of each of `partitions`, with their thresholds ([`TopKRead::leaders`]).
    Leaders { partitions: Vec<usize>, n: usize },
    /// Every video of each partition of the plan counted at or above its floor ([`TopKRead::hash`]).
    Hashes(ScanPlan),
    /// Nothing: [`TopKRead::ranking`] is exact.
    Done,
}

impl TopKRead {
    pub fn new(k: TopK, partitions: usize) -> Self {
        Self {
            k,
            first: first_read_len(k, partitions),
            lists: vec![Vec::new(); partitions],
            completes: vec![1; partitions],
            asked: vec![0; partitions],
            scanned: 0,
        }
    }

    pub fn next(&self) -> NextRead {
        if self.asked.contains(&0) {
            let partitions = (0..self.asked.len())
                .filter(|&i| self.asked[i] == 0)
                .collect();
            return NextRead::Leaders {
                partitions,
                n: self.first,
            };
        }
        let more = lists_to_extend(&self.lists, &self.asked, self.k);
        if !more.is_empty() {
            return NextRead::Leaders {
                partitions: more,
                n: self.k.get(),
            };
        }
        partitions_to_scan(&self.lists, &self.completes, self.k)
            .map_or(NextRead::Done, NextRead::Hashes)
    }

    /// Partition `i`'s first `n` leaders (fewer: it has no more) and its threshold, read together.
    pub fn leaders(&mut self, i: usize, n: usize, complete: u64, list: Vec<RankedVideo>) {
        self.lists[i] = list;
        self.completes[i] = complete;
        self.asked[i] = n;
    }

    /// Every video of partition `i` counted at or above `floor`, in ranking order.
    pub fn hash(&mut self, i: usize, floor: u64, list: Vec<RankedVideo>) {
        self.lists[i] = list;
        self.completes[i] = floor;
        self.asked[i] = self.k.get();
        self.scanned += 1;
    }

    /// Partitions whose hash was read so far.
    pub fn scanned(&self) -> usize {
        self.scanned
    }

    /// The top K of everything read: exact once [`Self::next`] is [`NextRead::Done`].
    pub fn ranking(self) -> Vec<RankedVideo> {
        merge_rankings(self.lists, self.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn rv(id: &str, views: u64) -> RankedVideo {
        RankedVideo {
            video_id: id.into(),
            views,
        }
    }

    /// `counts` split over `parts` partitions, each in ranking order; with `skew`, the busiest videos all go to
    /// partition 0.
    fn skewed(counts: &BTreeMap<String, u64>, parts: usize, skew: u8) -> Vec<Vec<RankedVideo>> {
        let mut members: Vec<Vec<RankedVideo>> = vec![Vec::new(); parts];
        for (i, (id, n)) in counts.iter().enumerate() {
            let p = if *n + u64::from(skew) >= 12 {
                0
            } else {
                i % parts
            };
            members[p].push(rv(id, *n));
        }
        for m in &mut members {
            m.sort_by(ranking_order);
        }
        members
    }

    /// The brute-force top `k` of every partition's members.
    fn top_of(members: Vec<Vec<RankedVideo>>, k: TopK) -> Vec<RankedVideo> {
        let mut whole: Vec<RankedVideo> = members.into_iter().flatten().collect();
        whole.sort_by(ranking_order);
        whole.truncate(k.get());
        whole
    }

    /// What [`drive`] read: the ranking, and how many rounds of extensions and of scans it took.
    struct Driven {
        ranking: Vec<RankedVideo>,
        extensions: usize,
        scans: usize,
    }

    /// Carries out [`TopKRead`]'s steps over fixed partitions: `leaders` (each in ranking order) with their
    /// thresholds `completes`, and `hashes` (every video of each partition).
    fn drive(
        k: TopK,
        leaders: &[Vec<RankedVideo>],
        completes: &[u64],
        hashes: &[Vec<RankedVideo>],
    ) -> Result<Driven, TestCaseError> {
        let mut reads = TopKRead::new(k, leaders.len());
        let (mut rounds, mut extensions, mut scans) = (0, 0, 0);
        loop {
            match reads.next() {
                NextRead::Leaders { partitions, n } => {
                    // Over partitions that do not change, a scan only adds members: no list needs reading
                    // further after one.
                    prop_assert_eq!(scans, 0, "a list was read again after a scan");
                    extensions += usize::from(rounds > 0);
                    for i in partitions {
                        reads.leaders(
                            i,
                            n,
                            completes[i],
                            leaders[i].iter().take(n).cloned().collect(),
                        );
                    }
                }
                NextRead::Hashes(plan) => {
                    scans += 1;
                    for i in plan.partitions {
                        let found = hashes[i]
                            .iter()
                            .filter(|r| r.views >= plan.floor)
                            .cloned()
                            .collect();
                        reads.hash(i, plan.floor, found);
                    }
                }
                NextRead::Done => break,
            }
            rounds += 1;
        }
        Ok(Driven {
            ranking: reads.ranking(),
            extensions,
            scans,
        })
    }

    proptest! {
        /// Merging per-partition top-K lists equals the top K of the whole, whatever the split.
        #[test]
        fn merge_equals_global_sort(counts in proptest::collection::btree_map("[a-d]{1,3}", 1u64..20, 0..60),
                                    parts in 1usize..5, k in 1usize..30) {
            let k = TopK::new(k).unwrap();
            let mut lists = vec![Vec::new(); parts];
            for (i, (id, n)) in counts.iter().enumerate() {
                lists[i % parts].push(rv(id, *n));
            }
            let mut whole: Vec<RankedVideo> = lists.iter().flatten().cloned().collect();
            whole.sort_by(ranking_order);
            whole.truncate(k.get());
            let tops = lists.into_iter().map(|mut l| { l.sort_by(ranking_order); l.truncate(k.get()); l }).collect();
            prop_assert_eq!(merge_rankings(tops, k), whole);
        }

        /// Reading a short prefix of each partition first, then extending the lists `lists_to_extend` names until
        /// it names none, gives the exact top K, whatever the skew: here most of the top can sit in one partition
        /// (`skew`), scores tie often, and K is large against the first read. Every video is a leader (the
        /// thresholds at 1), so nothing is scanned.
        #[test]
        fn prefix_reads_give_the_exact_top_k(counts in proptest::collection::btree_map("[a-f]{1,3}", 1u64..12, 0..150),
                                             parts in 1usize..9, k in 1usize..80, skew in 0u8..4) {
            let k = TopK::new(k).unwrap();
            let members = skewed(&counts, parts, skew);
            let read = drive(k, &members, &vec![1; parts], &members)?;
            prop_assert!(read.extensions <= 1, "a list was extended twice");
            prop_assert_eq!(read.scans, 0);
            prop_assert_eq!(read.ranking, top_of(members, k));
        }

        /// Leader sets that hold only part of their partition's top (every video at or above the partition's
        /// threshold, some between `enter` and it, none below): reading prefixes, extending, then scanning the
        /// hashes `partitions_to_scan` names gives the exact top K. Thresholds are drawn at random, so any
        /// partition may be short of its share, and skew puts most of the top in one partition.
        #[test]
        fn leader_sets_with_thresholds_give_the_exact_top_k(
            counts in proptest::collection::btree_map("[a-f]{1,3}", 1u64..12, 0..150),
            parts in 1usize..9, k in 1usize..80, skew in 0u8..4,
            thresholds in proptest::collection::vec((1u64..14, 0u64..6), 8),
            coins in proptest::collection::vec(any::<bool>(), 150),
        ) {
            let k = TopK::new(k).unwrap();
            let hashes = skewed(&counts, parts, skew);
            let completes: Vec<u64> = thresholds[..parts].iter().map(|t| t.0).collect();
            let mut coin = coins.iter().cycle();
            let leaders: Vec<Vec<RankedVideo>> = hashes
                .iter()
                .zip(&thresholds)
                .map(|(hash, &(complete, below))| {
                    let enter = complete.saturating_sub(below).max(1);
                    hash.iter()
                        .filter(|r| r.views >= complete || (r.views >= enter && *coin.next().unwrap()))
                        .cloned()
                        .collect()
                })
                .collect();
            let read = drive(k, &leaders, &completes, &hashes)?;
            prop_assert!(read.scans <= 1, "a partition was scanned twice over unchanging hashes");
            prop_assert_eq!(read.ranking, top_of(hashes, k));
        }

        /// Without a threshold above the k-th count nothing is scanned: every leader set that holds its
        /// partition's whole top K (the thresholds at 1) leaves no partition to scan.
        #[test]
        fn nothing_to_scan_when_every_threshold_is_one(
            counts in proptest::collection::vec(1u64..50, 0..40), parts in 1usize..5, k in 1usize..20,
        ) {
            let k = TopK::new(k).unwrap();
            let mut lists = vec![Vec::new(); parts];
            for (i, n) in counts.iter().enumerate() {
                lists[i % parts].push(rv(&format!("v{i}"), *n));
            }
            prop_assert_eq!(partitions_to_scan(&lists, &vec![1; parts], k), None);
        }
    }
}
