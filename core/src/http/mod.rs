//! HTTP pieces both services share, one concern per file:
//! - [`error`]: the one JSON error type;
//! - [`health`]: `/healthz`, `/readyz` and the JSON 404;
//! - [`auth`]: bearer tokens for writes;
//! - [`serve`]: the server loop with limits against slow and hostile clients.

pub mod auth;
pub mod error;
pub mod health;
pub mod serve;

pub use auth::*;
pub use error::*;
// A glob, so that utoipa's generated `__path_*` items come along for `paths(topk_core::http::healthz)`.
pub use health::*;
