use clap::Parser;
use topk_api::{config::ApiConfig, Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    topk_core::telemetry::init();
    let config = ApiConfig::parse();
    let stop = topk_core::shutdown::on_signal();
    Application::build(config).await?.run(stop).await
}
