//! The one error type of both services: a status and a JSON body `{"error": "..."}`; internal causes are
//! logged, never sent. [`with_json_errors`] gives the same shape to the error answers the services do not
//! write themselves. The errors of core a handler meets convert with `?`, each the one way it is answered: a
//! value refused at the edge ([`ParseError`], [`WireError`]) is a 400 with its message, a failed read of Redis
//! ([`StoreError`]) or of history ([`HistoryError`]) a 503 with the cause logged.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::HistoryError;
use crate::domain::ParseError;
use crate::redis::StoreError;
use crate::wire::WireError;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// What was wrong, for a person to read.
    #[schema(
        example = "element 2: videoId must be 1 to 64 characters of A-Z a-z 0-9 _ - . :, and not . or .."
    )]
    pub error: String,
    /// On a 503 for a batch that may be partly stored (Redis Cluster): the key to send it again with, which
    /// stores exactly what is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// An error answer: a status and a message. Internal causes are logged, never sent.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds sent in `Retry-After`, for answers that say "come back later".
    retry_after: Option<u32>,
    /// The `Idempotency-Key` to send a batch again with (a batch partly stored on Redis Cluster).
    idempotency_key: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            idempotency_key: None,
        }
    }

    /// The same answer with another message, sending `key` back in `Idempotency-Key` and in the body, for a
    /// producer to retry with.
    pub fn with_idempotency_key(mut self, key: &str, message: String) -> Self {
        self.message = message;
        self.idempotency_key = Some(key.to_owned());
        self
    }

    /// 503 with `Retry-After`: the service is healthy but will not take more work right now.
    pub fn busy(message: impl Into<String>, retry_after_secs: u32) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A dependency (Redis, Postgres) failed: logged with its cause, answered 503 without it.
    pub fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "{what} unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} is unavailable, try again shortly"),
        )
    }

    /// An answer someone else wrote (an axum extractor's rejection, a library's route) in this shape: its
    /// text for a 4xx, cut short (it may echo the client's input); for a 5xx the status's reason, the text
    /// logged, never sent.
    pub(crate) fn foreign(status: StatusCode, text: &str) -> Self {
        let reason = status.canonical_reason().unwrap_or("error");
        let message = if status.is_server_error() {
            tracing::warn!(%status, error = %text, "internal error");
            reason.to_owned()
        } else if text.is_empty() {
            reason.to_owned()
        } else {
            text.chars().take(FOREIGN_ERROR_CHARS).collect()
        };
        Self::new(status, message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message sent to the client (the Kafka source records it with a dead letter).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
                idempotency_key: self.idempotency_key.clone(),
            }),
        )
            .into_response();
        if let Some(key) = self
            .idempotency_key
            .and_then(|k| HeaderValue::from_str(&k).ok())
        {
            response.headers_mut().insert("idempotency-key", key);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names the scheme the server wants.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<ParseError> for ApiError {
    /// A value from outside refused: its message names what is allowed.
    fn from(e: ParseError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<WireError> for ApiError {
    /// A batch refused: its message names the first bad element.
    fn from(e: WireError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    /// A read of Redis failed. (The receiver answers its appends' errors itself: a reused key is a 422, and a
    /// batch that may be stored in part is answered with the key that completes it.)
    fn from(e: StoreError) -> Self {
        Self::unavailable("Redis", &e)
    }
}

impl From<HistoryError> for ApiError {
    /// A read of history failed (Postgres down, unreachable, or the statement failed).
    fn from(e: HistoryError) -> Self {
        Self::unavailable("history (Postgres)", &e)
    }
}

/// Most bytes of a foreign error answer read to make it JSON (they are a line of text).
const FOREIGN_ERROR_BYTES: usize = 4096;
/// Most characters of a foreign error's text kept in the JSON one.
const FOREIGN_ERROR_CHARS: usize = 200;

/// Makes every error answer of `app` JSON: one that is not yet (a rejection of an axum extractor, such as a
/// path that is not valid percent-encoded UTF-8, or an answer of a library's route, such as Swagger UI's
/// empty 404) becomes `{"error": ...}` with the same status and headers: its text for a 4xx (cut short), the
/// status's reason for a 5xx (whose text is logged, never sent).
pub fn with_json_errors<S>(app: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    app.layer(axum::middleware::map_response(json_error))
}

async fn json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, FOREIGN_ERROR_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut json = ApiError::foreign(status, &text).into_response();
    json.headers_mut().extend(parts.headers);
    json
}
