//! The `topk` binary against a real stack (ingest and the API in this process, on the test run's private
//! Redis and PostgreSQL), one integration binary.
//!
//! # Layout
//! - [`run`]: [`run::topk`] runs the built binary and collects its exit status and output; [`run::Cli`] runs
//!   it against testkit's in-process stack (ingest and the API on free ports, a key prefix of their own).
//! - [`round_trip`]: views sent from arguments and stdin (more than one batch) are ranked by `top` and counted
//!   by `video`, in tables and in `--json`.
//! - [`dated`]: past views sent with `--at` and from a CSV count at their own time; bad rows name their line.
//! - [`range`]: `topk range` over history written as the snapshotter writes it: the table, the range summed,
//!   `--json`, and bad input refused by the command line or by the API.
//! - [`errors`]: the server's message for a 400 and a 401, a usage error, a refused connection and a timeout,
//!   and a 503 sent again under the same `Idempotency-Key` (against a stand-in ingest that fails on purpose).
//! - [`tls`]: https through a TLS-terminating proxy, trusted with `--ca-file` and refused without.

mod dated;
mod errors;
mod range;
mod round_trip;
mod run;
mod tls;
