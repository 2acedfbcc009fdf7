//! `kafka`: views/s from a Kafka topic into the applied windows through the kafka role, beside HTTP ingest of
//! the same bodies in the same run (`kafka_ingest`, baseline: HTTP). Only with `--only kafka`: it needs the
//! tests' broker, tansu (`scripts/lib.sh`'s `ensure_tansu` builds it once).
//!
//! Each repeat sends the workload's bodies over HTTP for the load's duration and waits until the workers have
//! applied them; then produces the same number of bodies, each one record (a JSON array of views, as a POST
//! body), to a topic of its own, starts a kafka role process, and times from its first forwarded record to
//! the last record forwarded and applied. Production is not timed: the figure is topk's, not the producer's.

use super::ingest::{self, wait_drained};
use super::{progress_of_run, redis_quiet, Bodies};
use crate::config::BenchConfig;
use crate::figures::{figure, Better, Figure};
use crate::stack::Services;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use topk_core::config::RedisConfig;
use topk_core::redis::RedisStore;
use topk_testkit::KafkaBroker;

/// Partitions of the benchmark's topic.
const TOPIC_PARTITIONS: u32 = 4;

/// The records the kafka role has handled, from its metrics on its admin address (None while it does not
/// answer yet): forwarded or replayed (a step retried after a lost Redis reply counts what that reply's
/// script took as replayed).
async fn forwarded(http: &reqwest::Client, admin: &str) -> Option<u64> {
    let text = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let handled: Vec<u64> = text
        .lines()
        .filter(|l| {
            l.starts_with("topk_kafka_records_total")
                && (l.contains("outcome=\"forwarded\"") || l.contains("outcome=\"replayed\""))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as u64)
        .collect();
    (!handled.is_empty()).then(|| handled.iter().sum())
}

pub async fn kafka(
    cfg: &BenchConfig,
    services: &Services,
    store: &RedisStore,
    redis: &RedisConfig,
    bodies: Bodies,
) -> anyhow::Result<Vec<Figure>> {
    let http = reqwest::Client::new();
    let broker = tokio::task::spawn_blocking(KafkaBroker::start).await?;
    let (mut over_kafka, mut over_http) = (Vec::new(), Vec::new());
    for r in 0..cfg.repeats {
        let bar = progress_of_run("ingest over HTTP (the baseline)", r, cfg);
        redis_quiet(store).await?;
        let (accepted, took) =
            ingest::over_http(cfg, services, store, &http, bodies.clone()).await?;
        over_http.push(accepted as f64 / took.as_secs_f64());
        bar.finish_and_clear();

        // As many bodies as HTTP took, each one record.
        let bar = progress_of_run("producing the same views to Kafka", r, cfg);
        let topic = format!("views-{r}");
        let created = {
            let (broker_topic, partitions) = (topic.clone(), TOPIC_PARTITIONS);
            let b = &broker;
            std::thread::scope(|s| s.spawn(|| b.create_topic(&broker_topic, partitions)).join())
        };
        created.map_err(|_| anyhow::anyhow!("creating the topic failed"))?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("message.timeout.ms", "60000")
            .set("linger.ms", "5")
            .create()?;
        let mut produced_views = 0u64;
        let mut records = Vec::new();
        let mut i = 0usize;
        while produced_views < accepted {
            let (body, views) = &bodies[i % bodies.len()];
            records.push((i, body.clone()));
            produced_views += views;
            i += 1;
        }
        let sends = records.iter().map(|(i, body)| {
            let key = i.to_string();
            let producer = producer.clone();
            let topic = topic.clone();
            let body = body.clone();
            async move {
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(body.as_ref()),
                        Duration::from_secs(60),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("producing record {key}: {e}"))
            }
        });
        futures::future::try_join_all(sends).await?;
        let record_count = records.len() as u64;
        let views_per_record = produced_views as f64 / record_count as f64;
        bar.finish_and_clear();

        let bar = progress_of_run("the kafka role forwarding them", r, cfg);
        redis_quiet(store).await?;
        let admin = format!("127.0.0.1:{}", crate::stack::free_port()?);
        let mut role = Command::new(crate::stack::binary("topk-ingest")?)
            .env("TOPK_REDIS_URL", redis.redis_url.expose())
            .env("TOPK_KEY_PREFIX", &redis.key_prefix)
            .env("TOPK_PARTITIONS", redis.partitions.to_string())
            .env("TOPK_INGEST_ROLE", "kafka")
            .env("TOPK_KAFKA_BROKERS", broker.bootstrap())
            .env("TOPK_KAFKA_TOPIC", &topic)
            .env("TOPK_KAFKA_GROUP", format!("bench-{r}"))
            .env("TOPK_ADMIN_ADDR", &admin)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(600);
        // Timed from the first record forwarded: joining the group is not ingest.
        let (start, first) = loop {
            match forwarded(&http, &admin).await {
                Some(n) if n > 0 => break (Instant::now(), n),
                _ => {}
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the kafka role forwarded nothing in 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        while forwarded(&http, &admin).await.unwrap_or(0) < record_count {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the kafka role did not forward everything in 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        wait_drained(store).await?;
        let views = (record_count - first) as f64 * views_per_record;
        over_kafka.push(views / start.elapsed().as_secs_f64());
        let _ = role.kill();
        let _ = role.wait();
        bar.finish_and_clear();
    }
    Ok(vec![figure(
        "kafka_ingest",
        "views/s",
        Better::Higher,
        &over_kafka,
        Some(&over_http),
    )])
}
