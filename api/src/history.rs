//! `GET /v1/topk/history?window=&at=&k=`: the latest ranking snapshot at or before a time, from Postgres.

use crate::rankings::{record_ranking, RankingQuery};
use crate::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use topk_core::domain::RankedVideo;
use topk_core::http::{ApiError, ErrorBody, Json, Query};
use utoipa::{IntoParams, ToSchema};

/// `GET /v1/topk/history`.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/topk/history", get(history))
}

/// `at` of a history query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AtQuery {
    /// RFC 3339 time, e.g. `2026-11-27T12:00:00Z` (default: now).
    #[param(value_type = String, required = false, format = DateTime)]
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

/// Parses `at` (RFC 3339, default `now`).
pub fn parse_at(raw: Option<&str>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    match raw {
        None => Ok(now),
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::bad_request("at must be an RFC 3339 time, e.g. 2026-11-27T12:00:00Z")
            }),
    }
}

/// The ranking of a window as the latest snapshot at or before `at` recorded it.
#[utoipa::path(get, path = "/v1/topk/history", tag = "history", params(RankingQuery, AtQuery), responses(
    (status = 200, description = "the snapshot", body = HistoricRanking),
    (status = 400, description = "bad window, k or at", body = ErrorBody),
    (status = 404, description = "no snapshot at or before at", body = ErrorBody),
    (status = 503, description = "Postgres is unavailable", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(window, k, at))]
pub async fn history(
    State(state): State<AppState>,
    Query(query): Query<RankingQuery>,
    Query(at): Query<AtQuery>,
) -> Result<Json<HistoricRanking>, ApiError> {
    let (window, k) = query.parse()?;
    record_ranking(window, k);
    let at = parse_at(at.at.as_deref(), Utc::now())?;
    tracing::Span::current().record("at", tracing::field::display(at));
    let found = topk_core::db::topk_history(&state.db, window, at, k.get()).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn at_is_rfc3339_or_now() {
        let now = Utc::now();
        assert_eq!(parse_at(None, now).unwrap(), now);
        let at = parse_at(Some("2026-11-27T12:00:00+01:00"), now).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-27T11:00:00+00:00");
        for bad in [
            "",
            "now",
            "2026-11-27",
            "2026-11-27T12:00:00",
            "99999-01-01T00:00:00Z",
        ] {
            assert!(parse_at(Some(bad), now).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Arbitrary text never panics the parser: a time or a 400.
        #[test]
        fn at_never_panics(raw in "\\PC{0,40}") {
            if let Err(e) = parse_at(Some(&raw), Utc::now()) {
                prop_assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
            }
        }

        /// Every time in the RFC 3339 range (years 0 to 9999, any offset) is read back exactly; Postgres holds
        /// all of them, so a well-formed `at` never turns into a database error.
        #[test]
        fn well_formed_times_round_trip(secs in -62_167_219_200i64..253_402_300_799, offset_min in -1439i32..1440) {
            let at = DateTime::from_timestamp(secs, 0).unwrap();
            let offset = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
            let text = at.with_timezone(&offset).to_rfc3339();
            if let Ok(parsed) = parse_at(Some(&text), Utc::now()) {
                prop_assert_eq!(parsed, at);
            }
        }
    }
}
