use clap::Parser;
use std::process::ExitCode;
use topk_cli::args::Cli;

/// Exit status: 0 done, 1 a request failed, 2 a usage error (clap's own).
fn main() -> ExitCode {
    let cli = Cli::parse();
    // One request at a time: a single thread is enough.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(topk_cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("topk: {e:#}");
            ExitCode::FAILURE
        }
    }
}
