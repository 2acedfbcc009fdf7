use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The SQL baseline's queries are slow by design: sqlx's slow-statement warnings would only interleave
    // with the progress bars.
    topk_core::telemetry::init_with_default(&Default::default(), "warn,sqlx::query=error")?;
    topk_bench::run(topk_bench::config::BenchConfig::parse()).await
}
