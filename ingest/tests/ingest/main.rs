//! Ingest against a real redis-server, one integration binary.
//!
//! # Layout
//! - [`end_to_end`]: views over HTTP to the API's rankings in every window, and every class of bad input.
//! - [`event_time`]: `"at"` over HTTP: dated views count where they happened, bad times refuse the batch.
//! - [`defences`]: the receiver's backpressure, token rotation, and tokens kept out of the logs.
//! - [`supervision`]: a background loop that dies stops the process with its cause.
//! - [`retries`]: a batch sent again under its `Idempotency-Key` counts once.
//! - [`operations`]: metrics agree with the traffic, bad settings are refused at start.
//! - [`readiness`]: `/readyz` follows Redis for the API and ingest, Redis and Postgres for the snapshotter; a
//!   Postgres outage degrades history only; an ingest started before Redis serves its health at once.
//! - [`cluster`]: Redis Cluster under faults: a primary killed, a slot migrated live, a node frozen.
//! - [`kafka`]: the Kafka client against a real broker (tansu): timestamps kept, a group resumes after its
//!   committed offsets; the kafka role forwards each record once at its own time, dead-letters malformed
//!   ones, adds nothing on a full replay, and runs from its settings.
//! - [`faults`]: the fault suite runs the real processes and breaks them, Redis and Postgres on purpose.

mod cluster;
mod defences;
mod end_to_end;
mod event_time;
mod faults;
mod kafka;
mod operations;
mod readiness;
mod retries;
mod supervision;

/// Ingest's settings as its command line gives them: 2 partitions on the shared Redis under `prefix`, then
/// `extra`.
fn ingest_config(prefix: &str, extra: &[&str]) -> topk_ingest::config::IngestConfig {
    use clap::Parser;
    let mut args = vec![
        "topk-ingest".to_owned(),
        format!("--redis-url={}", topk_testkit::servers().redis_url),
        format!("--key-prefix={prefix}"),
        "--partitions=2".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    topk_ingest::config::IngestConfig::try_parse_from(args).unwrap()
}
