//! topk-snapshotter: Postgres as the system of record for history and recovery.
//!
//! # Layout
//! - [`cli`]: subcommands and settings.
//! - `migrate`: applies the sqlx migrations of `migrations/`.

pub mod cli;

use cli::{Cli, Command};

/// Runs one subcommand to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(args) => {
            let pool = topk_core::db::pool(&args.database)?;
            topk_core::db::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
    }
}
