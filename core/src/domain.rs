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
    #[error("videoId must be 1 to {MAX_VIDEO_ID_LEN} characters of A-Z a-z 0-9 _ - . :, and not . or ..")]
    VideoId,
    #[error("count must be an integer from 1 to {MAX_VIEW_COUNT}")]
    Count,
    #[error("window must be one of minute, hour, day, all")]
    Window,
    #[error("k must be an integer from 1 to {MAX_K}")]
    K,
    #[error("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters")]
    IdempotencyKey,
}

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// How the keys topk generates for batches sent without one begin ([`IdempotencyKey::generated`]).
const GENERATED_PREFIX: &str = "topk-";

/// A producer's key for one batch (`Idempotency-Key`): 1 to 128 printable ASCII characters. A batch sent again
/// with the same key is stored once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let ok = (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&raw.len())
            && raw.bytes().all(|b| (b' '..=b'~').contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseError::IdempotencyKey)
        }
    }

    /// The key of batch `index` of group append `group`, for a batch sent without one (on Redis Cluster every
    /// batch is appended under a key): `topk-<group>.<index>`. The batches of a group share their `group`, so
    /// a partition records all of theirs in one place ([`Self::generated_group`]).
    pub fn generated(group: uuid::Uuid, index: usize) -> Self {
        Self(format!("{GENERATED_PREFIX}{}.{index}", group.hyphenated()))
    }

    /// For a key of the generated form ([`Self::generated`]): its group (`topk-<group>`) and its index, as
    /// written (canonical decimal). The form is a pure function of the text, so a producer that sends such a
    /// key back (a failed append handed it out) finds the records made under it.
    pub fn generated_group(&self) -> Option<(&str, &str)> {
        let (group, index) = self.0.rsplit_once('.')?;
        let uuid = group.strip_prefix(GENERATED_PREFIX)?;
        let canonical_uuid =
            uuid::Uuid::try_parse(uuid).is_ok_and(|u| u.hyphenated().to_string() == uuid);
        let canonical_index = !index.is_empty()
            // Up to 6 digits: more than a group holds (`MAX_GROUP_VIEWS` views of 1 or more), and a bound on
            // what one hash can be made to hold under one uuid.
            && index.len() <= 6
            && index.bytes().all(|b| b.is_ascii_digit())
            && (index == "0" || !index.starts_with('0'));
        (canonical_uuid && canonical_index).then_some((group, index))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A video id: 1 to 64 characters of `A-Z a-z 0-9 _ - . :`, other than `.` and `..`.
///
/// The alphabet keeps ids safe as Redis members, log fields and URL path segments; `.` and `..` are refused
/// because a URL resolves them away as path segments (`/v1/videos/..` is `/v1/`): such an id could be
/// ranked but never read back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct VideoId(String);

impl VideoId {
    /// Accepts an id only if it has the documented length and alphabet and is not `.` or `..`: for every
    /// id from outside (HTTP, Kafka records, command lines).
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if matches!(raw, "." | "..") {
            return Err(ParseError::VideoId);
        }
        Self::parse_stored(raw)
    }

    /// An id read back from what topk stored itself (the log, Postgres history): the length and alphabet
    /// only, so that `.` and `..`, which versions before the refusal accepted, are still counted, restored
    /// and verified like the rest of their batch instead of failing it. Never for input from outside.
    pub fn parse_stored(raw: &str) -> Result<Self, ParseError> {
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
        one_to(MAX_VIEW_COUNT, raw, ParseError::Count).map(Self)
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
        one_to(MAX_K, k, ParseError::K).map(Self)
    }

    pub fn get(self) -> usize {
        self.0
    }
}

