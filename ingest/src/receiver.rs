//! The receiver: `POST /v1/views` validates a whole batch, then appends it to the log (one script on one
//! node; on Redis Cluster one per partition, made whole by the batch's `Idempotency-Key`). It answers 202
//! only once Redis holds the entries (and, with `TOPK_REDIS_WAIT_REPLICAS`, its replicas).

use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use topk_core::domain::{IdempotencyKey, ParseError, VideoId, ViewCount};
use topk_core::http::{ApiError, ErrorBody};
use topk_core::redis::{AppendOutcome, StoreError};
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
    tag = "views",
    request_body(content = Vec<ViewIn>, description = "1 to TOPK_MAX_BATCH_LEN (default 10000) views"),
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 128 printable ASCII characters naming this batch: sent again with the same key \
            (after a 503, a timeout or a lost answer), the batch is answered 202 and stored once")),
    responses(
        (status = 202, description = "every view is in the log", body = Accepted),
        (status = 400, description = "the batch is malformed; nothing was stored", body = ErrorBody),
        (status = 401, description = "missing or wrong token", body = ErrorBody),
        (status = 413, description = "body over the size limit (TOPK_MAX_BODY_BYTES); a declared Content-Length \
            over it is refused before the body is read", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json, or the body has a Content-Encoding \
            (compressed bodies are not taken); nothing was stored", body = ErrorBody,
            headers(("Accept-Encoding" = String, description = "identity: the only content coding taken"))),
        (status = 422, description = "the Idempotency-Key was used for a different batch within its retention; \
            nothing was stored", body = ErrorBody),
        (status = 503, description = "the views could not be stored (or not confirmed on \
            TOPK_REDIS_WAIT_REPLICAS replicas), or the log is over its backlog limit (then with Retry-After). On \
            Redis Cluster part of the batch may be stored: the answer then carries the Idempotency-Key (header \
            and body) to send it again with, which stores exactly what is missing", body = ErrorBody,
            headers(("Retry-After" = u32, description = "seconds to wait, when the log is backlogged"),
                ("Idempotency-Key" = String, description = "the key to send a partly stored batch again with"))),
    )
)]
pub async fn post_views(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    match receive(&state, &headers, body).await {
        Ok(received) => {
            metrics::counter!("topk_ingest_batches_accepted_total").increment(1);
            metrics::counter!("topk_ingest_views_accepted_total").increment(received.views);
            if received.replayed {
                metrics::counter!("topk_ingest_idempotent_replays_total").increment(1);
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(Accepted {
                    accepted: received.views,
                }),
            ))
        }
        Err(Rejected { reason, error }) => {
            count_rejected(reason);
            Err(error)
        }
    }
}

/// A batch answered 202.
struct Received {
    views: u64,
    /// Already stored under its Idempotency-Key: answered from the record, not stored again.
    replayed: bool,
}

/// A batch refused: the answer, and the `reason` label it is counted under
/// ([`topk_core::metrics::REJECT_REASONS`]).
struct Rejected {
    reason: &'static str,
    error: ApiError,
}

impl From<ApiError> for Rejected {
    /// Errors of the request itself (body, header, batch) are the client's: "invalid" (or "too_large").
    fn from(error: ApiError) -> Self {
        let reason = if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "invalid"
        };
        Self { reason, error }
    }
}

/// Counts a refused batch in `topk_ingest_batches_rejected_total{reason}`.
fn count_rejected(reason: &'static str) {
    metrics::counter!("topk_ingest_batches_rejected_total", "reason" => reason).increment(1);
}

async fn receive(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Received, Rejected> {
    // The token, the media type and the backlog were checked by [`admit`], before the body was read.
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
    let key = idempotency_key(headers)?;
    let views = parse_batch(&body, state.config.max_batch_len)?;
    let accepted = views.iter().map(|(_, n)| n).sum();
    let stored = match &key {
        None => state.store.append(&views).await.map(|()| false),
        Some(key) => {
            let retention = Duration::from_secs(state.config.idempotency_retention_secs);
            match state.store.append_idempotent(&views, key, retention).await {
                Ok(AppendOutcome::AlreadyStored) => {
                    tracing::debug!(
                        views = accepted,
                        "batch sent again under its Idempotency-Key: not stored twice"
                    );
                    Ok(true)
                }
                Ok(AppendOutcome::Stored) => Ok(false),
                Err(e) => Err(e),
            }
        }
    };
    let replayed =
        stored.map_err(|e| store_rejection(e, state.config.idempotency_retention_secs))?;
    Ok(Received {
        views: accepted,
        replayed,
    })
}

/// The answer to a batch the store did not take, and its reason label. A batch that may be stored (in part
/// on a cluster, or whole but unconfirmed where replicas are awaited) is answered with the key that completes
/// it and how long that key is remembered.
fn store_rejection(e: StoreError, retention_secs: u64) -> Rejected {
    let reason = match &e {
        StoreError::KeyReused => "idempotency_conflict",
        StoreError::NotReplicated { .. } => "not_replicated",
        StoreError::Incomplete { cause, .. }
            if matches!(**cause, StoreError::NotReplicated { .. }) =>
        {
            "not_replicated"
        }
        _ => "unavailable",
    };
    let error = match e {
        StoreError::KeyReused => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this Idempotency-Key was used for a different batch within its retention; nothing was stored \
             (send a new batch under a new key)",
        ),
        StoreError::Incomplete { key, cause } => {
            let what = match *cause {
                StoreError::NotReplicated { .. } => {
                    "the batch may be stored but fewer replicas than TOPK_REDIS_WAIT_REPLICAS confirmed it in \
                     time (a failover now could lose it)"
                }
                _ => "the view log (Redis) is unavailable: part of the batch may be stored",
            };
            let message = format!(
                "{what}; send it again within {retention_secs} s with the header Idempotency-Key: {}: \
                 what is stored is not stored twice",
                key.as_str()
            );
            ApiError::unavailable("the view log (Redis)", &cause)
                .with_idempotency_key(key.as_str(), message)
        }
        e => ApiError::unavailable("the view log (Redis)", &e),
    };
    Rejected { reason, error }
}

