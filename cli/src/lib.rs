//! `topk`, the command-line client of topk: the HTTP interface of DESIGN.md ("Interfaces") for a person at a
//! terminal, and for scripts with `--json`.
//!
//! # Layout
//! - [`args`]: the command line (clap): `top`, `range`, `video`, `send`, and the settings each reads from flags or the
//!   environment (`TOPK_API_URL`, `TOPK_INGEST_URL`, `TOPK_INGEST_TOKEN`).
//! - [`client`]: one request and its failures, worded for a person (the server's `{"error"}` message, or the
//!   URL that refused or timed out).
//! - [`top`], [`range`], [`video`]: a GET to the API, printed as a table, or as it came with `--json`.
//! - [`send`]: ids from the arguments or stdin, counted per id in batches, POSTed to ingest under an
//!   `Idempotency-Key` each, and sent again under the same key after a 503 or a lost answer.
//! - [`mod@format`]: thousands separators, aligned tables, stdout.

pub mod args;
pub mod client;
pub mod format;
pub mod range;
pub mod send;
pub mod top;
pub mod video;

use args::{Cli, Command};

/// Runs one command; an error is for stderr and exit status 1.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Top(args) => top::run(args).await,
        Command::Range(args) => range::run(args).await,
        Command::Video(args) => video::run(args).await,
        Command::Send(args) => send::run(args).await,
    }
}
