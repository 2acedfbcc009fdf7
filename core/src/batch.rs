//! Log entries: their ids, their encoding and decoding (`aggregate.rs` folds a batch of them for one apply
//! step).
//!
//! A log entry is one accepted request's views for one partition, as one stream field [`LINES_FIELD`] whose
//! value is a `<video id> <count>\n` line per video (the receiver sums repeats first). One field instead of a
//! field per video makes the entry a single string for Redis to store, send and parse: under load the log's
//! per-field work was about a sixth of Redis's time per view. Entries of an older build, a field per video
//! with its count as value, still decode.
//!
//! An entry's event time is its id's timestamp, unless it carries [`EVENT_TIME_FIELD`] beside its lines: a
//! source that knows when the views happened (a Kafka record's timestamp) writes it, so views replayed or
//! delayed count where they happened, under the apply script's late-view rules. A worker of an older build
//! refuses such an entry (two fields, one not a video id) and drops it: upgrade workers before a source that
//! writes event times.

use crate::domain::VideoId;
use std::collections::BTreeMap;

/// A stream entry id `ms-seq`; ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    pub ms: i64,
    pub seq: u64,
}

impl EntryId {
    /// The first id after this one: the next sequence, or the next millisecond's first when the sequence is at
    /// its largest (a rebuild leaves the group at `<ms>-18446744073709551615`).
    pub fn successor(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => Self { ms: self.ms, seq },
            None => Self {
                ms: self.ms + 1,
                seq: 0,
            },
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let (ms, seq) = raw.split_once('-')?;
        Some(Self {
            ms: ms.parse().ok().filter(|m: &i64| *m >= 0)?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A decoded log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub id: EntryId,
    /// When the entry's views happened: its [`EVENT_TIME_FIELD`], never after the id's time (a view cannot
    /// happen after it was logged; a producer's clock ahead of Redis's must not put views in a slice the
    /// windows have not reached), or the id's time without the field.
    pub event_ms: i64,
    /// `Err` holds why the entry could not be decoded; such an entry is acknowledged without effect (and
    /// logged), so one bad entry cannot wedge its partition.
    pub views: Result<Vec<(VideoId, u64)>, String>,
}

/// Largest count one log field may carry: Redis scores are doubles, exact for integers up to 2^53.
pub const MAX_FIELD_COUNT: u64 = 1 << 53;

/// The one field of a log entry. `#` is outside the video id alphabet, so it cannot be mistaken for an entry
/// of the older format, whose fields are video ids.
pub const LINES_FIELD: &str = "#lines";

/// The optional field of a log entry that holds its views' event time, in ms since the Unix epoch, beside
/// [`LINES_FIELD`] (only there: an entry of the older format may have a video called `t`).
pub const EVENT_TIME_FIELD: &str = "t";

/// The latest event time an entry may carry: the last millisecond of the year 9999.
pub const MAX_EVENT_MS: i64 = 253_402_300_799_999;

impl LogEntry {
    /// Decodes a stream entry's field/value pairs: its views ([`decode_fields`]) and its event time. A
    /// malformed event time refuses the entry like any other undecodable one.
    pub fn decode(id: EntryId, mut fields: Vec<(String, String)>) -> Self {
        let mut event_ms = Ok(id.ms);
        if fields.len() == 2 && fields.iter().any(|(name, _)| name == LINES_FIELD) {
            if let Some(k) = fields.iter().position(|(name, _)| name == EVENT_TIME_FIELD) {
                let (_, raw) = fields.remove(k);
                event_ms = parse_event_ms(&raw)
                    .map(|t| t.min(id.ms))
                    .ok_or_else(|| format!("bad event time {EVENT_TIME_FIELD}={raw:?}"));
            }
        }
        match event_ms {
            Ok(event_ms) => Self {
                id,
                event_ms,
                views: decode_fields(fields),
            },
            Err(why) => Self {
                id,
                event_ms: id.ms,
                views: Err(why),
            },
        }
    }
}

/// An event time field: milliseconds since the epoch, digits only. A time too large for any calendar (a
/// producer's microseconds, `i64::MAX`) is a time in the future like any other: the caller clamps it to the
/// entry's own time, so the views count rather than being refused.
fn parse_event_ms(raw: &str) -> Option<i64> {
    if raw.is_empty() || raw.len() > 40 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(raw.parse::<i64>().unwrap_or(i64::MAX))
}

/// Decodes the field/value pairs of a stream entry: one [`LINES_FIELD`], or (older entries) a field per video.
pub fn decode_fields(fields: Vec<(String, String)>) -> Result<Vec<(VideoId, u64)>, String> {
    match fields.as_slice() {
        [] => Err("empty entry".into()),
        [(field, lines)] if field == LINES_FIELD => decode_lines(lines),
        _ => fields
            .into_iter()
            .map(|(video, count)| decode_pair(&video, &count))
            .collect(),
    }
}

/// `<video id> <count>\n` lines, each complete; one bad line refuses the whole entry.
fn decode_lines(lines: &str) -> Result<Vec<(VideoId, u64)>, String> {
    if !lines.ends_with('\n') {
        return Err(format!(
            "{LINES_FIELD} is empty or does not end with a newline"
        ));
    }
    // Every line ends with its newline, so an empty line (`a 1\n\n`) is one line and is refused.
    crate::lines::split(lines)
        .map(|line| {
            let (video, count) =
                line.map_err(|line| format!("line {line:?} is not `<video id> <count>`"))?;
            decode_pair(video, count)
        })
        .collect()
}

fn decode_pair(video: &str, count: &str) -> Result<(VideoId, u64), String> {
    let video = VideoId::parse_stored(video).map_err(|e| format!("{e}: {video:?}"))?;
    let count = count
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=MAX_FIELD_COUNT).contains(n))
        .ok_or_else(|| format!("bad count {count:?} for {video}"))?;
    Ok((video, count))
}

/// Encodes a batch's views for one partition as the value of [`LINES_FIELD`], summing repeated ids.
///
/// Sums can exceed one element's `count` limit (a batch may repeat an id), so counts are plain integers.
pub fn encode_lines<'a>(views: impl IntoIterator<Item = (&'a VideoId, u64)>) -> String {
    let mut sums: BTreeMap<&str, u64> = BTreeMap::new();
    for (video, n) in views {
        *sums.entry(video.as_str()).or_default() += n;
    }
    crate::lines::encode(sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entry_ids_parse_and_order() {
        let a = EntryId::parse("1700000000000-0").unwrap();
        let b = EntryId::parse("1700000000000-12").unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "1700000000000-12");
        for bad in ["", "1", "-1-0", "a-b", "1-"] {
            assert_eq!(EntryId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn undecodable_entries_are_rejected_not_fatal() {
        assert!(decode_fields(vec![]).is_err());
        assert!(decode_fields(vec![("bad id".into(), "1".into())]).is_err());
        assert!(decode_fields(vec![("ok".into(), "0".into())]).is_err());
        assert!(decode_fields(vec![("ok".into(), "x".into())]).is_err());
    }

    /// A log entry of the current format.
    fn entry(lines: String) -> Vec<(String, String)> {
        vec![(LINES_FIELD.to_owned(), lines)]
    }

    #[test]
    fn lines_entries_decode_whole_or_not_at_all() {
        let ok = decode_fields(entry("a 2\nb:c 1\na 3\n".into())).unwrap();
        let ok: Vec<(&str, u64)> = ok.iter().map(|(v, n)| (v.as_str(), *n)).collect();
        assert_eq!(ok, [("a", 2), ("b:c", 1), ("a", 3)]);
        for bad in [
            "",
            "\n",
            "a 1",
            "a 1\n\n",
            "a 1\nb\n",
            "a  1\n",
            "a 0\n",
            "bad id 1\n",
            "a 1 \n",
        ] {
            assert!(decode_fields(entry(bad.into())).is_err(), "{bad:?}");
        }
        // `..` is refused at the edges now, but an entry an earlier version took with it is applied whole.
        let old = decode_fields(entry("a 1\n.. 2\n".into())).unwrap();
        assert_eq!(old.len(), 2);
        // The field name is not a video id, so an older entry is never read as lines, nor the reverse.
        assert!(VideoId::parse(LINES_FIELD).is_err());
        assert!(decode_fields(vec![
            ("a".into(), "1".into()),
            (LINES_FIELD.into(), "a 1\n".into())
        ])
        .is_err());
    }

    fn id(ms: i64) -> EntryId {
        EntryId { ms, seq: 0 }
    }

    #[test]
    fn an_event_time_beside_the_lines_is_the_entrys_time() {
        let lines = (LINES_FIELD.to_owned(), "a 2\n".to_owned());
        let t = |v: &str| (EVENT_TIME_FIELD.to_owned(), v.to_owned());
        let at = 1_700_000_060_000;
        // Without the field: the id's time.
        assert_eq!(LogEntry::decode(id(at), vec![lines.clone()]).event_ms, at);
        // Either order of the two fields.
        for fields in [
            vec![lines.clone(), t("1700000000000")],
            vec![t("1700000000000"), lines.clone()],
        ] {
            let e = LogEntry::decode(id(at), fields);
            assert_eq!(e.event_ms, 1_700_000_000_000);
            assert_eq!(e.views.unwrap().len(), 1);
        }
        // Never after the id's time.
        assert_eq!(
            LogEntry::decode(id(at), vec![lines.clone(), t("1800000000000")]).event_ms,
            at
        );
        // Past any calendar (microseconds, i64::MAX, more): in the future, so at the id's time, and counted.
        for far in [
            "253402300800000",
            "1700000000000000",
            "9223372036854775807",
            "99999999999999999999",
        ] {
            let e = LogEntry::decode(id(at), vec![lines.clone(), t(far)]);
            assert!(e.views.is_ok(), "{far:?}");
            assert_eq!(e.event_ms, at);
        }
        for bad in ["", "-1", "+5", "1.5", " 1", "1e3", "x"] {
            let e = LogEntry::decode(id(at), vec![lines.clone(), t(bad)]);
            assert!(e.views.is_err(), "{bad:?}");
            assert_eq!(e.event_ms, at);
        }
        // Beside anything but lines, `t` is an older entry's video.
        let old = LogEntry::decode(id(at), vec![t("3"), ("b".into(), "1".into())]);
        assert_eq!(old.event_ms, at);
        assert_eq!(old.views.unwrap().len(), 2);
        // Two event times beside the lines are refused.
        assert!(
            LogEntry::decode(id(at), vec![lines.clone(), t("1"), t("2")])
                .views
                .is_err()
        );
    }

    /// Any valid id: 1 to 64 characters of the alphabet.
    fn video_id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.:-]{1,64}".prop_filter("not . or ..", |v| v != "." && v != "..")
    }

    proptest! {
        /// Encoding then decoding keeps every view: the per-id sums are equal.
        #[test]
        fn codec_round_trip(views in proptest::collection::vec(("[a-c]{1,2}", 1u64..1000), 1..50)) {
            let parsed: Vec<(VideoId, u64)> = views.iter().map(|(v, n)| (VideoId::parse(v).unwrap(), *n)).collect();
            let decoded = decode_fields(entry(encode_lines(parsed.iter().map(|(v, n)| (v, *n))))).unwrap();
            let mut want: BTreeMap<String, u64> = BTreeMap::new();
            for (v, n) in &views { *want.entry(v.clone()).or_default() += n; }
            let got: BTreeMap<String, u64> = decoded.into_iter().map(|(v, n)| (v.into_string(), n)).collect();
            prop_assert_eq!(got, want);
        }

        /// The round trip over the whole id alphabet and length range and counts up to the per-element limit,
        /// with repeats: one field per distinct id, every value within what a field may carry, sums kept.
        #[test]
        fn codec_round_trip_full_range(
            views in proptest::collection::vec((video_id(), 1u64..=crate::domain::MAX_VIEW_COUNT), 1..200),
            repeat in 0usize..4,
        ) {
            let mut parsed: Vec<(VideoId, u64)> = views.iter().map(|(v, n)| (VideoId::parse(v).unwrap(), *n)).collect();
            let again: Vec<_> = parsed.iter().take(repeat).cloned().collect();
            parsed.extend(again);
            let lines = encode_lines(parsed.iter().map(|(v, n)| (v, *n)));
            let mut want: BTreeMap<String, u64> = BTreeMap::new();
            for (v, n) in &parsed { *want.entry(v.as_str().to_owned()).or_default() += n; }
            prop_assert_eq!(lines.lines().count(), want.len());
            let decoded = decode_fields(entry(lines)).unwrap();
            prop_assert!(decoded.iter().all(|(_, n)| (1..=MAX_FIELD_COUNT).contains(n)));
            let got: BTreeMap<String, u64> = decoded.into_iter().map(|(v, n)| (v.into_string(), n)).collect();
            prop_assert_eq!(got, want);
        }

        /// Decoding arbitrary field/value pairs never panics.
        #[test]
        fn decode_never_panics(fields in proptest::collection::vec((".{0,70}", ".{0,12}"), 0..5)) {
            let _ = decode_fields(fields);
        }

        /// An entry decodes exactly when every field is a valid id and every value a count in range; one bad
        /// pair rejects the whole entry (a worker then acknowledges it without effect, never half of it).
        #[test]
        fn decode_accepts_exactly_valid_entries(
            fields in proptest::collection::vec((
                prop_oneof![video_id(), "\\PC{0,70}"],
                prop_oneof![(1u64..=MAX_FIELD_COUNT).prop_map(|n| n.to_string()),
                            Just((MAX_FIELD_COUNT + 1).to_string()), Just("0".to_owned()),
                            Just(u64::MAX.to_string()), Just("18446744073709551616".to_owned()),
                            "[-+ 0-9a-f.]{0,21}"],
            ), 0..6),
        ) {
            let valid = !fields.is_empty() && fields.iter().all(|(v, n)| {
                VideoId::parse_stored(v).is_ok() && n.parse::<u64>().is_ok_and(|n| (1..=MAX_FIELD_COUNT).contains(&n))
            });
            let decoded = decode_fields(fields.clone());
            prop_assert_eq!(decoded.is_ok(), valid, "{:?}", decoded);
            if let Ok(decoded) = decoded {
                prop_assert_eq!(decoded.len(), fields.len());
            }
        }

        /// A lines entry decodes exactly when every line is a valid id, one space and a count in range, and it
        /// decodes to those lines in order; arbitrary text never panics.
        #[test]
        fn lines_decode_exactly_valid_entries(
            lines in proptest::collection::vec((
                prop_oneof![video_id(), "\\PC{0,70}"],
                prop_oneof![(1u64..=MAX_FIELD_COUNT).prop_map(|n| n.to_string()), Just("0".to_owned()),
                            Just((MAX_FIELD_COUNT + 1).to_string()), "[-+ 0-9a-f.]{0,21}"],
            ), 0..6),
            raw in "\\PC{0,80}",
        ) {
            let _ = decode_fields(entry(raw));
            let blob: String = lines.iter().map(|(v, n)| format!("{v} {n}\n")).collect();
            let valid = !lines.is_empty() && lines.iter().all(|(v, n)| {
                VideoId::parse_stored(v).is_ok() && n.parse::<u64>().is_ok_and(|n| (1..=MAX_FIELD_COUNT).contains(&n))
            });
            let decoded = decode_fields(entry(blob));
            prop_assert_eq!(decoded.is_ok(), valid, "{:?}", decoded);
            if let Ok(decoded) = decoded {
                let got: Vec<(String, u64)> = decoded.into_iter().map(|(v, n)| (v.into_string(), n)).collect();
                let want: Vec<(String, u64)> = lines.into_iter().map(|(v, n)| (v, n.parse().unwrap())).collect();
                prop_assert_eq!(got, want);
            }
        }

        /// An event time decodes exactly when it is plain digits; arbitrary text never panics, and a valid
        /// one is kept at most at the id's time (one too large for an i64 is in the future: the id's time).
        #[test]
        fn event_times_decode_exactly_valid_values(
            raw in prop_oneof![
                (0..=MAX_EVENT_MS).prop_map(|t| t.to_string()),
                (MAX_EVENT_MS..=i64::MAX).prop_map(|t| t.to_string()),
                "[0-9]{19,30}",
                "\\PC{0,20}",
                "[-+0-9 ]{0,17}",
            ],
            at in 0i64..=MAX_EVENT_MS,
        ) {
            let e = LogEntry::decode(id(at), vec![(LINES_FIELD.into(), "a 1\n".into()), (EVENT_TIME_FIELD.into(), raw.clone())]);
            let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
            let valid = digits.then(|| raw.parse::<i64>().unwrap_or(i64::MAX));
            prop_assert_eq!(e.views.is_ok(), valid.is_some(), "{:?}", raw);
            prop_assert_eq!(e.event_ms, valid.map_or(at, |t| t.min(at)));
        }

        /// Entry ids: anything parses or is refused without a panic; what parses prints back to an id that
        /// parses to the same value.
        #[test]
        fn entry_ids_never_panic_and_round_trip(raw in "\\PC{0,30}|[0-9]{1,20}-[0-9]{1,20}") {
            if let Some(id) = EntryId::parse(&raw) {
                prop_assert_eq!(EntryId::parse(&id.to_string()), Some(id));
            }
        }
    }
}
