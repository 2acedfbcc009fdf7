//! The routes every service has: `/healthz`, `/readyz`, and a JSON 404 for anything else.

use super::{ApiError, ErrorBody};
use crate::redis::RedisStore;
use crate::supervise::Liveness;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Json;
use axum::Router;
use serde::Serialize;
use utoipa::ToSchema;

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

/// `GET /readyz`: every background loop of the process runs and Redis answers, so the service can do its work.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Redis is reachable", body = Health),
    (status = 503, description = "Redis is not reachable, or a background loop of the process died (it is \
        stopping)", body = ErrorBody)))]
pub async fn readyz(
    State(store): State<RedisStore>,
    State(liveness): State<Liveness>,
) -> Result<Json<Health>, ApiError> {
    if liveness.failed() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "a background task of this process has died; the process is stopping",
        ));
    }
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
    Liveness: FromRef<S>,
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
