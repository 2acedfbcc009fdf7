//! The receiver: `POST /v1/views` validates a whole batch, then appends it to the log in one transaction.
//! It answers 202 only once Redis holds the entries.

use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use topk_core::domain::{VideoId, ViewCount};
use topk_core::http::{ApiError, ErrorBody};
use utoipa::ToSchema;

/// The receiver's route, `POST /v1/views`, behind [`admit`] (a route layer, so it guards this route alone).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new().route(
        "/v1/views",
        post(post_views).route_layer(from_fn_with_state(state.clone(), admit)),
    )
}

/// One element of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ViewIn {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ - . :`.
    #[schema(
        example = "dQw4w9WgXcQ",
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9_.:-]+$"
    )]
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
    request_body(content = Vec<ViewIn>, description = "1 to TOPK_MAX_BATCH_LEN (default 10000) views"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "every view is in the log", body = Accepted),
        (status = 400, description = "the batch is malformed; nothing was stored", body = ErrorBody),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 415, description = "body is not JSON", body = ErrorBody),
        (status = 503, description = "the views could not be stored, or the log is over its backlog limit \
            (then with Retry-After); nothing was accepted", body = ErrorBody,
            headers(("Retry-After" = u32, description = "seconds to wait, when the log is backlogged"))),
    )
)]
pub async fn post_views(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    // The token and the backlog were checked by [`admit`], before the body was read.
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

/// Runs before `POST /v1/views` reads its body, so a client without the token, or a batch the log has no room
/// for, costs no body buffering: 401 without the right token, 503 with `Retry-After` while the backlog is over
/// its limit.
pub async fn admit(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    authorize(&state, request.headers())?;
    if let Some(entries) = state.backlog.over_limit() {
        return Err(ApiError::busy(
            format!(
                "the workers are behind: {entries} log entries wait to be applied (limit {}); \
                 nothing was stored, try again shortly",
                state.backlog.limit()
            ),
            crate::backpressure::RETRY_AFTER_SECS,
        ));
    }
    Ok(next.run(request).await)
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(tokens) = &state.tokens else {
        return Ok(());
    };
    if tokens.accepts(headers.get(header::AUTHORIZATION)) {
        Ok(())
    } else {
        // Never log or echo the presented value.
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

        /// Whole or nothing: a batch with one bad element anywhere is refused naming that element; a valid
        /// batch comes back complete, in order, with its counts (default 1).
        #[test]
        fn a_batch_is_taken_whole_or_refused_whole(
            items in proptest::collection::vec(("[A-Za-z0-9_.:-]{1,64}", proptest::option::of(1u64..=1_000_000)), 1..40),
            bad_at in any::<proptest::sample::Index>(),
            bad in prop_oneof![
                Just(serde_json::json!({"videoId": ""})),
                Just(serde_json::json!({"videoId": "a b"})),
                Just(serde_json::json!({"videoId": "a", "count": 0})),
                Just(serde_json::json!({"videoId": "a", "count": 1_000_001})),
                Just(serde_json::json!({"videoId": "a", "count": -1})),
                Just(serde_json::json!({"videoId": "a", "count": null, "x": 1})),
                Just(serde_json::json!({"videoId": "a".repeat(65)})),
                Just(serde_json::json!(["a"])),
                Just(serde_json::json!(null)),
            ],
            with_bad in any::<bool>(),
        ) {
            let mut elements: Vec<serde_json::Value> = items.iter().map(|(v, n)| match n {
                Some(n) => serde_json::json!({"videoId": v, "count": n}),
                None => serde_json::json!({"videoId": v}),
            }).collect();
            let bad_index = bad_at.index(elements.len() + 1);
            if with_bad {
                elements.insert(bad_index, bad);
            }
            let body = serde_json::to_vec(&elements).unwrap();
            match parse_batch(&body, 100) {
                Ok(views) => {
                    prop_assert!(!with_bad);
                    let want: Vec<(String, u64)> = items.iter().map(|(v, n)| (v.clone(), n.unwrap_or(1))).collect();
                    let got: Vec<(String, u64)> = views.into_iter().map(|(v, n)| (v.into_string(), n)).collect();
                    prop_assert_eq!(got, want);
                }
                Err(e) => {
                    prop_assert!(with_bad, "{:?}", e);
                    prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
                    let msg = format!("{e:?}");
                    let element = format!("element {bad_index}:");
                    prop_assert!(msg.contains(&element), "{}", msg);
                }
            }
        }

        /// Arbitrary JSON documents (nested arrays, objects, numbers, strings) never panic the decoder and are
        /// refused with a 400 unless they are a valid batch.
        #[test]
        fn arbitrary_json_never_panics(doc in json_value()) {
            let body = serde_json::to_vec(&doc).unwrap();
            if let Err(e) = parse_batch(&body, 100) {
                prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            }
        }

        /// The length limit counts elements exactly.
        #[test]
        fn the_length_limit_is_exact(len in 1usize..30, max in 1usize..30) {
            let body = serde_json::to_vec(&vec![serde_json::json!({"videoId": "a"}); len]).unwrap();
            prop_assert_eq!(parse_batch(&body, max).is_ok(), len <= max);
        }
    }

    /// Any JSON value, a few levels deep, biased toward things that look like views.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::String),
            "[a-z]{1,3}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("videoId".to_owned()),
                        Just("count".to_owned()),
                        "[a-zA-Z]{0,8}"
                    ],
                    inner,
                    0..4,
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
