//! Settings of `topk-ingest` (flags or `TOPK_*` environment variables).

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;
use topk_core::config::{AdminConfig, HttpConfig, RedisConfig};
use topk_core::http::{BearerTokens, Secret};
use topk_core::telemetry::LogConfig;

/// Which parts of ingest this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Receiver, workers and retirer in one process.
    All,
    /// Only the HTTP receiver that appends views to the log.
    Receiver,
    /// Only the workers that apply the log, and the retirer.
    Worker,
    /// Only the Kafka source: consumes `TOPK_KAFKA_TOPIC` into the log (no HTTP, no workers).
    Kafka,
}

/// Where the kafka role reads views from.
#[derive(clap::Args, Debug, Clone)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`: required by the kafka role.
    #[arg(long = "kafka-brokers", env = "TOPK_KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// The topic of view records: each value a view object or an array of them, as in `POST /v1/views`.
    #[arg(
        long = "kafka-topic",
        env = "TOPK_KAFKA_TOPIC",
        default_value = "views"
    )]
    pub topic: String,
    /// The consumer group, whose committed offsets a restarted consumer resumes from.
    #[arg(long = "kafka-group", env = "TOPK_KAFKA_GROUP", default_value = "topk")]
    pub group: String,
    /// How long the group waits for a consumer that stopped answering (killed, hung) before its partitions
    /// go to the others, in milliseconds: the gap in consumption a crash costs. Brokers accept 6,000 to
    /// 300,000 by default.
    #[arg(long = "kafka-session-timeout-ms", env = "TOPK_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u32).range(1_000..=3_600_000))]
    pub session_timeout_ms: u32,
    /// A file of librdkafka consumer properties, `name=value` per line (`#` comments), applied after topk's
    /// own: SASL (`security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`), TLS (`ssl.*`),
    /// `client.id`, fetch sizes. Checked at start; the brokers, group, session timeout and auto commit are
    /// topk's and refused here.
    #[arg(long = "kafka-config-file", env = "TOPK_KAFKA_CONFIG_FILE")]
    pub config_file: Option<std::path::PathBuf>,
}

/// topk-ingest: receives views over HTTP into the partitioned Redis log; workers apply the log to the windows
/// exactly once and retire slices that leave them.
#[derive(Parser, Debug, Clone)]
#[command(name = "topk-ingest", version, about)]
pub struct IngestConfig {
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub admin: AdminConfig,
    #[command(flatten)]
    pub log: LogConfig,
    #[command(flatten)]
    pub kafka: KafkaConfig,
    /// Where the receiver listens.
    #[arg(long, env = "TOPK_INGEST_ADDR", default_value = "127.0.0.1:8081")]
    pub addr: SocketAddr,
    /// When set, `POST /v1/views` needs `Authorization: Bearer <token>`; a comma-separated list accepts each
    /// of its tokens (to rotate one without downtime).
    #[arg(long, env = "TOPK_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// How long a batch's `Idempotency-Key` is remembered: the same batch sent again with the same key within
    /// this time is answered 202 and stored once. At least a minute, and twice the request or Redis timeout,
    /// whichever is longer (refused at start otherwise); a 503 says how long its key can be retried. Each key costs Redis about 200 bytes per partition its batch
    /// touches (docs/http-api.md, "Retries").
    #[arg(long, env = "TOPK_IDEMPOTENCY_RETENTION_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub idempotency_retention_secs: u64,
    /// Group commit: how long, in milliseconds, the receiver waits after a batch for more to go with it to
    /// the log (one entry per partition for the group instead of one per batch and partition). Batches that
    /// arrive while earlier groups are being stored go together anyway; this only adds to a quiet receiver's
    /// time. 0: no waiting.
    #[arg(long, env = "TOPK_INGEST_LINGER_MS", default_value_t = 1)]
    pub linger_ms: u64,
    /// How far in the future, in seconds, a view's `"at"` may be (the producers' clocks run ahead of this
    /// server's by up to this much): a later one refuses its batch with 400. A view dated in the future within
    /// it counts when it is stored.
    #[arg(long, env = "TOPK_EVENT_TIME_MAX_SKEW_SECS", default_value_t = 5)]
    pub event_time_max_skew_secs: u64,
    /// Which parts to run.
    #[arg(long, env = "TOPK_INGEST_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Largest accepted request body, in bytes (413 above).
    #[arg(long, env = "TOPK_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most elements one batch may have (400 above).
    #[arg(long, env = "TOPK_MAX_BATCH_LEN", default_value_t = 10_000)]
    pub max_batch_len: usize,
    /// Most log entries waiting for the workers (undelivered or unacknowledged, all partitions together)
    /// before the receiver answers 503 with `Retry-After` instead of taking more views (0: no limit).
    #[arg(long, env = "TOPK_INGEST_MAX_BACKLOG", default_value_t = 100_000)]
    pub max_backlog: u64,
    /// Log entries a worker applies in one atomic step, at most.
    #[arg(long, env = "TOPK_WORKER_BATCH_ENTRIES", default_value_t = 256)]
    pub worker_batch_entries: usize,
    /// Views a worker aims to apply in one atomic step: it reads as many entries as carry about this many
    /// (entries carry more views when the receiver groups batches), so that a step's script stays short
    /// (about 2 us of Redis time per view) while a backlog is applied in large, well aggregated steps.
    #[arg(long, env = "TOPK_WORKER_BATCH_VIEWS", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub worker_batch_views: u64,
    /// How long a worker waits between the starts of two steps when the first emptied its partition's log,
    /// so that the next one is larger: views of a batch are summed per video and window before Redis sees
    /// them, and leader scores are written once per batch, so larger batches cost Redis less per view. It adds
    /// at most this much (and the next step's time) to the time before a view is ranked. A full batch (a
    /// backlog) is followed at once. 400 ms keeps freshness p99 under 500 ms at 100,000 views/s (500 ms
    /// gave 582 ms against 493 in one session) at no measurable cost under load, where steps run back to back.
    #[arg(long, env = "TOPK_WORKER_BATCH_WAIT_MS", default_value_t = 400)]
    pub worker_batch_wait_ms: u64,
    /// How long an entry may stay pending with another worker before it is claimed (that worker is presumed dead).
    #[arg(long, env = "TOPK_CLAIM_IDLE_MS", default_value_t = 30_000)]
    pub claim_idle_ms: u64,
    /// How often the retirer runs.
    #[arg(long, env = "TOPK_RETIRE_INTERVAL_MS", default_value_t = 250)]
    pub retire_interval_ms: u64,
    /// How long acknowledged log entries are kept for replay after a Redis rebuild. It must cover the time
    /// between a view and the snapshot of its minute (normally under two minutes); the log costs Redis memory
    /// for every view it holds.
    #[arg(long, env = "TOPK_LOG_RETENTION_SECS", default_value_t = 300)]
    pub log_retention_secs: u64,
    /// This worker's consumer name in the log's consumer group; default: unique per process.
    #[arg(long, env = "TOPK_CONSUMER_NAME")]
    pub consumer_name: Option<String>,
}

