//! The kafka role over TLS and with SASL: librdkafka (built with OpenSSL) checks the broker's certificate
//! against the CA that the role's properties file names, and authenticates with the SCRAM credentials it
//! names, never logging them.

use super::{consume_until, kafka_options, log_entries, produce_via, T0, TOPIC};
use rdkafka::config::ClientConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topk_core::redis::RedisStore;
use topk_ingest::backpressure::Backlog;
use topk_ingest::kafka::{self, KafkaOptions};
use topk_testkit::fixtures::store;
use topk_testkit::{wait_until, KafkaBroker, LogCapture, TlsCerts};

/// `options` with the librdkafka properties of `text` (a `TOPK_KAFKA_CONFIG_FILE`'s content), read as the
/// role reads its file.
fn with_properties(options: KafkaOptions, text: &str) -> KafkaOptions {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    KafkaOptions {
        properties: kafka::read_properties(file.path()).unwrap(),
        ..options
    }
}

/// Runs the role with `options` until a connection of it is refused (`refusal` appears once more in
/// `reports`: the role's log or the broker's), then checks that it forwarded nothing. Records come only over
/// a connection that was not refused; once one was, the role has tried, and every later try meets the same
/// certificate or password, so no wall time needs to pass besides.
async fn reads_nothing(
    store: &RedisStore,
    options: KafkaOptions,
    reports: impl Fn() -> String,
    refusal: &str,
    why: &str,
) {
    let seen_before = reports().matches(refusal).count();
    let stop = CancellationToken::new();
    let task = tokio::spawn(kafka::run(
        store.writer(),
        options,
        Arc::new(Backlog::new(0)),
        stop.clone(),
    ));
    wait_until(
        format!("the role to report {refusal:?}"),
        Duration::from_secs(30),
        || async {
            let text = reports();
            match text.matches(refusal).count() > seen_before {
                true => Ok(()),
                false => Err(text),
            }
        },
    )
    .await;
    assert_eq!(log_entries(store).await, 0, "{why}");
    stop.cancel();
    task.await.unwrap().unwrap();
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
    let trusting = |ca: &std::path::Path| {
        with_properties(
            kafka_options(&broker, "tls"),
            &format!("security.protocol=ssl\nssl.ca.location={}\n", ca.display()),
        )
    };

    let other = TlsCerts::new();
    // librdkafka reports a certificate it refuses only to its own logger; the TLS front of the broker logs
    // the handshake the role broke off.
    reads_nothing(
        &store,
        trusting(&other.ca),
        || broker.log(),
        "SSL_accept",
        "read through an untrusted certificate",
    )
    .await;
    consume_until(&store, trusting(&certs.ca), || async {
        log_entries(&store).await == 1
    })
    .await;
}

/// With `security.protocol=sasl_plaintext`, SCRAM-SHA-512 and a user's name and password in
/// `TOPK_KAFKA_CONFIG_FILE`'s properties, the role reads a broker that requires every client to
/// authenticate; with a wrong password it reads nothing, and no password ever reaches its log.
#[tokio::test]
async fn the_kafka_role_authenticates_with_sasl_scram_and_never_logs_the_password() {
    const PASSWORD: &str = "right-password-4f1c";
    const WRONG: &str = "wrong-password-9a2e";
    let broker = KafkaBroker::start_sasl(&[("topk", PASSWORD)], &[(TOPIC, 1)]);
    let store = store("kafka_sasl", 2).await;
    let (logs, _capture) = LogCapture::install();
    let as_topk = |password: &str| {
        format!(
            "security.protocol=sasl_plaintext\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=topk\n\
             sasl.password={password}\n"
        )
    };
    let mut producer = ClientConfig::new();
    for line in as_topk(PASSWORD).lines() {
        let (name, value) = line.split_once('=').unwrap();
        producer.set(name, value);
    }
    let record = (T0, Some(r#"{"videoId": "with-sasl"}"#.to_owned()));
    produce_via(producer, &broker, TOPIC, 0, &[record]).await;

    let options =
        |password: &str| with_properties(kafka_options(&broker, "sasl"), &as_topk(password));
    reads_nothing(
        &store,
        options(WRONG),
        || logs.text(),
        "Authentication failure",
        "read with a wrong password",
    )
    .await;
    consume_until(&store, options(PASSWORD), || async {
        log_entries(&store).await == 1
    })
    .await;
    let logged = logs.text();
    assert!(
        logged.contains("Authentication failure"),
        "the wrong password is reported: {logged}"
    );
    assert!(
        !logged.contains(PASSWORD) && !logged.contains(WRONG),
        "a password in the log: {logged}"
    );
}