/// The optional `Idempotency-Key` header, parsed (400 when it is there but not a valid key).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let parsed = raw
        .to_str()
        .map_err(|_| ParseError::IdempotencyKey)
        .and_then(IdempotencyKey::parse);
    parsed
        .map(Some)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Runs before `POST /v1/views` reads its body, so a client without the token, a body declared too large or
/// not plain JSON, or a batch the log has no room for, costs no body buffering: 401 without the right token,
/// 413 for a `Content-Length` over the limit, 415 for another media type or a content coding, 503 with
/// `Retry-After` while the backlog is over its limit.
pub async fn admit(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Err(refused) = authorize(&state, request.headers()) {
        count_rejected("unauthorized");
        return Err(refused);
    }
    if let Some(declared) = declared_over(request.headers(), state.config.max_body_bytes) {
        count_rejected("too_large");
        let mut response = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is declared as {declared} bytes; at most {} are accepted",
                state.config.max_body_bytes
            ),
        )
        .into_response();
        // The body is left unread (and no `100 Continue` sent): the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }
    if let Err(refused) = plain_json(request.headers()) {
        count_rejected("invalid");
        let mut response = refused.into_response();
        // RFC 9110 15.5.16: a 415 names the content codings that would have been taken.
        response.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        return Ok(response);
    }
    if let Some(entries) = state.backlog.over_limit() {
        count_rejected("backlog");
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

/// The `Content-Length` of a request whose declared body is over `limit`. A body without one (chunked) is cut
/// at the limit as it is read instead.
fn declared_over(headers: &HeaderMap, limit: usize) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .filter(|declared| *declared > limit as u64)
}

/// 415 unless the body is declared as JSON (`application/json`, any case, parameters allowed) without a
/// content coding. A missing `Content-Type` is refused too: it is what a page on another origin can send
/// without a CORS preflight (as is `text/plain`), and an open ingest must not be writable by any web page.
/// Compressed bodies are refused rather than decoded: batches are small, and a decoder would have to bound
/// the decoded size as well; refusing is better than reading the compressed bytes as JSON.
fn plain_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim());
    if !media_type.is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (a JSON array of views)",
        ));
    }
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a Content-Encoding (gzip, deflate, ...) is not supported: send the JSON uncompressed",
        ));
    }
    Ok(())
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(tokens) = &state.tokens else {
        return Ok(());
    };
    if tokens.accepts(headers.get(header::AUTHORIZATION)) {
        Ok(())
    } else {
        // Never log or echo the presented value, nor a part of it: only which known scheme it names, since a
        // client that sends the bare token (no scheme) would otherwise have its first word logged. One line
        // per interval at most, counting the refusals since the last.
        if let Some(refused) = state.refusals.record(std::time::Instant::now()) {
            tracing::warn!(
                refused,
                authorization_scheme = presented_scheme(headers.get(header::AUTHORIZATION)),
                "writes refused: missing or wrong bearer token ({refused} since the last such line; at most \
                 one line per {} s)",
                state.refusals.interval().as_secs()
            );
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

/// The scheme of an `Authorization` value, when it is one of the usual words followed by a space; never any
/// other part of the value.
fn presented_scheme(value: Option<&axum::http::HeaderValue>) -> &'static str {
    let Some(value) = value else {
        return "(none)";
    };
    let scheme = value
        .as_bytes()
        .split(|b| *b == b' ')
        .next()
        .unwrap_or_default();
    let has_credentials = value.as_bytes().len() > scheme.len();
    ["Bearer", "Basic", "Digest", "Negotiate", "Token", "ApiKey"]
        .into_iter()
        .find(|known| has_credentials && scheme.eq_ignore_ascii_case(known.as_bytes()))
        .unwrap_or("(other)")
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

/// At most this many characters of a client's own text are echoed in an error: a field name can be as long
/// as the body.
const ECHOED_CHARS: usize = 40;

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
