//! Rankings: `GET /view/video` (the route the product was specified with) and `GET /v1/topk`.
//! Each partition keeps its window up to date; a query reads each partition's top K and merges them.

use crate::AppState;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use topk_core::domain::{RankedVideo, TopK, Window};
use topk_core::http::{ApiError, ErrorBody, Query};
use utoipa::IntoParams;

/// The ranking routes: `GET /v1/topk` and the same ranking on `GET /view/video`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/view/video", get(view_video))
        .route("/v1/topk", get(topk))
}

/// Query of a ranking; parsed by hand so every refusal names the allowed values.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RankingQuery {
    /// `minute`, `hour`, `day` or `all` (required: there is no sensible default).
    #[param(value_type = Window, example = "hour")]
    pub window: Option<String>,
    /// How many videos, 1 to 1000 (default 10).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000, example = 10)]
    pub k: Option<String>,
}

impl RankingQuery {
    /// `window` (required) and `k` (default 10).
    pub fn parse(&self) -> Result<(Window, TopK), ApiError> {
        let window = self.window.as_deref().ok_or_else(|| {
            ApiError::bad_request("window is required: one of minute, hour, day, all")
        })?;
        let k = self.k.as_deref().map(TopK::parse).transpose()?;
        Ok((Window::parse(window)?, k.unwrap_or(TopK::DEFAULT)))
    }
}

/// What both ranking routes answer, for the OpenAPI document only (the handler builds its response itself).
#[derive(utoipa::IntoResponses)]
pub enum RankingResponses {
    #[response(status = 200, description = "the ranking", headers(
        ("Topk-As-Of" = String, description = "when the ranking was read from Redis (RFC 3339, milliseconds)"),
        ("Cache-Control" = String, description = "public, max-age: how long the API itself shares a ranking")))]
    Ranking(Vec<RankedVideo>),
    #[response(status = 400, description = "bad window or k")]
    BadQuery(ErrorBody),
    #[response(status = 503, description = "Redis is unavailable")]
    Unavailable(ErrorBody),
}

/// The K most viewed videos of a window, views descending, ties by videoId descending.
#[utoipa::path(
    get,
    path = "/v1/topk",
    tag = "rankings",
    params(RankingQuery),
    responses(RankingResponses)
)]
#[tracing::instrument(skip_all, fields(window, k))]
pub async fn topk(
    State(state): State<AppState>,
    Query(query): Query<RankingQuery>,
) -> Result<Response, ApiError> {
    let (window, k) = query.parse()?;
    record_ranking(window, k);
    // The cache keeps each ranking serialized: the body is a copied prefix of its bytes.
    let (body, as_of) = state.rankings.top_json(&state.reads, window, k).await?;
    let as_of = as_of.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                AS_OF,
                HeaderValue::from_str(&as_of).expect("a timestamp is a header value"),
            ),
            (CACHE_CONTROL, cache_control(state.rankings.ttl())),
        ],
        body,
    )
        .into_response())
}

/// Records the ranking asked for in the handler's span (declared empty: the query is parsed inside it).
pub(crate) fn record_ranking(window: Window, k: TopK) {
    let span = tracing::Span::current();
    span.record("window", window.as_str());
    span.record("k", k.get());
}

/// The header that says when a ranking was read from Redis.
pub const AS_OF: axum::http::HeaderName = axum::http::HeaderName::from_static("topk-as-of");

/// `Cache-Control` for a ranking shared for `ttl`: caches in front may keep it as long as the API itself does
/// (whole seconds; below one second, not at all without asking again).
pub fn cache_control(ttl: std::time::Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={}", ttl.as_secs())).expect("ascii")
}

/// The same ranking on the route the product was first specified with.
#[utoipa::path(
    get,
    path = "/view/video",
    tag = "rankings",
    params(RankingQuery),
    responses(RankingResponses)
)]
pub async fn view_video(
    state: State<AppState>,
    query: Query<RankingQuery>,
) -> Result<Response, ApiError> {
    topk(state, query).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{StatusCode, Uri};
    use proptest::prelude::*;
    use topk_core::domain::MAX_K;

    /// Parses a ranking query the way the handler does: from a request URI's query string.
    fn parse(query: &str) -> Result<(Window, TopK), ApiError> {
        let uri: Uri = format!("http://x/v1/topk?{query}").parse().unwrap();
        parse_uri(&uri)
    }

    fn parse_uri(uri: &Uri) -> Result<(Window, TopK), ApiError> {
        Query::<RankingQuery>::try_from_uri(uri)?.0.parse()
    }

    #[test]
    fn window_is_required_and_k_defaults_to_10() {
        assert_eq!(parse("window=hour").unwrap(), (Window::Hour, TopK::DEFAULT));
        assert_eq!(parse("window=all&k=1000").unwrap().1.get(), 1000);
        crate::assert_bad_requests(
            parse,
            &[
                "",
                "k=10",
                "window=week",
                "window=hour&k=0",
                "window=hour&k=1001",
                "window=hour&k=",
                "window=hour&k=%FF",
                "window=%FF",
                "window=hour&window=day",
                "window=hour&k=1e3",
            ],
        );
    }

    /// Percent-encodes every byte, so any string can be put in a query.
    fn encode(raw: &str) -> String {
        raw.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    proptest! {
        /// Any query string a URI can carry gets a ranking or a 400, never a panic.
        #[test]
        fn arbitrary_queries_never_panic(query in "[ -~]{0,80}") {
            let Ok(uri) = format!("http://x/v1/topk?{query}").parse::<Uri>() else { return Ok(()) };
            if let Err(e) = parse_uri(&uri) {
                prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            }
        }

        /// Arbitrary values of `window` and `k` (any text, percent-encoded) are accepted exactly when valid.
        #[test]
        fn values_accepted_exactly_when_valid(window in "\\PC{0,8}|minute|hour|day|all",
                                              k in "\\PC{0,6}|[0-9]{1,5}|-?[0-9]{1,3}") {
            let got = parse(&format!("window={}&k={}", encode(&window), encode(&k)));
            let valid_window = Window::parse(&window).is_ok();
            let valid_k = k.parse::<usize>().is_ok_and(|k| (1..=MAX_K).contains(&k));
            prop_assert_eq!(got.is_ok(), valid_window && valid_k, "{:?}", got);
        }
    }
}
