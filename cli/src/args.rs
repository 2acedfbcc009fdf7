//! The command line: commands, their flags and the settings read from the environment.

use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::Url;
use std::time::Duration;

/// The `topk` command line.
#[derive(Debug, Parser)]
#[command(
    name = "topk",
    version,
    about = "The command-line client of topk: most-viewed videos per window, one video's views, views sent",
    after_help = "Examples:
  topk top --window hour -k 20
  topk range --from 2026-12-01 --to 2026-12-08 -k 20
  topk video abc
  topk send abc abc xyz
  cat views.txt | topk send

Settings: TOPK_API_URL (top, range, video), TOPK_INGEST_URL and TOPK_INGEST_TOKEN (send), or the same as flags.
Exit status: 0 done, 1 a request failed (the server's message on stderr), 2 a usage error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The most-viewed videos of a window, as a table (rank, views, video).
    #[command(after_help = "Examples:
  topk top                       # the top 10 of the last hour
  topk top --window day -k 50
  topk top --window all --json   # the API's answer as is, for scripts")]
    Top(TopArgs),
    /// The most-viewed videos of a past range, from history, as a table (rank, views, video).
    #[command(after_help = "Examples:
  topk range --from 2026-12-01 --to 2026-12-08 -k 20     # the week of 1 to 7 December (UTC)
  topk range --from 2026-12-07T10:00:00Z --to 2026-12-07T11:00:00Z
  topk range --from 2026-12-01 --to 2026-12-02 --json      # the API's answer as is, for scripts

--from is inclusive and --to exclusive; a date is midnight UTC, a time is RFC 3339 with an offset, and both
are rounded down to the minute. History older than the roll-ups keeps hours (or days) only: the range is
then widened to whole hours (or days), and the line under the table says which range was summed.")]
    Range(RangeArgs),
    /// One video's views in each window (and its rank, when the API tells it).
    #[command(after_help = "Examples:
  topk video abc
  topk video abc --json")]
    Video(VideoArgs),
    /// Sends views to ingest: each id given counts one view.
    #[command(after_help = "Examples:
  topk send abc abc xyz               # 2 views of abc, 1 of xyz
  cut -f2 access.log | topk send      # ids on stdin, one per line
  topk send abc - < more-ids.txt      # '-' reads stdin at that place
  topk send --at 2026-12-01T10:15:00Z abc   # views that happened then
  topk send --csv < past-views.csv    # rows video_id,at[,count]: past views at their own time

Ids are sent in batches (--batch-size ids, counted per id); each batch carries an Idempotency-Key, so one
sent again after a timeout, a lost connection or a 503 is counted once. Ids are checked by the server: a
batch with a bad id is refused whole (400, naming it), and the batches before it stay accepted.
A dated view counts in every window that holds its time when it is applied, and in history at its own
minute; ingest refuses a time more than a few seconds in the future.")]
    Send(SendArgs),
}

/// A window of the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Window {
    Minute,
    Hour,
    Day,
    All,
}

impl Window {
    /// The name the API takes in `window=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::All => "all",
        }
    }

    /// For a person: "the last hour", "all time".
    pub fn describe(self) -> &'static str {
        match self {
            Window::Minute => "the last minute",
            Window::Hour => "the last hour",
            Window::Day => "the last day",
            Window::All => "all time",
        }
    }
}

/// `topk top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The window ranked.
    #[arg(long, short, value_enum, default_value_t = Window::Hour)]
    pub window: Window,
    #[command(flatten)]
    pub ranking: RankingArgs,
}

/// `topk range`.
#[derive(Debug, Args)]
pub struct RangeArgs {
    /// Start, inclusive: a date (2026-12-01, midnight UTC) or an RFC 3339 time (2026-12-01T10:15:00Z).
    #[arg(long, value_parser = moment)]
    pub from: String,
    /// End, exclusive, in the same forms.
    #[arg(long, value_parser = moment)]
    pub to: String,
    #[command(flatten)]
    pub ranking: RankingArgs,
}

/// What `topk top` and `topk range` both take after what they rank: how many videos, and how to ask and print.
#[derive(Debug, Args)]
pub struct RankingArgs {
    /// How many videos (the API takes 1 to 1000).
    #[arg(short, default_value_t = 10)]
    pub k: u32,
    /// Print the API's JSON answer as is.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiSettings,
}

/// A moment of a range as the API takes it: a date or an RFC 3339 time (passed on as written).
fn moment(raw: &str) -> Result<String, String> {
    let date = raw.len() == 10 && chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").is_ok();
    if date || chrono::DateTime::parse_from_rfc3339(raw).is_ok() {
        Ok(raw.to_owned())
    } else {
        Err("expected a date (2026-12-01) or an RFC 3339 time (2026-12-01T10:15:00Z)".into())
    }
}

