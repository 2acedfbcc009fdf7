//! The receiver: `POST /v1/views` validates a whole batch, then appends it to the log in one transaction.
//! It answers 202 only once Redis holds the entries.

use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use topk_core::domain::{VideoId, ViewCount};
use topk_core::http::{constant_time_eq, ApiError, ErrorBody};
use utoipa::ToSchema;

/// One element of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ViewIn {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ - . :`.
    #[schema(example = "dQw4w9WgXcQ")]
    pub video_id: String,
    /// How many views this element stands for, 1 to 1,000,000 (default 1).
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub count: Option<u64>,
}

/// The answer to an accepted batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// Views accepted (the sum of the counts).
    pub accepted: u64,
}

/// Accepts a batch of views, whole or not at all.
#[utoipa::path(
    post,
    path = "/v1/views",
    request_body = Vec<ViewIn>,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "every view is in the log", body = Accepted),
        (status = 400, description = "the batch is malformed; nothing was stored", body = ErrorBody),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 415, description = "body is not JSON", body = ErrorBody),
        (status = 503, description = "the views could not be stored; nothing was accepted", body = ErrorBody),
    )
)]
pub async fn post_views(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    authorize(&state, &headers)?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ));
        }
    }
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                format!("body is larger than {} bytes", state.config.max_body_bytes),
            )
        } else {
            ApiError::new(status, format!("could not read the body: {rejection}"))
        }
    })?;
    let views = parse_batch(&body, state.config.max_batch_len)?;
    let accepted = views.iter().map(|(_, n)| n).sum();
    state
        .store
        .append(&views)
        .await
        .map_err(|e| ApiError::unavailable("the view log (Redis)", &e))?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { accepted })))
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.config.token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

/// Parses and validates a whole batch; the error names the first bad element (counting from 0).
pub fn parse_batch(body: &[u8], max_len: usize) -> Result<Vec<(VideoId, u64)>, ApiError> {
    let raw: Vec<ViewIn> = match serde_json::from_slice(body) {
        Ok(raw) => raw,
        Err(e) => return Err(ApiError::bad_request(explain_json_error(body, e))),
    };
    if raw.is_empty() {
        return Err(ApiError::bad_request(
            "the batch is empty: send at least one view",
        ));
    }
    if raw.len() > max_len {
        return Err(ApiError::bad_request(format!(
            "the batch has {} elements, at most {max_len} are accepted",
            raw.len()
        )));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let video = VideoId::parse(&v.video_id)
                .map_err(|e| ApiError::bad_request(format!("element {i}: {e}")))?;
            let count = ViewCount::parse(v.count.unwrap_or(1))
                .map_err(|e| ApiError::bad_request(format!("element {i}: {e}")))?;
            Ok((video, count.get()))
        })
        .collect()
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
                    Some(k) => format!("unknown field {k:?}: only videoId and count are allowed"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(body: &str) -> String {
        match parse_batch(body.as_bytes(), 3) {
            Err(e) => format!("{e:?}"),
            Ok(v) => panic!("accepted {v:?}"),
        }
    }

    #[test]
    fn names_the_first_bad_element() {
        assert!(err(r#"[{"videoId":"a"},{"videoId":"b c"}]"#).contains("element 1: videoId"));
        assert!(err(r#"[{"videoId":"a","count":0}]"#).contains("element 0: count"));
        assert!(err(r#"[{"videoId":"a","count":1.5}]"#).contains("element 0: count"));
        assert!(err(r#"[{"videoId":"a","count":"2"}]"#).contains("element 0: count"));
        assert!(err(r#"[{"videoId":"a","count":-1}]"#).contains("element 0: count"));
        assert!(err(r#"[{"videoId":"a","extra":1}]"#).contains("unknown field"));
        assert!(err(r#"[{"count":1}]"#).contains("videoId is required"));
        assert!(err(r#"[{"videoId":7}]"#).contains("videoId is required"));
        assert!(err(r#"[1]"#).contains("must be an object"));
        assert!(err(r#"{"videoId":"a"}"#).contains("JSON array"));
        assert!(err(r#"[{"videoId":"a"}"#).contains("not valid JSON"));
        assert!(err("[]").contains("empty"));
        assert!(
            err(r#"[{"videoId":"a"},{"videoId":"a"},{"videoId":"a"},{"videoId":"a"}]"#)
                .contains("at most 3")
        );
    }

    #[test]
    fn accepts_defaults_and_counts() {
        let v = parse_batch(br#"[{"videoId":"a"},{"videoId":"b","count":1000000}]"#, 10).unwrap();
        assert_eq!(v.iter().map(|(_, n)| n).sum::<u64>(), 1_000_001);
    }

    proptest! {
        /// Arbitrary bytes never panic the decoder: they are accepted or refused with a message.
        #[test]
        fn decoder_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_batch(&body, 100);
        }

        /// Near-valid JSON (random ids and counts) is accepted exactly when every element is valid.
        #[test]
        fn accepts_exactly_valid_batches(items in proptest::collection::vec(("[ -~]{0,70}", 0u64..1_100_000), 1..6)) {
            let body = serde_json::to_vec(&items.iter().map(|(v, n)| serde_json::json!({"videoId": v, "count": n})).collect::<Vec<_>>()).unwrap();
            let valid = items.iter().all(|(v, n)| VideoId::parse(v).is_ok() && ViewCount::parse(*n).is_ok());
            prop_assert_eq!(parse_batch(&body, 100).is_ok(), valid);
        }
    }
}
