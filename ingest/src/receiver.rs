//! The receiver: `POST /v1/views` validates a whole batch, then appends it to the log (one script on one
//! node; on Redis Cluster one per primary, made whole by the batch's `Idempotency-Key`). It answers 202
//! only once Redis holds the entries (and, with `TOPK_REDIS_WAIT_REPLICAS`, its replicas).

use crate::{admission, AppState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use topk_core::domain::{IdempotencyKey, ParseError};
use topk_core::http::{ApiError, ErrorBody, Json};
use topk_core::redis::{AppendOutcome, StoreError};
use topk_core::wire::{parse_dated_batch, DatedBatch, EventTimeRule};
use utoipa::ToSchema;

/// The receiver's route, `POST /v1/views`, behind [`admission::admit`] (a route layer, so it guards this route alone).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new().route(
        "/v1/views",
        post(post_views).route_layer(from_fn_with_state(state.clone(), admission::admit)),
    )
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
    request_body(content = Vec<topk_core::wire::ViewIn>, description = "1 to TOPK_MAX_BATCH_LEN (default 10000) \
        views; each may say when it happened (`at`), or it happened when stored",
        examples(
            ("now" = (value = json!([{"videoId": "abc"}, {"videoId": "xyz", "count": 3}]))),
            ("dated" = (summary = "views that happened earlier, counted where their time falls",
                value = json!([{"videoId": "abc", "count": 2, "at": "2026-12-07T10:15:00Z"},
                    {"videoId": "xyz", "at": "2026-12-07T11:15:30.250+01:00"}]))))),
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 128 printable ASCII characters naming this batch: sent again with the same key \
            (after a 503, a timeout or a lost answer), the batch is answered 202 and stored once")),
    responses(
        (status = 202, description = "every view is in the log", body = Accepted),
        (status = 400, description = "the batch is malformed, or an `at` does not parse, is before 1970 or more \
            than TOPK_EVENT_TIME_MAX_SKEW_SECS in the future; the error names the element; nothing was stored",
            body = ErrorBody),
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
#[tracing::instrument(skip_all, fields(views))]
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
pub(crate) fn count_rejected(reason: &'static str) {
    metrics::counter!("topk_ingest_batches_rejected_total", "reason" => reason).increment(1);
}

async fn receive(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Received, Rejected> {
    // The token, the media type and the backlog were checked by [`admission::admit`], before the body was read.
    let Batch { views, key } = read_batch(state, headers, body)?;
    let accepted = views.views();
    tracing::Span::current().record("views", accepted);
    // With the batches that arrive with it: one log entry per partition for the group (`group_commit.rs`).
    let stored = match state.appender.append(views, key).await {
        Ok(AppendOutcome::AlreadyStored) => {
            tracing::debug!(
                views = accepted,
                "batch sent again under its Idempotency-Key: not stored twice"
            );
            Ok(true)
        }
        Ok(AppendOutcome::Stored) => Ok(false),
        Err(e) => Err(e),
    };
    let replayed =
        stored.map_err(|e| store_rejection(e, state.config.idempotency_retention_secs))?;
    Ok(Received {
        views: accepted,
        replayed,
    })
}

/// A request's batch, parsed.
struct Batch {
    views: DatedBatch,
    key: Option<IdempotencyKey>,
}

/// The request's batch and its `Idempotency-Key`, each refusal a 4xx.
fn read_batch(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Batch, ApiError> {
    // Not the shared `From<BytesRejection>`: none exists, as the answer names this receiver's limit.
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
    let rule = EventTimeRule {
        now_ms: chrono::Utc::now().timestamp_millis(),
        max_skew_ms: state.config.event_time_max_skew_ms(),
    };
    let views = parse_dated_batch(&body, state.config.max_batch_len, rule)?;
    Ok(Batch { views, key })
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
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ParseError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let raw = raw.to_str().map_err(|_| ParseError::IdempotencyKey)?;
    IdempotencyKey::parse(raw).map(Some)
}
