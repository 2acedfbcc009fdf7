use clap::Parser;
use topk_api::{config::ApiConfig, Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ApiConfig::parse();
    topk_core::telemetry::init(&config.log)?;
    topk_core::telemetry::log_start("topk-api", &config);
    let stop = topk_core::shutdown::on_signal();
    Application::build(config).await?.run(stop).await
}
