//! topk-ingest: views in, counted exactly once.
//!
//! # Layout
//! - [`app`]: [`Application`] builds (binds, connects) then runs what the role asks for: the receiver's
//!   routes, merged in [`app::router`], and the worker and retirer loops, all stopped by one token.
//! - [`config`]: settings and roles (receiver, worker, or both in one process).
//! - [`openapi`](mod@openapi): the receiver's OpenAPI document and `GET /openapi.json`.
//! - [`admission`]: what `POST /v1/views` checks before its body is read (token, declared size, media type,
//!   backlog).
//! - [`receiver`]: `POST /v1/views` and its router: validate the whole batch (core's wire format), append it
//!   to the partitioned log, answer 202.
//! - [`group_commit`]: the batches of concurrent requests appended together, one log entry per partition for
//!   the group, each request answered with its own outcome.
//! - [`backpressure`]: the log's backlog limit: over it the receiver answers 503.
//! - [`log_watch`]: measures the log in the background, for backpressure and the backlog and freshness metrics.
//! - [`worker`]: one loop per partition running core's apply step (read the log in a consumer group,
//!   aggregate, apply with the acknowledgement in one script call; claim what dead workers left pending). [`worker::spawn`] starts one loop per partition
//!   with [`worker::WorkerOptions`].
//! - [`kafka`]: the Kafka source (role `kafka`): records consumed in a group, validated like a POST's
//!   elements, appended exactly once per topk partition by Kafka offset ([`kafka::forward()`]), then committed;
//!   malformed ones to the dead-letter stream.
//! - [`retirer`]: subtract slices that left a window, once; trim the acknowledged log past its retention.
//!
//! Views move: HTTP → [`receiver`] (or Kafka → [`kafka`]) → Redis stream `{p}:log` → [`WindowApplier::step`](topk_core::redis::WindowApplier::step) → window sets → `topk-api`.

// The root re-exports what callers name without a module: other crates, the tests, the binary.
pub mod admission;
pub mod app;
pub mod backpressure;
pub mod config;
pub mod group_commit;
pub mod kafka;
pub mod log_watch;
pub mod openapi;
pub mod receiver;
pub mod retirer;
pub mod worker;

pub use app::{router, AppState, Application};
pub use openapi::openapi;
