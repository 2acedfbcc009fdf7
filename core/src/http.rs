//! HTTP pieces both services share: the one JSON error type and the health answer.

use crate::redis::RedisStore;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use axum::Router;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong, for a person to read.
    #[schema(example = "element 2: videoId must be 1 to 64 characters of A-Z a-z 0-9 _ - . :")]
    pub error: String,
}

/// An error answer: a status and a message. Internal causes are logged, never sent.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "the process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: Redis answers, so the service can do its work.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Redis is reachable", body = Health),
    (status = 503, description = "Redis is not reachable", body = ErrorBody)))]
pub async fn readyz(State(store): State<RedisStore>) -> Result<Json<Health>, ApiError> {
    store
        .ping()
        .await
        .map_err(|e| ApiError::unavailable("Redis", &e))?;
    Ok(Json(Health { status: "ok" }))
}

/// The routes every service has: `/healthz`, `/readyz` and a JSON 404 for anything else.
pub fn health_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    RedisStore: FromRef<S>,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
}

/// Answer for unknown routes, in the same JSON shape as every other error.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Compares a presented token with the expected one in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret2"));
        assert!(!super::constant_time_eq(b"", b"x"));
    }
}
