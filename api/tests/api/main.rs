//! The API against a real redis-server, one integration binary.
//!
//! # Layout
//! - [`cache`]: the ranking cache shares one read per window for its TTL, then refreshes in the background
//!   (its clock injected).
//! - [`overload`]: liveness and metrics still answer while ranking reads hold every in-flight slot.
//! - [`page`]: the leaderboard page in a real headless Chromium against a real stack (testkit's in-process
//!   ingest and API), and its headers.
//! - [`range`]: `GET /v1/topk/range` over history written as the snapshotter writes it, rolled up, and refused.
//! - [`surface`]: `Topk-As-Of`, `Cache-Control`, gzip, CORS, Swagger UI, a video's ranks and hours.

mod cache;
mod overload;
mod page;
mod range;
mod surface;

/// The `name` of every element of a JSON array (an OpenAPI document's tags, a route's parameters).
fn names(list: &serde_json::Value) -> Vec<&str> {
    let list = list.as_array().expect("a JSON array");
    list.iter().map(|e| e["name"].as_str().unwrap()).collect()
}
