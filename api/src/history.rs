//! `GET /v1/topk/history?window=&at=&k=`: the latest ranking snapshot at or before a time, from Postgres.

use crate::rankings::{parse_query, RankingQuery};
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use topk_core::domain::RankedVideo;
use topk_core::http::{ApiError, ErrorBody};
use utoipa::{IntoParams, ToSchema};

/// `at` of a history query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AtQuery {
    /// RFC 3339 time, e.g. `2026-11-27T12:00:00Z` (default: now).
    pub at: Option<String>,
}

/// A past ranking.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoricRanking {
    pub window: topk_core::domain::Window,
    /// When the snapshot was taken (the latest at or before `at`).
    pub snapshot_time: DateTime<Utc>,
    pub videos: Vec<RankedVideo>,
}

/// The ranking of a window as the latest snapshot at or before `at` recorded it.
#[utoipa::path(get, path = "/v1/topk/history", params(RankingQuery, AtQuery), responses(
    (status = 200, description = "the snapshot", body = HistoricRanking),
    (status = 400, description = "bad window, k or at", body = ErrorBody),
    (status = 404, description = "no snapshot at or before at", body = ErrorBody),
    (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    query: Result<Query<RankingQuery>, QueryRejection>,
    at: Result<Query<AtQuery>, QueryRejection>,
) -> Result<Json<HistoricRanking>, ApiError> {
    let (window, k) = parse_query(query)?;
    let Query(at) = at.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let at = match at.at.as_deref() {
        None => Utc::now(),
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map_err(|_| {
                ApiError::bad_request("at must be an RFC 3339 time, e.g. 2026-11-27T12:00:00Z")
            })?
            .with_timezone(&Utc),
    };
    let found = topk_core::db::topk_history(&state.db, window, at, k.get())
        .await
        .map_err(|e| ApiError::unavailable("history (Postgres)", &e))?;
    let (snapshot_time, videos) = found.ok_or_else(|| {
        ApiError::not_found(format!(
            "no snapshot of the {window} window at or before {at}"
        ))
    })?;
    Ok(Json(HistoricRanking {
        window,
        snapshot_time,
        videos,
    }))
}
