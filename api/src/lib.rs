//! topk-api: rankings per window, health and the OpenAPI document.
//!
//! # Layout
//! - [`app`]: the shared [`AppState`], [`app::router`] merging every module's routes, and [`Application`]
//!   (build binds and connects, run serves until stopped).
//! - [`config`]: settings (flags and environment).
//! - [`cache`]: the merged top 1000 of each window, shared by requests for a few hundred milliseconds.
//! - [`rankings`]: `GET /view/video` and `GET /v1/topk`: per-partition top K from Redis, merged.
//! - [`videos`]: `GET /v1/videos/{videoId}`: one video's views in each window, from Redis.
//! - [`video_hourly`]: `GET /v1/videos/{videoId}/hourly`: one video's views per hour, from Postgres.
//! - [`history`]: `GET /v1/topk/history`: past rankings from Postgres snapshots.
//! - [`range`]: `GET /v1/topk/range`: the exact top K of any past range, from Postgres history.
//! - [`openapi`](mod@openapi): the OpenAPI document, generated from the handlers, `GET /openapi.json`, and
//!   Swagger UI on `GET /docs` (its assets inside the binary).
//! - [`page`]: `GET /`, the live leaderboard page, which polls `/v1/topk` from the browser; its assets are
//!   compiled in.
//!
//! Each route module owns its `router()`; [`app::router`] merges them with the health routes.
//!
//! A request reads each partition's maintained window (`ZRANGE ... REV`), never a union of slices.

// The root re-exports what callers name without a module: other crates, the tests, the binary.
pub mod app;
pub mod cache;
pub mod config;
pub mod history;
pub mod openapi;
pub mod page;
pub mod range;
pub mod rankings;
pub mod video_hourly;
pub mod videos;

pub use app::{router, AppState, Application};
pub use openapi::openapi;

/// Asserts that `parse` refuses every one of `queries` with a 400 (the query parsers' unit tests).
#[cfg(test)]
fn assert_bad_requests<T: std::fmt::Debug>(
    parse: impl Fn(&str) -> Result<T, topk_core::http::ApiError>,
    queries: &[&str],
) {
    for query in queries {
        let e = parse(query).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{query:?}");
    }
}
