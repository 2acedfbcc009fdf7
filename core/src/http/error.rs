//! The one error type of both services: a status and a JSON body `{"error": "..."}`; internal causes are
//! logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

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
