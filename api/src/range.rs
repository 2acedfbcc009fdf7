//! `GET /v1/topk/range?from=&to=&k=`: the exact top K of the views whose event time is in a past range, from
//! Postgres history (`db::range`: per-day and per-hour totals read from the top, and the minute rows at the
//! edges).

use crate::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use topk_core::db::range::{top_in_range, MinuteRange, Resolution};
use topk_core::domain::{RankedVideo, TopK};
use topk_core::http::{ApiError, ErrorBody, Query};
use topk_core::slices::MINUTE_MS;
use utoipa::{IntoParams, ToSchema};

/// `GET /v1/topk/range`.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/topk/range", get(range))
}

/// The range and k of a range query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Start of the range, inclusive: an RFC 3339 time (`2026-12-01T10:15:00Z`, any offset) or a date
    /// (`2026-12-01`: midnight UTC), rounded down to the minute.
    #[param(value_type = String, example = "2026-12-01")]
    pub from: Option<String>,
    /// End of the range, exclusive, in the same forms; after `from` once both are rounded down to the minute.
    #[param(value_type = String, example = "2026-12-08")]
    pub to: Option<String>,
    /// How many videos, 1 to 1000 (default 10).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000, example = 10)]
    pub k: Option<String>,
}

/// The most viewed videos of a past range.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "from": "2026-12-01T00:00:00Z",
    "to": "2026-12-08T00:00:00Z",
    "historyThrough": "2026-12-07T10:41:00Z",
    "resolution": "minute",
    "videos": [{"videoId": "dQw4w9WgXcQ", "views": 1523004}, {"videoId": "9bZkp7q19f0", "views": 1200417}]
}))]
pub struct RangeRanking {
    /// Start of the range summed, inclusive: `from` rounded down to the minute, or to the hour or day where
    /// history has been rolled up to that resolution.
    pub from: DateTime<Utc>,
    /// End of the range summed, exclusive: `to` rounded down to the minute, or up to the hour or day where
    /// history has been rolled up.
    pub to: DateTime<Utc>,
    /// The start of the newest minute every partition has written to history (null before the first):
    /// views after its end are not summed yet.
    #[schema(nullable)]
    pub history_through: Option<DateTime<Utc>>,
    /// The resolution history keeps at `from` (the coarsest the range touches): `minute`, or `hour` and `day`
    /// once it has been rolled up (after `TOPK_HOURLY_AFTER_DAYS` and `TOPK_DAILY_AFTER_DAYS`).
    pub resolution: Resolution,
    /// Views descending, ties by videoId descending, as in the rankings.
    pub videos: Vec<RankedVideo>,
}

/// A time of a range: RFC 3339, or a date as midnight UTC; in minutes since the epoch, rounded down.
pub fn parse_moment(name: &str, raw: &str) -> Result<i64, ApiError> {
    let at = if raw.len() == 10 && raw.as_bytes()[4] == b'-' && raw.as_bytes()[7] == b'-' {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
    } else {
        DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    at.map(|t| t.timestamp_millis().div_euclid(MINUTE_MS))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time (2026-12-01T10:15:00Z) or a date (2026-12-01)"
            ))
        })
}

/// Parses a range query: both ends required, `to` after `from` once rounded down to the minute, `k` 1 to 1000
/// (default 10).
pub fn parse_range(Query(q): Query<RangeQuery>) -> Result<(MinuteRange, TopK), ApiError> {
    let moment = |name: &str, raw: Option<&str>| {
        raw.ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} is required: an RFC 3339 time (2026-12-01T10:15:00Z) or a date (2026-12-01)"
            ))
        })
        .and_then(|raw| parse_moment(name, raw))
    };
    let (from, to) = (
        moment("from", q.from.as_deref())?,
        moment("to", q.to.as_deref())?,
    );
    let range = MinuteRange::new(from, to).ok_or_else(|| {
        ApiError::bad_request("the range is empty: to must be at least a minute after from")
    })?;
    let k = match q.k.as_deref() {
        None => TopK::DEFAULT,
        Some(k) => TopK::parse(k).map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    Ok((range, k))
}

