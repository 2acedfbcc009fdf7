use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    topk_core::telemetry::init();
    let stop = topk_core::shutdown::on_signal();
    topk_snapshotter::run(topk_snapshotter::cli::Cli::parse(), stop).await
}