/// A time as `POST /v1/views` takes it (passed on as written).
fn rfc3339(raw: &str) -> Result<String, String> {
    match chrono::DateTime::parse_from_rfc3339(raw) {
        Ok(_) => Ok(raw.to_owned()),
        Err(_) => Err("expected an RFC 3339 time with an offset (2026-12-01T10:15:00Z)".into()),
    }
}

/// `topk video`.
#[derive(Debug, Args)]
pub struct VideoArgs {
    /// The video id.
    pub id: String,
    /// Print the API's JSON answer as is.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiSettings,
}

/// `topk send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Video ids, one view each; none (or '-') reads them from stdin, one per line (empty lines skipped).
    pub ids: Vec<String>,
    /// Ids per POST; the ids of a batch are counted per id, so a batch holds at most this many elements.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// How many times a batch is sent again after a 408/502/503/504, a timeout or a connection error (with
    /// backoff, or after the server's Retry-After), under the same Idempotency-Key; never for longer than
    /// 240 s from its first send (ingest remembers a key 300 s by default).
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// When the views happened: an RFC 3339 time with an offset (2026-12-01T10:15:00Z). Without it, when
    /// ingest stores them.
    #[arg(long, value_parser = rfc3339)]
    pub at: Option<String>,
    /// Read `video_id,at[,count]` rows from stdin (a first row `video_id,at,...` is a header) instead of ids:
    /// each row's views at its own time.
    #[arg(long)]
    pub csv: bool,
    /// Print each batch's JSON answer as is, one a line.
    #[arg(long)]
    pub json: bool,
    /// Where topk-ingest receives views.
    #[arg(long, env = "TOPK_INGEST_URL", default_value = "http://127.0.0.1:8081", value_parser = base_url)]
    pub ingest_url: Url,
    /// The bearer token ingest wants (of a comma-separated list, as the server takes, the first is sent).
    /// Prefer the variable: a flag shows in the process list.
    #[arg(long, env = "TOPK_INGEST_TOKEN", hide_env_values = true, value_parser = token)]
    pub token: Option<Token>,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Where the API is, and how long to wait for it.
#[derive(Debug, Args)]
pub struct ApiSettings {
    /// Where topk-api answers.
    #[arg(long, env = "TOPK_API_URL", default_value = "http://127.0.0.1:8080", value_parser = base_url)]
    pub api_url: Url,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// How requests are sent.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// How long one request may take, connecting included, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
    /// CA certificate (PEM) an https:// server's certificate must chain to, besides the system's roots (for a
    /// private CA).
    #[arg(long, env = "TOPK_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

impl HttpArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// A bearer token; its `Debug` does not show it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// The first token of a comma-separated list, so the variable the ingest server reads (which may hold
/// `new,old` during a rotation) works here as it is. An empty one is refused, as the server refuses it: a set
/// but empty variable is a mistake, not "no token".
fn token(raw: &str) -> Result<Token, String> {
    match raw.split(',').next().map(str::trim) {
        Some(t) if !t.is_empty() => Ok(Token(t.to_owned())),
        _ => Err("the token is empty (unset the variable to send none)".into()),
    }
}

/// A base URL: `http://host:port`, optionally with a path the routes go under (behind a proxy).
fn base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http:// or https:// (got {}://)",
            url.scheme()
        ));
    }
    if url.host().is_none() || url.query().is_some() {
        return Err("expected http(s)://host:port, with an optional path and no query".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_token_list_sends_its_first_token_and_an_empty_one_is_refused() {
        assert_eq!(token("new, old").unwrap().expose(), "new");
        assert!(token("").is_err());
        assert!(token(" ,old").is_err());
        assert_eq!(format!("{:?}", token("secret").unwrap()), "Token(redacted)");
    }

    #[test]
    fn moments_are_dates_or_rfc3339_times() {
        assert!(moment("2026-12-01").is_ok());
        assert!(moment("2026-12-01T10:15:00+01:00").is_ok());
        for bad in [
            "yesterday",
            "2026-12-01T10:15:00",
            "2026-13-01",
            "",
            "12/01/2026",
        ] {
            assert!(moment(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base_urls_are_http_or_https() {
        assert!(base_url("http://127.0.0.1:8080").is_ok());
        assert!(base_url("http://api.example/topk/").is_ok());
        assert!(base_url("https://api.example").is_ok());
        assert!(base_url("ftp://api.example")
            .unwrap_err()
            .contains("https://"));
        assert!(base_url("127.0.0.1:8080").is_err());
    }
}