/// The exact top K of the views whose event time falls in `[from, to)`, as history holds them (minutes the
/// snapshotter has written, `historyThrough` saying up to where). Where the range reaches into rolled-up
/// history its ends are rounded outwards to the hour or day, and the answer says which range it summed.
#[utoipa::path(get, path = "/v1/topk/range", tag = "history", params(RangeQuery), responses(
    (status = 200, description = "the ranking of the range", body = RangeRanking),
    (status = 400, description = "a missing or malformed from or to, an empty range, or a bad k", body = ErrorBody,
        example = json!({"error": "the range is empty: to must be at least a minute after from"})),
    (status = 503, description = "Postgres is unavailable", body = ErrorBody,
        example = json!({"error": "history (Postgres) is unavailable, try again shortly"}))))]
pub async fn range(
    State(state): State<AppState>,
    query: Query<RangeQuery>,
) -> Result<Json<RangeRanking>, ApiError> {
    let (asked, k) = parse_range(query)?;
    let top = top_in_range(&state.db, asked, k).await?;
    tracing::debug!(method = ?top.method, "range answered");
    Ok(Json(RangeRanking {
        from: topk_core::db::minute_start(top.plan.range.from()),
        to: topk_core::db::minute_start(top.plan.range.to()),
        history_through: top.history_through,
        resolution: top.plan.resolution,
        videos: top.videos,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{StatusCode, Uri};
    use proptest::prelude::*;

    fn parse(query: &str) -> Result<(MinuteRange, TopK), ApiError> {
        let uri: Uri = format!("http://x/v1/topk/range?{query}").parse().unwrap();
        Query::try_from_uri(&uri).and_then(parse_range)
    }

    fn minute(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
            .div_euclid(MINUTE_MS)
    }

    #[test]
    fn dates_and_times_round_down_to_the_minute() {
        let (range, k) = parse("from=2026-12-01&to=2026-12-08").unwrap();
        assert_eq!(range.from(), minute("2026-12-01T00:00:00Z"));
        assert_eq!(range.to(), minute("2026-12-08T00:00:00Z"));
        assert_eq!(k, TopK::DEFAULT);
        let (range, k) =
            parse("from=2026-12-01T10:15:59.999%2B01:00&to=2026-12-01T10:17:00Z&k=1000").unwrap();
        assert_eq!(range.from(), minute("2026-12-01T09:15:00Z"));
        assert_eq!(range.to(), minute("2026-12-01T10:17:00Z"));
        assert_eq!(k.get(), 1000);
    }

    #[test]
    fn bad_ranges_and_ks_are_refused() {
        crate::assert_bad_requests(
            parse,
            &[
                "",
                "from=2026-12-01",
                "to=2026-12-01",
                "from=2026-12-02&to=2026-12-01",
                // Both in the same minute: empty once rounded down.
                "from=2026-12-01T10:15:01Z&to=2026-12-01T10:15:59Z",
                "from=2026-12-01&to=2026-12-01",
                "from=yesterday&to=2026-12-01",
                "from=2026-12-01T10:15:00&to=2026-12-02",
                "from=2026-13-01&to=2026-12-02",
                "from=+2026-12-01&to=2026-12-02",
                "from=2026-12-01&to=2026-12-02&k=0",
                "from=2026-12-01&to=2026-12-02&k=1001",
                "from=2026-12-01&to=2026-12-02&k=ten",
                "from=2026-12-01&from=2026-12-01&to=2026-12-02",
            ],
        );
    }

    proptest! {
        /// Any query string a URI can carry gets a range or a 400, never a panic.
        #[test]
        fn arbitrary_queries_never_panic(query in "[ -~]{0,80}") {
            let Ok(uri) = format!("http://x/v1/topk/range?{query}").parse::<Uri>() else { return Ok(()) };
            if let Err(e) = Query::try_from_uri(&uri).and_then(parse_range) {
                prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            }
        }

        /// Any text as a time is a minute or a 400.
        #[test]
        fn arbitrary_times_never_panic(raw in "\\PC{0,30}") {
            if let Err(e) = parse_moment("from", &raw) {
                prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            }
        }
    }
}
