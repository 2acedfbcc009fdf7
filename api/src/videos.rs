//! `GET /v1/videos/{videoId}`: one video's views in each window, and its rank where it is in the window's top
//! 1000 (a creator's dashboard).

use crate::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use topk_core::domain::VideoId;
use topk_core::http::{ApiError, ErrorBody, Json, Path};
use utoipa::ToSchema;

/// `GET /v1/videos/{videoId}`.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/videos/{video_id}", get(video))
}

/// One video's views per window, and its ranks.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VideoViews {
    pub video_id: String,
    pub minute: u64,
    pub hour: u64,
    pub day: u64,
    pub all: u64,
    /// The video's rank (1-based) in each window's top 1000; null where it is not in it.
    pub rank: Ranks,
}

/// A video's rank per window: null outside the window's top 1000.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Ranks {
    pub minute: Option<u32>,
    pub hour: Option<u32>,
    pub day: Option<u32>,
    pub all: Option<u32>,
}

/// A video's views in the last minute, hour, day and of all time (0 for a video never seen).
#[utoipa::path(get, path = "/v1/videos/{videoId}", tag = "videos", params(("videoId" = String, Path, description = "the video id: 1 to 64 characters of A-Z a-z 0-9 _ - . :, and not . or ..",
        min_length = 1, max_length = 64, pattern = r"^(?:[A-Za-z0-9_:-]|\.[A-Za-z0-9_:-]|\.\.[A-Za-z0-9_.:-])[A-Za-z0-9_.:-]*$")),
    responses(
        (status = 200, description = "views and rank per window", body = VideoViews),
        (status = 400, description = "invalid video id", body = ErrorBody),
        (status = 503, description = "Redis is unavailable", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(video))]
pub async fn video(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<VideoViews>, ApiError> {
    // A 400 names the allowed alphabet.
    let video = VideoId::parse(&raw)?;
    tracing::Span::current().record("video", video.as_str());
    let counts = state.reads.video_counts(&video).await?;
    let get = |w| counts.iter().find(|(x, _)| *x == w).map_or(0, |(_, n)| *n);
    use topk_core::domain::Window::*;
    // From the shared top 1000 of each window: no extra Redis read while the cache is fresh.
    let (rankings, store, id) = (&state.rankings, &state.reads, video.as_str());
    let rank = |w| async move {
        let rank = rankings.rank_of(store, w, id).await?;
        Ok::<_, ApiError>(rank.map(|r| r as u32))
    };
    let (minute, hour, day, all) =
        futures::try_join!(rank(Minute), rank(Hour), rank(Day), rank(All))?;
    Ok(Json(VideoViews {
        minute: get(Minute),
        hour: get(Hour),
        day: get(Day),
        all: get(All),
        rank: Ranks {
            minute,
            hour,
            day,
            all,
        },
        video_id: video.into_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text is a valid id or a 400; a valid one is 1 to 64 characters of the alphabet, not `.` or
        /// `..`, and kept as is.
        #[test]
        fn video_ids_accepted_exactly_when_valid(raw in "\\PC{0,70}|[A-Za-z0-9_.:-]{0,70}|[.a]{0,3}") {
            let valid = (1..=64).contains(&raw.len())
                && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
                && raw != "." && raw != "..";
            match VideoId::parse(&raw).map_err(ApiError::from) {
                Ok(id) => { prop_assert!(valid); prop_assert_eq!(id.as_str(), raw.as_str()); }
                Err(e) => { prop_assert!(!valid); prop_assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST); }
            }
        }
    }
}
