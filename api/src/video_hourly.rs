//! `GET /v1/videos/{videoId}/hourly?hours=`: one video's views per hour over the last day (by default), from
//! Postgres history: the leaderboard page's per-video chart.

use crate::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use topk_core::domain::VideoId;
use topk_core::http::{ApiError, ErrorBody, Json, Path, Query};
use utoipa::{IntoParams, ToSchema};

/// Most hours one request may ask for: a week.
pub const MAX_HOURS: u32 = 168;

/// `GET /v1/videos/{videoId}/hourly`.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/videos/{video_id}/hourly", get(hourly))
}

/// `hours` of an hourly query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HoursQuery {
    /// How many hours, ending with the current one, 1 to 168 (default 24).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 168, example = 24)]
    pub hours: Option<String>,
}

/// One hour of a video's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HourViews {
    /// The hour's start (UTC).
    pub hour: DateTime<Utc>,
    pub views: u64,
}

/// A video's views per hour, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoHourly {
    pub video_id: String,
    pub hours: Vec<HourViews>,
}

/// Parses `hours` (default 24); 400 names the range.
pub fn parse_hours(raw: Option<&str>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(24),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|h| (1..=MAX_HOURS).contains(h))
            .ok_or_else(|| {
                ApiError::bad_request(format!("hours must be an integer from 1 to {MAX_HOURS}"))
            }),
    }
}

/// A video's views in each hour of the last `hours` (the current hour last, holding the minutes history has
/// so far: it trails now by a minute or two).
#[utoipa::path(get, path = "/v1/videos/{videoId}/hourly", tag = "videos",
    params(("videoId" = String, Path, description = "the video id: 1 to 64 characters of A-Z a-z 0-9 _ - . :, and not . or ..",
        min_length = 1, max_length = 64, pattern = r"^(?:[A-Za-z0-9_:-]|\.[A-Za-z0-9_:-]|\.\.[A-Za-z0-9_.:-])[A-Za-z0-9_.:-]*$"), HoursQuery),
    responses(
        (status = 200, description = "views per hour, oldest first; 0 for an hour without views", body = VideoHourly),
        (status = 400, description = "invalid video id or hours", body = ErrorBody),
        (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(video, hours))]
pub async fn hourly(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<HoursQuery>,
) -> Result<Json<VideoHourly>, ApiError> {
    let video = VideoId::parse(&raw)?;
    let hours = parse_hours(query.hours.as_deref())?;
    let span = tracing::Span::current();
    span.record("video", video.as_str());
    span.record("hours", hours);
    let rows =
        topk_core::db::video_history::hourly_views(&state.db, video.as_str(), Utc::now(), hours)
            .await?;
    Ok(Json(VideoHourly {
        video_id: video.into_string(),
        hours: rows
            .into_iter()
            .map(|(hour, views)| HourViews { hour, views })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_default_to_a_day_and_stay_within_a_week() {
        assert_eq!(parse_hours(None).unwrap(), 24);
        assert_eq!(parse_hours(Some("1")).unwrap(), 1);
        assert_eq!(parse_hours(Some("168")).unwrap(), 168);
        for bad in ["0", "169", "-1", "ten", "", "1e2"] {
            assert!(parse_hours(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