impl IngestConfig {
    /// The accepted bearer tokens (None: no authentication). Refuses a set but empty value rather than
    /// running open; the error never quotes the value.
    pub fn tokens(&self) -> anyhow::Result<Option<BearerTokens>> {
        self.token
            .as_ref()
            .map(|t| {
                BearerTokens::parse(t.expose())
                    .map_err(|why| anyhow::anyhow!("TOPK_INGEST_TOKEN / --token: {why}"))
            })
            .transpose()
    }

    /// The shortest `TOPK_IDEMPOTENCY_RETENTION_SECS` that keeps a retry safe: a minute, and twice the longest
    /// an attempt can take (the request timeout, or the Redis timeout). A key forgotten before its producer's
    /// retry arrives would store again the parts its first attempt stored.
    pub fn shortest_idempotency_retention_secs(&self) -> u64 {
        let longest_attempt_ms = self
            .http
            .request_timeout_ms
            .max(self.redis.redis_timeout_ms);
        (2 * longest_attempt_ms).div_ceil(1000).max(60)
    }

    /// Refuses settings that each parse but cannot work together.
    pub fn check(&self) -> anyhow::Result<()> {
        let shortest = self.shortest_idempotency_retention_secs();
        anyhow::ensure!(
            self.idempotency_retention_secs >= shortest,
            "TOPK_IDEMPOTENCY_RETENTION_SECS={} is too short: it must be at least {shortest} s (a minute, and \
             twice TOPK_REQUEST_TIMEOUT_MS or TOPK_REDIS_TIMEOUT_MS, whichever is longer), or a batch sent again \
             after its key was forgotten would be stored twice",
            self.idempotency_retention_secs
        );
        Ok(())
    }

    /// What the kafka role consumes; an error when `TOPK_KAFKA_BROKERS` is missing or librdkafka refuses a
    /// setting (the properties file's included).
    pub fn kafka_options(&self) -> anyhow::Result<crate::kafka::KafkaOptions> {
        let brokers = self
            .kafka
            .brokers
            .clone()
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("TOPK_INGEST_ROLE=kafka needs TOPK_KAFKA_BROKERS (--kafka-brokers)")
            })?;
        let properties = match &self.kafka.config_file {
            Some(path) => crate::kafka::read_properties(path).map_err(|e| {
                anyhow::anyhow!("TOPK_KAFKA_CONFIG_FILE (--kafka-config-file): {e:#}")
            })?,
            None => crate::kafka::KafkaProperties::default(),
        };
        let options = crate::kafka::KafkaOptions {
            brokers,
            topic: self.kafka.topic.clone(),
            group: self.kafka.group.clone(),
            session_timeout: Duration::from_millis(u64::from(self.kafka.session_timeout_ms)),
            max_records: 1_000,
            batch_wait: Duration::from_millis(50),
            max_batch_len: self.max_batch_len,
            properties,
            offsets_check_every: Duration::from_secs(30),
        };
        crate::kafka::client::check(&options)?;
        Ok(options)
    }

    /// [`Self::event_time_max_skew_secs`] in milliseconds.
    pub fn event_time_max_skew_ms(&self) -> i64 {
        i64::try_from(self.event_time_max_skew_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// [`Self::worker_batch_wait_ms`] as a duration.
    pub fn worker_batch_wait(&self) -> Duration {
        Duration::from_millis(self.worker_batch_wait_ms)
    }

    /// [`Self::claim_idle_ms`] as a duration.
    pub fn claim_idle(&self) -> Duration {
        Duration::from_millis(self.claim_idle_ms)
    }

    /// [`Self::retire_interval_ms`] as a duration.
    pub fn retire_interval(&self) -> Duration {
        Duration::from_millis(self.retire_interval_ms)
    }

    /// The consumer name: configured, or host, process id and a random suffix (a restarted process is a new
    /// consumer; what the old one left pending is claimed after `claim_idle`).
    pub fn consumer(&self) -> String {
        self.consumer_name.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
            format!(
                "{host}-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            )
        })
    }
}
