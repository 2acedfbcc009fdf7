//! topk-api: rankings per window, health and the OpenAPI document.
//!
//! # Layout
//! - [`config`]: settings (flags and environment).
//! - [`cache`]: the merged top 1000 of each window, shared by requests for a few hundred milliseconds.
//! - [`rankings`]: `GET /view/video` and `GET /v1/topk`: per-partition top K from Redis, merged.
//! - [`videos`]: `GET /v1/videos/{videoId}`: one video's views in each window, from Redis.
//! - [`history`]: `GET /v1/topk/history`: past rankings from Postgres snapshots.
//!
//! A request reads each partition's maintained window (`ZRANGE ... REV`), never a union of slices.

pub mod app;
pub mod cache;
pub mod config;
pub mod history;
pub mod openapi;
pub mod rankings;
pub mod videos;

pub use app::{router, AppState, Application};
pub use openapi::openapi;
