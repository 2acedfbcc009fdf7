//! The view wire format: a batch is a JSON array of elements like `{"videoId": "abc", "count": 3}`, the body
//! of `POST /v1/views` and the value of a Kafka record alike. Parsed here, once, into `(VideoId, count)`
//! pairs, with an error that names the first bad element; each edge turns that error into its own answer
//! (a 400, a dead letter).
//!
//! Over HTTP an element may say when its view happened (`"at"`, RFC 3339 with an offset): such views are
//! grouped by their 5-second slice ([`DatedViews`]), the finest grain any window or history uses, so a
//! batch costs one log entry per partition and slice rather than per element. A Kafka record's views
//! happened at the record's timestamp, so there an `at` is refused ([`parse_batch`]).

use crate::domain::{VideoId, ViewCount};
use crate::slices::{slice5_of, SLICE5_MS};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Why a batch was refused, naming the first bad element (counting from 0). The message echoes at most
/// [`ECHOED_CHARS`] characters of the client's own text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(String);

/// One element of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ViewIn {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ - . :`, and not `.` or `..`.
    #[schema(
        example = "dQw4w9WgXcQ",
        min_length = 1,
        max_length = 64,
        pattern = r"^(?:[A-Za-z0-9_:-]|\.[A-Za-z0-9_:-]|\.\.[A-Za-z0-9_.:-])[A-Za-z0-9_.:-]*$"
    )]
    pub video_id: String,
    /// How many views this element stands for, 1 to 1,000,000 (default 1).
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub count: Option<u64>,
    /// When the view happened (RFC 3339 with an offset; HTTP only). Without it, when the batch is stored.
    /// Counts in every window whose span holds it when applied, and in history at its own minute; at most
    /// `TOPK_EVENT_TIME_MAX_SKEW_SECS` in the future.
    #[schema(example = "2026-12-07T10:15:00Z", format = DateTime, value_type = Option<String>)]
    pub at: Option<String>,
}

/// Views of a batch that their producer dated, all in one 5-second slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedViews {
    /// The start of their slice, ms since the Unix epoch.
    pub event_ms: i64,
    pub views: Vec<(VideoId, u64)>,
}

/// A batch of `POST /v1/views`: the views without `at` (they happened when the batch is stored) and the
/// dated ones by slice, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatedBatch {
    pub undated: Vec<(VideoId, u64)>,
    pub dated: Vec<DatedViews>,
}

impl DatedBatch {
    /// Its elements (a video, or a video at a slice), dated or not.
    pub fn elements(&self) -> usize {
        self.undated.len() + self.dated.iter().map(|d| d.views.len()).sum::<usize>()
    }

    /// Every view of the batch, dated or not.
    pub fn views(&self) -> u64 {
        let undated: u64 = self.undated.iter().map(|(_, n)| n).sum();
        let dated: u64 = self
            .dated
            .iter()
            .flat_map(|d| d.views.iter().map(|(_, n)| n))
            .sum();
        undated + dated
    }
}

/// What an `at` may be: not before the Unix epoch, and at most `max_skew_ms` after `now_ms` (the receiver's
/// clock).
#[derive(Debug, Clone, Copy)]
pub struct EventTimeRule {
    pub now_ms: i64,
    pub max_skew_ms: i64,
}

/// Parses and validates a whole batch whose views happened when it is stored (a Kafka record's value): an
/// element with `at` is refused. The error names the first bad element (counting from 0).
pub fn parse_batch(body: &[u8], max_len: usize) -> Result<Vec<(VideoId, u64)>, WireError> {
    let raw = parse_elements(body, max_len)?;
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            if v.at.is_some() {
                return Err(WireError(format!(
                    "element {i}: at is not taken here: these views happened at the record's timestamp"
                )));
            }
            element(i, &v)
        })
        .collect()
}

/// Parses and validates a whole batch of `POST /v1/views`, each `at` under `rule`; the error names the first
/// bad element (counting from 0), and nothing of a refused batch is kept.
pub fn parse_dated_batch(
    body: &[u8],
    max_len: usize,
    rule: EventTimeRule,
) -> Result<DatedBatch, WireError> {
    let raw = parse_elements(body, max_len)?;
    let mut batch = DatedBatch::default();
    let mut by_slice: BTreeMap<i64, Vec<(VideoId, u64)>> = BTreeMap::new();
    for (i, v) in raw.iter().enumerate() {
        let view = element(i, v)?;
        match &v.at {
            None => batch.undated.push(view),
            Some(at) => {
                let at_ms =
                    event_ms(at, rule).map_err(|why| WireError(format!("element {i}: {why}")))?;
                by_slice
                    .entry(slice5_of(at_ms) * SLICE5_MS)
                    .or_default()
                    .push(view);
            }
        }
    }
    batch.dated = by_slice
        .into_iter()
        .map(|(event_ms, views)| DatedViews { event_ms, views })
        .collect();
    Ok(batch)
}

