use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = topk_snapshotter::cli::Cli::parse();
    topk_core::telemetry::init(&cli.log)?;
    topk_core::telemetry::log_start("topk-snapshotter", &cli);
    let stop = topk_core::shutdown::on_signal();
    topk_snapshotter::run(cli, stop).await
}
