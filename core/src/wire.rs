//! The view wire format: a batch is a JSON array of elements like `{"videoId": "abc", "count": 3}`, the body
//! of `POST /v1/views` and the value of a Kafka record alike. Parsed here, once, into `(VideoId, count)`
//! pairs, with an error that names the first bad element; each edge turns that error into its own answer
//! (a 400, a dead letter).

use crate::domain::{VideoId, ViewCount};
use serde::Deserialize;
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
}

/// Parses and validates a whole batch; the error names the first bad element (counting from 0).
pub fn parse_batch(body: &[u8], max_len: usize) -> Result<Vec<(VideoId, u64)>, WireError> {
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
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let video =
                VideoId::parse(&v.video_id).map_err(|e| WireError(format!("element {i}: {e}")))?;
            let count = ViewCount::parse(v.count.unwrap_or(1))
                .map_err(|e| WireError(format!("element {i}: {e}")))?;
            Ok((video, count.get()))
        })
        .collect()
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
                Some(obj) => match obj.keys().find(|k| *k != "videoId" && *k != "count") {
                    Some(k) => format!(
                        "unknown field {}: only videoId and count are allowed",
                        cut_short(k)
                    ),
                    None if !obj.get("videoId").is_some_and(|v| v.is_string()) => {
                        "videoId is required and must be a string".into()
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
