//! topk-ingest: views in, counted exactly once.
//!
//! # Layout
//! - [`config`]: settings and roles (receiver, worker, or both in one process).
//! - [`receiver`]: `POST /v1/views`: validate the whole batch, append it to the partitioned log, answer 202.
//! - [`backpressure`]: the log's backlog, measured in the background; over its limit the receiver answers 503.
//! - [`worker`]: per partition, read the log in a consumer group, aggregate, apply with the acknowledgement in
//!   one script call; claim what dead workers left pending.
//! - [`retirer`]: subtract slices that left a window, once; trim the acknowledged log past its retention.
//!
//! Views move: HTTP → [`receiver`] → Redis stream `{p}:log` → [`worker::step`] → window sets → `topk-api`.

pub mod app;
pub mod backpressure;
pub mod config;
pub mod openapi;
pub mod receiver;
pub mod retirer;
pub mod worker;

pub use app::{router, AppState, Application};
pub use openapi::openapi;
