//! Rankings: `GET /view/video` (the route the product was specified with) and `GET /v1/topk`.
//! Each partition keeps its window up to date; a query reads each partition's top K and merges them.

use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use topk_core::domain::{RankedVideo, TopK, Window};
use topk_core::http::{ApiError, ErrorBody};
use utoipa::IntoParams;

/// Query of a ranking; parsed by hand so every refusal names the allowed values.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RankingQuery {
    /// `minute`, `hour`, `day` or `all`.
    #[param(example = "hour")]
    pub window: Option<String>,
    /// How many videos, 1 to 1000 (default 10).
    #[param(example = 10)]
    pub k: Option<String>,
}

/// Parses `window` (required) and `k` (default 10) of a query.
pub fn parse_query(
    query: Result<Query<RankingQuery>, QueryRejection>,
) -> Result<(Window, TopK), ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    let window = q
        .window
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("window is required: one of minute, hour, day, all"))
        .and_then(|w| Window::parse(w).map_err(|e| ApiError::bad_request(e.to_string())))?;
    let k = match q.k.as_deref() {
        None => TopK::DEFAULT,
        Some(k) => TopK::parse(k).map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    Ok((window, k))
}

/// The K most viewed videos of a window, views descending, ties by videoId descending.
#[utoipa::path(get, path = "/v1/topk", params(RankingQuery), responses(
    (status = 200, description = "the ranking", body = Vec<RankedVideo>),
    (status = 400, description = "bad window or k", body = ErrorBody),
    (status = 503, description = "Redis is unavailable", body = ErrorBody)))]
pub async fn topk(
    State(state): State<AppState>,
    query: Result<Query<RankingQuery>, QueryRejection>,
) -> Result<Json<Vec<RankedVideo>>, ApiError> {
    let (window, k) = parse_query(query)?;
    let ranking = state
        .rankings
        .top(&state.store, window, k)
        .await
        .map_err(|e| ApiError::unavailable("the rankings (Redis)", &e))?;
    Ok(Json(ranking))
}

/// The same ranking on the route the product was first specified with.
#[utoipa::path(get, path = "/view/video", params(RankingQuery), responses(
    (status = 200, description = "the ranking", body = Vec<RankedVideo>),
    (status = 400, description = "bad window or k", body = ErrorBody),
    (status = 503, description = "Redis is unavailable", body = ErrorBody)))]
pub async fn view_video(
    state: State<AppState>,
    query: Result<Query<RankingQuery>, QueryRejection>,
) -> Result<Json<Vec<RankedVideo>>, ApiError> {
    topk(state, query).await
}
