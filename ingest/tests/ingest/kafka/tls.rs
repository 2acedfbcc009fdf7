//! The kafka role over TLS: librdkafka (built with OpenSSL) checks the broker's certificate against the CA
//! that the role's properties file names.

use super::{consume_until, kafka_options, log_entries, produce_via, T0, TOPIC};
use rdkafka::config::ClientConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_ingest::backpressure::Backlog;
use topk_ingest::kafka::{self, KafkaOptions};
use topk_testkit::fixtures::store;
use topk_testkit::{KafkaBroker, TlsCerts};

/// A properties file for TLS to the broker, trusting `ca`.
fn tls_properties(ca: &std::path::Path) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!("security.protocol=ssl\nssl.ca.location={}\n", ca.display()),
    )
    .unwrap();
    file
}

/// With `security.protocol=ssl` and the CA in `TOPK_KAFKA_CONFIG_FILE`'s properties, the role reads a broker
/// that speaks TLS only; trusting another CA, it refuses the broker's certificate and forwards nothing.
#[tokio::test]
async fn the_kafka_role_reads_a_broker_over_tls_and_checks_its_certificate() {
    let certs = TlsCerts::new();
    let broker = KafkaBroker::start_tls(&certs);
    broker.create_topic(TOPIC, 1);
    let store = store("kafka_tls", 2).await;
    let mut producer = ClientConfig::new();
    producer
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", certs.ca.display().to_string());
    let record = (T0, Some(r#"{"videoId": "over-tls"}"#.to_owned()));
    produce_via(producer, &broker, TOPIC, 0, &[record]).await;

    // Another CA: the handshake fails, nothing is read.
    let other = TlsCerts::new();
    let wrong = tls_properties(&other.ca);
    let options = KafkaOptions {
        properties: kafka::read_properties(wrong.path()).unwrap(),
        ..kafka_options(&broker, "tls")
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(kafka::run(
        store.clone(),
        options,
        Arc::new(Backlog::new(0)),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        log_entries(&store).await,
        0,
        "read through an untrusted certificate"
    );
    stop.cancel();
    task.await.unwrap().unwrap();

    // The right CA: the record comes through.
    let right = tls_properties(&certs.ca);
    let options = KafkaOptions {
        properties: kafka::read_properties(right.path()).unwrap(),
        ..kafka_options(&broker, "tls")
    };
    consume_until(&store, options, || async { log_entries(&store).await == 1 }).await;
}
