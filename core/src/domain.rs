//! Domain types, parsed once at the edge (HTTP, log decoding, CLI) so inner code never re-checks them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// Longest accepted video id, in bytes (ids are ASCII).
pub const MAX_VIDEO_ID_LEN: usize = 64;
/// Largest `count` one element of a batch may carry.
pub const MAX_VIEW_COUNT: u64 = 1_000_000;
/// Largest K a ranking may be asked for.
pub const MAX_K: usize = 1000;

/// Why a value from outside was refused; the message is shown to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("videoId must be 1 to {MAX_VIDEO_ID_LEN} characters of A-Z a-z 0-9 _ - . :")]
    VideoId,
    #[error("count must be an integer from 1 to {MAX_VIEW_COUNT}")]
    Count,
    #[error("window must be one of minute, hour, day, all")]
    Window,
    #[error("k must be an integer from 1 to {MAX_K}")]
    K,
}

/// A video id: 1 to 64 characters of `A-Z a-z 0-9 _ - . :`.
///
/// The alphabet keeps ids safe as Redis members, log fields and URL path segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct VideoId(String);

impl VideoId {
    /// Accepts an id only if it has the documented length and alphabet.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_VIDEO_ID_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseError::VideoId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for VideoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for VideoId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// How many views one element of a batch stands for: 1 to [`MAX_VIEW_COUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ViewCount(u64);

impl ViewCount {
    pub const ONE: ViewCount = ViewCount(1);

    pub fn parse(raw: u64) -> Result<Self, ParseError> {
        if (1..=MAX_VIEW_COUNT).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ParseError::Count)
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// The sliding windows a ranking can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Minute,
    Hour,
    Day,
    All,
}

impl Window {
    pub const ALL: [Window; 4] = [Window::Minute, Window::Hour, Window::Day, Window::All];
    /// The windows that slide and therefore have slices retired from them.
    pub const SLIDING: [Window; 3] = [Window::Minute, Window::Hour, Window::Day];

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "minute" => Ok(Window::Minute),
            "hour" => Ok(Window::Hour),
            "day" => Ok(Window::Day),
            "all" => Ok(Window::All),
            _ => Err(ParseError::Window),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::All => "all",
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Window {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// How many entries a ranking returns: 1 to [`MAX_K`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopK(usize);

impl TopK {
    pub const DEFAULT: TopK = TopK(10);

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        raw.parse::<usize>()
            .ok()
            .and_then(|k| Self::new(k).ok())
            .ok_or(ParseError::K)
    }

    pub fn new(k: usize) -> Result<Self, ParseError> {
        if (1..=MAX_K).contains(&k) {
            Ok(Self(k))
        } else {
            Err(ParseError::K)
        }
    }

    pub fn get(self) -> usize {
        self.0
    }
}

/// One line of a ranking, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RankedVideo {
    #[schema(example = "dQw4w9WgXcQ")]
    pub video_id: String,
    pub views: u64,
}

/// Orders a ranking: views descending, ties by video id descending (the order `ZRANGE ... REV` gives, which is
/// what makes merging the partitions' lists exact).
pub fn ranking_order(a: &RankedVideo, b: &RankedVideo) -> std::cmp::Ordering {
    b.views
        .cmp(&a.views)
        .then_with(|| b.video_id.cmp(&a.video_id))
}

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

    #[test]
    fn video_id_alphabet_and_length() {
        assert!(VideoId::parse("abc-DEF_1.2:3").is_ok());
        assert!(VideoId::parse(&"a".repeat(64)).is_ok());
        assert_eq!(VideoId::parse(""), Err(ParseError::VideoId));
        assert_eq!(VideoId::parse(&"a".repeat(65)), Err(ParseError::VideoId));
        for bad in ["has space", "a/b", "é", "a\nb", "{1}", "a*"] {
            assert_eq!(VideoId::parse(bad), Err(ParseError::VideoId), "{bad:?}");
        }
    }

    #[test]
    fn k_and_count_bounds() {
        assert_eq!(TopK::parse("0"), Err(ParseError::K));
        assert_eq!(TopK::parse("1001"), Err(ParseError::K));
        assert_eq!(TopK::parse("-1"), Err(ParseError::K));
        assert_eq!(TopK::parse("1000").unwrap().get(), 1000);
        assert_eq!(ViewCount::parse(0), Err(ParseError::Count));
        assert_eq!(ViewCount::parse(MAX_VIEW_COUNT + 1), Err(ParseError::Count));
    }

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
