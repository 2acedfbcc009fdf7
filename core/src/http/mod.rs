//! HTTP pieces every service shares, one concern per file:
//! - [`error`]: the one JSON error type, and how the errors of core convert to it;
//! - [`extract`]: `Query`, `Path` and `Json`, whose rejections are that JSON error;
//! - [`health`]: `/healthz`, `/readyz`, `/metrics` and the JSON 404;
//! - [`readiness`]: what `/readyz` checks (loops, Redis, Postgres, whatever a role adds);
//! - [`request_metrics`]: request durations and counts by route;
//! - [`admin`]: health and metrics on an address of their own (`TOPK_ADMIN_ADDR`);
//! - [`auth`]: bearer tokens for writes;
//! - [`serve`]: the server loop with limits against slow and hostile clients.

pub mod admin;
pub mod auth;
pub mod error;
pub mod extract;
pub mod health;
pub mod readiness;
pub mod request_metrics;
pub mod serve;

pub use auth::*;
pub use error::*;
pub use extract::{Json, Path, Query};
// A glob, so that utoipa's generated `__path_*` items come along for `paths(topk_core::http::healthz)`.
pub use health::*;
pub use readiness::{NotReady, OnFailure, Readiness};
pub use request_metrics::{with_request_metrics, Service};
