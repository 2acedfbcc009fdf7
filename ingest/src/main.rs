use clap::Parser;
use topk_ingest::{config::IngestConfig, Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = IngestConfig::parse();
    topk_core::telemetry::init(&config.log)?;
    topk_core::telemetry::log_start("topk-ingest", &config);
    let stop = topk_core::shutdown::on_signal();
    Application::build(config).await?.run(stop).await
}
