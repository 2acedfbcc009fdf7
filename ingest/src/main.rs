use clap::Parser;
use topk_ingest::{config::IngestConfig, Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    topk_core::telemetry::init();
    let config = IngestConfig::parse();
    let stop = topk_core::shutdown::on_signal();
    Application::build(config).await?.run(stop).await
}
