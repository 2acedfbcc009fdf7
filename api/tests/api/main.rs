//! The API against a real redis-server, one integration binary.
//!
//! # Layout
//! - [`cache`]: the ranking cache shares one read per window for its TTL, then refreshes in the background.
//! - [`surface`]: `Topk-As-Of`, `Cache-Control`, gzip, CORS, Swagger UI, a video's ranks and hours.

mod cache;
mod surface;
