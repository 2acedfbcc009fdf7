//! Structured logs: one JSON object per line on stderr, filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once at the start of `main`.
pub fn init() {
    init_with_default("info");
}

/// [`init`] with another filter when `RUST_LOG` is unset (a command-line tool that prints its own output).
pub fn init_with_default(filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_writer(std::io::stderr)
        .try_init();
}
