use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    topk_core::telemetry::init();
    topk_snapshotter::run(topk_snapshotter::cli::Cli::parse()).await
}
