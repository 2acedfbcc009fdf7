use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    topk_core::telemetry::init_with_default("warn");
    topk_bench::run(topk_bench::config::BenchConfig::parse()).await
}