/// An element's video and count.
fn element(i: usize, v: &ViewIn) -> Result<(VideoId, u64), WireError> {
    let video = VideoId::parse(&v.video_id).map_err(|e| WireError(format!("element {i}: {e}")))?;
    let count = ViewCount::parse(v.count.unwrap_or(1))
        .map_err(|e| WireError(format!("element {i}: {e}")))?;
    Ok((video, count.get()))
}

/// An `at`, in ms since the epoch, or why it is refused.
fn event_ms(at: &str, rule: EventTimeRule) -> Result<i64, String> {
    let parsed = DateTime::parse_from_rfc3339(at).map_err(|_| {
        format!(
            "at {} is not an RFC 3339 time with an offset, like \"2026-12-07T10:15:00Z\"",
            cut_short(at)
        )
    })?;
    let ms = parsed.timestamp_millis();
    if ms < 0 {
        return Err(format!(
            "at {} is before 1970-01-01T00:00:00Z",
            cut_short(at)
        ));
    }
    if ms > rule.now_ms.saturating_add(rule.max_skew_ms) {
        let now = DateTime::<Utc>::from_timestamp_millis(rule.now_ms).map_or_else(
            || rule.now_ms.to_string(),
            |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        return Err(format!(
            "at {} is in the future: more than {} ms after this server's time, {now}",
            cut_short(at),
            rule.max_skew_ms
        ));
    }
    Ok(ms)
}

/// The elements of a batch, its length checked.
fn parse_elements(body: &[u8], max_len: usize) -> Result<Vec<ViewIn>, WireError> {
    let raw: Vec<ViewIn> = match serde_json::from_slice(body) {
        Ok(raw) => raw,
        Err(e) => return Err(WireError(explain_json_error(body, e))),
    };
    if raw.is_empty() {
        return Err(WireError(
            "the batch is empty: send at least one view".into(),
        ));
    }
    if raw.len() > max_len {
        return Err(WireError(format!(
            "the batch has {} elements, at most {max_len} are accepted",
            raw.len()
        )));
    }
    Ok(raw)
}

/// At most this many characters of a client's own text are echoed in an error: a field name can be as long
/// as the body.
pub const ECHOED_CHARS: usize = 40;

/// `text` quoted, cut to [`ECHOED_CHARS`] characters (marked `...` when cut).
fn cut_short(text: &str) -> String {
    let mut chars = text.char_indices();
    match chars.nth(ECHOED_CHARS) {
        Some((end, _)) => format!("{:?}...", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// Turns a serde error into a message naming the first bad element, by re-reading the body loosely.
fn explain_json_error(body: &[u8], err: serde_json::Error) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return format!("body is not valid JSON: {err}");
    };
    let Some(items) = value.as_array() else {
        return "body must be a JSON array of views like [{\"videoId\": \"abc\", \"count\": 1}]"
            .into();
    };
    for (i, item) in items.iter().enumerate() {
        if let Err(e) = serde_json::from_value::<ViewIn>(item.clone()) {
            let why = match item.as_object() {
                None => "must be an object like {\"videoId\": \"abc\", \"count\": 1}".to_owned(),
                Some(obj) => match obj
                    .keys()
                    .find(|k| !["videoId", "count", "at"].contains(&k.as_str()))
                {
                    Some(k) => format!(
                        "unknown field {}: only videoId, count and at are allowed",
                        cut_short(k)
                    ),
                    None if !obj.get("videoId").is_some_and(|v| v.is_string()) => {
                        "videoId is required and must be a string".into()
                    }
                    None if obj.get("at").is_some_and(|v| !v.is_string()) => {
                        "at must be a string: an RFC 3339 time like \"2026-12-07T10:15:00Z\"".into()
                    }
                    None if obj.get("count").is_some() => {
                        "count must be an integer from 1 to 1000000".into()
                    }
                    None => e.to_string(),
                },
            };
            return format!("element {i}: {why}");
        }
    }
    format!("body is not a valid batch: {err}")
}
