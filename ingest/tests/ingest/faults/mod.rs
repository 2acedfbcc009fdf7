//! The fault suite: the real `topk-ingest`, `topk-api` and `topk-snapshotter` processes on a real Redis and
//! PostgreSQL, broken on purpose while views arrive. After each fault every view answered 202 must be counted
//! exactly once in every window; a request that got no answer (or a 503) may or may not be counted, so a
//! video's count must lie between its accepted views and its accepted plus unanswered views.
//!
//! # Layout
//! Helpers, re-exported here for the tests' `use super::*`:
//! - [`services`]: the service processes ([`Proc`]) of a deployment on the test's keys ([`Env`]).
//! - [`traffic`]: the load, views sent ([`Sender`]) and rankings asked ([`Querier`]).
//! - [`tally`]: what was sent and how each request was answered ([`Tally`]).
//! - [`checks`]: the exactness check ([`check_windows`]), queries served, the log drained.
//! - [`report`]: the printed figures, one summary line per test and the suite's running totals.
//!
//! Tests:
//! - [`processes`]: SIGKILL of workers and receivers, SIGTERM of every service.
//! - [`redis`]: Redis restarted with and without persistence, frozen, down.
//! - [`postgres`]: Postgres stopped across a minute while everything runs.
//! - [`retire`]: views arriving while their slice is retired (injected time).
//! - [`load`]: mixed ingest and queries for a bounded time, memory, log and keys bounded.
//!
//! Postgres stopped in the middle of a snapshot is `postgres_stopped_during_a_snapshot_leaves_no_gap` in
//! `snapshotter/tests/snapshotter/faults.rs`.

mod load;
mod postgres;
mod processes;
mod redis;
mod retire;

mod checks;
mod report;
mod services;
mod tally;
mod traffic;

pub use checks::*;
pub use report::*;
pub use services::*;
pub use tally::*;
pub use traffic::*;

// What the test modules below use besides the helpers, taken with their `use super::*`.
use rand::Rng;
use reqwest::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use topk_core::domain::Window;
