//! Merging the partitions' rankings into the exact global top K, and how far to read each partition for it.
//! Each video lives in exactly one partition, so the global top K is within the union of the partitions' top K
//! lists; these pure functions decide how little of each list that takes.

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rv(id: &str, views: u64) -> RankedVideo {
        RankedVideo {
            video_id: id.into(),
            views,
        }
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
        /// (`skew`), scores tie often, and K is large against the first read.
        #[test]
        fn prefix_reads_give_the_exact_top_k(counts in proptest::collection::btree_map("[a-f]{1,3}", 1u64..12, 0..150),
                                             parts in 1usize..9, k in 1usize..80, skew in 0u8..4) {
            let k = TopK::new(k).unwrap();
            let mut members: Vec<Vec<RankedVideo>> = vec![Vec::new(); parts];
            for (i, (id, n)) in counts.iter().enumerate() {
                // With skew, the busiest videos go to partition 0.
                let p = if *n + u64::from(skew) >= 12 { 0 } else { i % parts };
                members[p].push(rv(id, *n));
            }
            for m in &mut members {
                m.sort_by(ranking_order);
            }
            let read = |p: usize, n: usize| members[p].iter().take(n).cloned().collect::<Vec<_>>();
            let first = first_read_len(k, parts);
            let mut asked = vec![first; parts];
            let mut lists: Vec<Vec<RankedVideo>> = (0..parts).map(|p| read(p, first)).collect();
            let mut rounds = 0;
            loop {
                let more = lists_to_extend(&lists, &asked, k);
                if more.is_empty() {
                    break;
                }
                rounds += 1;
                prop_assert!(rounds <= 1, "a list was extended twice");
                for p in more {
                    lists[p] = read(p, k.get());
                    asked[p] = k.get();
                }
            }
            let mut whole: Vec<RankedVideo> = members.into_iter().flatten().collect();
            whole.sort_by(ranking_order);
            whole.truncate(k.get());
            prop_assert_eq!(merge_rankings(lists, k), whole);
        }
    }
}
