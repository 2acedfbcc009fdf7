//! Subcommands and settings of `topk-snapshotter` (flags or `TOPK_*` environment variables).

use clap::{Args, Parser, Subcommand};
use topk_core::config::DatabaseConfig;

/// topk-snapshotter: writes per-minute history and window rankings to Postgres, and rebuilds Redis from it.
#[derive(Parser, Debug)]
#[command(name = "topk-snapshotter", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseConfig,
}
