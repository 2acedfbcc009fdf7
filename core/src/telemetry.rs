//! Structured logs: one JSON object per line on stderr (or readable text with `TOPK_LOG_FORMAT=text`),
//! filtered by `RUST_LOG` (default `info`), and the one line every process starts with: its version and its
//! effective settings, secrets redacted.
//!
//! Spans: each HTTP handler at INFO (what it was asked, once parsed), each Postgres statement function
//! (`db/`) and Redis script at DEBUG, each Redis command at TRACE (`redis/connection/route.rs`); a span not
//! enabled costs a level check.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    #[default]
    Json,
    /// Aligned, readable text, for people at a terminal.
    Text,
}

/// How a process logs.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LogConfig {
    /// Log line format: json (for collectors) or text (for people). The filter is `RUST_LOG` (tracing's
    /// EnvFilter syntax, e.g. `warn` or `topk_ingest=debug,info`; default info).
    #[arg(long, global = true, env = "TOPK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// Installs the global subscriber with `config`'s format; call once, first thing after reading the settings.
/// A `RUST_LOG` that does not parse is refused, naming it, instead of silently logging at another level.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    init_with_default(config, "info")
}

/// [`init`] with another filter when `RUST_LOG` is unset (a command-line tool that prints its own output).
pub fn init_with_default(config: &LogConfig, default: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => EnvFilter::try_new(&value)
            .map_err(|e| anyhow::anyhow!("RUST_LOG={value:?} is not a valid log filter: {e}"))?,
        _ => EnvFilter::new(default),
    };
    // Colours only for a terminal: escape codes in a file or a collector are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // try_init: a test process installs it once, whoever comes first.
    let _ = match config.log_format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}

/// Logs the process's start: its name, version, and `settings` (the parsed configuration, as `Debug` prints
/// it) with every password in a URL and every token redacted.
pub fn log_start(binary: &str, settings: &dyn std::fmt::Debug) {
    tracing::info!(
        binary,
        version = env!("CARGO_PKG_VERSION"),
        settings = %redact(&format!("{settings:?}")),
        "starting"
    );
}

/// `text` with the password of every `scheme://user:password@host` URL, and the value of every `password=`
/// parameter, replaced by `***`. Tokens need nothing: they are [`crate::http::Secret`]s, which print redacted.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The URL runs to the end of its quoted string (an escaped quote, `\"`, is inside it) or a space. A
        // password may hold any of `,')]}` unencoded, so only the last `@` tells where the user part ends (a
        // later `@` in the path or query over-redacts, which is safe).
        let mut end = tail.len();
        let mut escaped = false;
        for (i, c) in tail.char_indices() {
            if (c == '"' && !escaped) || c.is_whitespace() {
                end = i;
                break;
            }
            escaped = c == '\\' && !escaped;
        }
        let url = &tail[..end];
        match url.rfind('@') {
            Some(at) => {
                let userinfo = &url[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:***")),
                    None => out.push_str(userinfo),
                }
                out.push_str(&url[at..]);
            }
            None => out.push_str(url),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    redact_parameter(&out, "password=")
}

fn redact_parameter(text: &str, name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(name) {
        let (head, tail) = rest.split_at(at + name.len());
        out.push_str(head);
        out.push_str("***");
        let end = tail
            .find(|c: char| "&\"' ,)}]".contains(c) || c.is_whitespace())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_in_urls_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact(
                r#"DatabaseConfig { database_url: "postgres://topk:s3cret@db:5432/topk?sslmode=verify-full" }"#
            ),
            r#"DatabaseConfig { database_url: "postgres://topk:***@db:5432/topk?sslmode=verify-full" }"#
        );
        assert_eq!(redact("redis://:pw@r:6379"), "redis://:***@r:6379");
        assert_eq!(
            redact("rediss-cluster://u:p@a:1?node=b:2"),
            "rediss-cluster://u:***@a:1?node=b:2"
        );
        assert_eq!(
            redact("postgres://db/x?user=a&password=b&x=1"),
            "postgres://db/x?user=a&password=***&x=1"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("postgres://postgres@h/topk"),
            "postgres://postgres@h/topk"
        );
        // Characters a password may hold unencoded.
        for password in ["ab,cd", "it's", "p)q", "a]b}c", r#"q\"uote"#, "x/y"] {
            let settings =
                format!(r#"Config {{ url: "postgres://topk:{password}@db:5432/topk", n: 1 }}"#);
            let redacted = redact(&settings);
            assert!(!redacted.contains(password), "{password}: {redacted}");
            assert!(
                redacted.contains("postgres://topk:***@db:5432/topk"),
                "{redacted}"
            );
            assert!(redacted.ends_with(", n: 1 }"), "{redacted}");
        }
    }
}
