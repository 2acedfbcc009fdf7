//! Settings of `topk-bench` (flags or environment variables).

use clap::Parser;
use std::time::Duration;
use topk_core::config::{DatabaseConfig, RedisConfig};

/// topk-bench: measures topk and its baselines on the same workload, in one run, on this machine.
///
/// It needs a Redis and a Postgres (`scripts/up.sh` starts both); it starts its own `topk-ingest` and
/// `topk-api` processes (from the folder of this binary) on a private key prefix and a scratch database, and
/// removes both at the end. Against Redis Cluster (`redis-cluster://` URL) it also reports how many partitions
/// each primary owns and each primary's Redis CPU per view; the partition count is `TOPK_PARTITIONS`.
#[derive(Parser, Debug, Clone)]
#[command(name = "topk-bench", version, about)]
pub struct BenchConfig {
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Distinct videos the workload draws from (and that the query windows hold).
    #[arg(long, default_value_t = 1_000_000)]
    pub videos: u64,
    /// Zipf exponent of the workload.
    #[arg(long, default_value_t = 1.0)]
    pub zipf_s: f64,
    /// Seconds each timed load runs.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Concurrent HTTP clients of the load generator.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Views per POST.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Views drawn in advance for the loads, which send them round-robin (the HTTP and Kafka loads as POST
    /// bodies of `--batch` views, the naive baseline as ids). A pool that a worker's step outlasts repeats its
    /// videos within the step, and makes aggregating a step look cheaper than a stream of fresh draws: 2 M
    /// views last 4 s and more at the rates measured here, several times a step (256,000 before 2026-12-08,
    /// about half a second, with 79,000 distinct videos of the million).
    #[arg(long, default_value_t = 2_000_000)]
    pub load_views: usize,
    /// Times each figure is measured (median, min and max are reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Steady load during the freshness measurement, in views per second.
    #[arg(long, default_value_t = 100_000)]
    pub freshness_rate: u64,
    /// Probes per freshness measurement.
    #[arg(long, default_value_t = 200)]
    pub probes: usize,
    /// Requests per query measurement (each window and k). Enough that p999 is the 20th slowest request and
    /// the run lasts over a second, spanning several refreshes of the API's cache, instead of a burst.
    #[arg(long, default_value_t = 20_000)]
    pub query_requests: usize,
    /// Minute buckets per partition seeded for the snapshot and rebuild figures.
    #[arg(long, default_value_t = 5)]
    pub seed_minutes: u64,
    /// Videos per partition and seeded minute.
    #[arg(long, default_value_t = 10_000)]
    pub seed_videos: u64,
    /// Rows of `video_stats` in seven days of the history seeded for the range figures (eight days are
    /// seeded).
    #[arg(long, default_value_t = 10_500_000)]
    pub range_rows: u64,
    /// Requests per range figure (each span and k), one at a time.
    #[arg(long, default_value_t = 200)]
    pub range_requests: usize,
    /// Measure only these groups of figures (comma-separated: ingest, freshness, queries, memory, postgres,
    /// range, refill);
    /// all of them when absent.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<Phase>,
    /// A smoke run that finishes within about two minutes (small sizes, short loads, fewer repeats).
    #[arg(long)]
    pub quick: bool,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the figures as JSON to this file (`scripts/bench-deployments.sh` sums its rows up from them).
    #[arg(long)]
    pub json_file: Option<std::path::PathBuf>,
}

/// A group of figures measured together.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Ingest,
    Freshness,
    Queries,
    Memory,
    Postgres,
    /// The top K of a past range from history, against the SQL.
    Range,
    Refill,
    /// Kafka against HTTP ingest: only when asked for (it needs the tests' broker, tansu).
    Kafka,
    /// Where Redis time goes, stage by stage and command by command: only when asked for.
    Profile,
}

impl BenchConfig {
    /// Whether `phase` is measured in this run.
    pub fn runs(&self, phase: Phase) -> bool {
        (self.only.is_empty() && !matches!(phase, Phase::Kafka | Phase::Profile))
            || self.only.contains(&phase)
    }

    /// Applies `--quick`.
    pub fn effective(mut self) -> Self {
        if self.quick {
            self.videos = self.videos.min(100_000);
            self.load_views = self.load_views.min(200_000);
            self.seconds = self.seconds.min(4);
            self.repeats = self.repeats.min(2);
            self.freshness_rate = self.freshness_rate.min(20_000);
            self.probes = self.probes.min(30);
            self.query_requests = self.query_requests.min(200);
            self.seed_minutes = self.seed_minutes.min(2);
            self.seed_videos = self.seed_videos.min(3_000);
            self.range_rows = self.range_rows.min(700_000);
            self.range_requests = self.range_requests.min(20);
        }
        self
    }

    /// How long each load runs.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds)
    }
}
