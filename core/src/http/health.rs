//! The routes every process has: `/healthz`, `/readyz`, `/metrics`, and a JSON 404 for anything else.

use super::readiness::Readiness;
use super::{ApiError, ErrorBody};
use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use axum::Router;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`; from `/readyz`, `degraded` when the process serves its main work but a feature answers 503 until a
    /// dependency is back (the API's history while Postgres is down: listed in `degraded`).
    #[schema(example = "ok", pattern = "^(ok|degraded)$")]
    pub status: &'static str,
    /// What `/readyz` checked, by name ("redis", "postgres", "backlog"), and what it found: `"ok"` (or a
    /// report, for the backlog), or `"unavailable: <what>"` for a dependency whose outage only degrades.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object, example = json!({"redis": "ok", "postgres": "unavailable: Postgres"}))]
    pub checks: BTreeMap<&'static str, serde_json::Value>,
    /// The features that answer 503 meanwhile (`history`: `/v1/topk/history` and `/v1/videos/{videoId}/hourly`);
    /// absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["history"]))]
    pub degraded: Vec<&'static str>,
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        checks: BTreeMap::new(),
        degraded: Vec::new(),
    })
}

/// `GET /readyz`: every background loop of the process runs and what it needs for its work answers (Redis;
/// for the snapshotter, Postgres migrated too). The API needs Redis only: while Postgres is down or not
/// migrated it stays ready, `"status": "degraded"`, and its history routes answer 503.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready: `status` is `ok` when every check passed (listed in `checks`), \
        `degraded` when a dependency only some routes need is down: its check reads `unavailable: ...` and \
        `degraded` lists the features that answer 503 meanwhile (`history`, while Postgres is down)", body = Health,
        example = json!({"status": "degraded", "checks": {"redis": "ok", "postgres": "unavailable: Postgres"},
            "degraded": ["history"]})),
    (status = 503, description = "a dependency the process needs is unreachable (or Postgres not migrated, \
        for the snapshotter), or a background loop of the process died (it is stopping); the body names what \
        failed", body = ErrorBody)))]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn readyz(State(readiness): State<Readiness>) -> Result<Json<Health>, ApiError> {
    match readiness.evaluate().await {
        Ok(report) => Ok(Json(Health {
            status: if report.degraded.is_empty() {
                "ok"
            } else {
                "degraded"
            },
            checks: report.checks,
            degraded: report.degraded,
        })),
        Err(failed) => {
            let names: Vec<&str> = failed.iter().map(|f| f.what.as_str()).collect();
            for f in &failed {
                tracing::warn!(check = %f.what, error = %f.cause, "not ready");
            }
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {} unavailable", names.join(", ")),
            ))
        }
    }
}

/// `GET /metrics`: every metric of this process, in Prometheus's text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}

/// The OpenAPI description of the routes above, which each service merges into its own document
/// (`ApiDoc::openapi().merge_from(HealthApi::openapi())`) instead of listing them again.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(healthz, readyz, metrics),
    tags((name = "health", description = "Liveness, readiness and Prometheus metrics")),
    components(schemas(Health, ErrorBody))
)]
pub struct HealthApi;

/// The routes every process has: `/healthz`, `/readyz`, `/metrics` and a JSON 404 for anything else.
pub fn health_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Readiness: FromRef<S>,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Answer for unknown routes, in the same JSON shape as every other error.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Answer for a known route asked with another method (axum adds the `Allow` header).
pub async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on this route (the Allow header lists what is)"),
    )
}