/// `raw` when it is from 1 to `max`, else `refusal`: the bound of the counts and sizes above.
fn one_to<T: PartialOrd + From<u8>>(max: T, raw: T, refusal: ParseError) -> Result<T, ParseError> {
    if (T::from(1)..=max).contains(&raw) {
        Ok(raw)
    } else {
        Err(refusal)
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

/// A ranking of every video of `sums` (video, views), in [`ranking_order`].
pub fn rank<V: Into<String>>(sums: impl IntoIterator<Item = (V, u64)>) -> Vec<RankedVideo> {
    let mut out: Vec<RankedVideo> = sums
        .into_iter()
        .map(|(video, views)| RankedVideo {
            video_id: video.into(),
            views,
        })
        .collect();
    out.sort_unstable_by(ranking_order);
    out
}

/// Orders a ranking: views descending, ties by video id descending (the order `ZRANGE ... REV` gives, which is
/// what makes merging the partitions' lists exact).
pub fn ranking_order(a: &RankedVideo, b: &RankedVideo) -> std::cmp::Ordering {
    b.views
        .cmp(&a.views)
        .then_with(|| b.video_id.cmp(&a.video_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_name_their_group_and_nothing_else_does() {
        let group = uuid::Uuid::new_v4();
        let key = IdempotencyKey::generated(group, 7);
        let want = format!("topk-{group}");
        assert_eq!(key.generated_group(), Some((want.as_str(), "7")));
        assert_eq!(IdempotencyKey::parse(key.as_str()), Ok(key.clone()));
        // Another spelling of the same group or index would be another key with the same record: refused.
        let upper = format!("topk-{}.7", group.hyphenated().to_string().to_uppercase());
        let simple = format!("topk-{}.7", group.simple());
        for other in [
            format!("{want}.07"),
            format!("{want}."),
            format!("{want}.+7"),
            format!("{want}.1234567"),
            format!("{want}.7.1"),
            want.clone(),
            upper,
            simple,
            format!("other-{group}.7"),
            "order.7".to_owned(),
        ] {
            assert_eq!(
                IdempotencyKey::parse(&other).unwrap().generated_group(),
                None,
                "{other}"
            );
        }
        assert_eq!(
            IdempotencyKey::generated(group, 0).generated_group(),
            Some((want.as_str(), "0"))
        );
    }

    #[test]
    fn video_id_alphabet_and_length() {
        assert!(VideoId::parse("abc-DEF_1.2:3").is_ok());
        assert!(VideoId::parse(&"a".repeat(64)).is_ok());
        assert_eq!(VideoId::parse(""), Err(ParseError::VideoId));
        assert_eq!(VideoId::parse(&"a".repeat(65)), Err(ParseError::VideoId));
        // `.` and `..` are path segments a URL resolves away: such an id could be ranked but never read back.
        for bad in ["has space", "a/b", "é", "a\nb", "{1}", "a*", ".", ".."] {
            assert_eq!(VideoId::parse(bad), Err(ParseError::VideoId), "{bad:?}");
        }
        for dots in ["...", ".a", "a.", "..a"] {
            assert!(VideoId::parse(dots).is_ok(), "{dots:?}");
        }
        // What an earlier version stored is read back.
        assert!(VideoId::parse_stored("..").is_ok());
        assert_eq!(VideoId::parse_stored("a b"), Err(ParseError::VideoId));
    }

    #[test]
    fn k_and_count_bounds() {
        assert_eq!(TopK::parse("0"), Err(ParseError::K));
        assert_eq!(TopK::parse("1001"), Err(ParseError::K));
        assert_eq!(TopK::parse("-1"), Err(ParseError::K));
        assert_eq!(TopK::parse("1000").unwrap().get(), 1000);
        assert_eq!(ViewCount::parse(0), Err(ParseError::Count));
        assert_eq!(ViewCount::parse(MAX_VIEW_COUNT + 1), Err(ParseError::Count));
        assert!(IdempotencyKey::parse("batch 42:retry-ok").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(128)).is_ok());
        for bad in [
            "".to_owned(),
            "k".repeat(129),
            "tab\there".into(),
            "é".into(),
        ] {
            assert_eq!(
                IdempotencyKey::parse(&bad),
                Err(ParseError::IdempotencyKey),
                "{bad:?}"
            );
        }
    }
}
