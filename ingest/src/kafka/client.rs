//! The Kafka consumer's settings: topk's own (those its guarantees rest on), then the operator's librdkafka
//! properties from `TOPK_KAFKA_CONFIG_FILE` (SASL, a client id, fetch sizes, poll interval), checked by
//! librdkafka at start; the consumer, which logs its group's rebalances; and the offset commits.

use super::KafkaOptions;
use super::{KafkaOffset, KafkaPartition};
use anyhow::Context;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::Path;

/// Properties topk sets itself, with what sets them: a properties file may not change them.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "TOPK_KAFKA_BROKERS"),
    ("metadata.broker.list", "TOPK_KAFKA_BROKERS"),
    ("group.id", "TOPK_KAFKA_GROUP"),
    ("session.timeout.ms", "TOPK_KAFKA_SESSION_TIMEOUT_MS"),
    (
        "enable.auto.commit",
        "topk (offsets are committed once the records are in the log, never before)",
    ),
];

/// librdkafka consumer properties from the operator, in file order. Values may be secrets (a SASL password):
/// only names are ever shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(Vec<(String, String)>);

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

impl KafkaProperties {
    /// The properties' names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }
}

/// Reads a properties file: `name=value` lines (spaces around either trimmed), blank lines and lines that
/// start with `#` or `!` skipped, as Kafka's own `.properties` files. A line without `=`, a name given twice,
/// or a property topk sets itself is refused, naming the line.
pub fn read_properties(path: &Path) -> anyhow::Result<KafkaProperties> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut properties: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', '!']) {
            continue;
        }
        let at = || format!("{} line {}", path.display(), i + 1);
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{}: expected name=value", at()))?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            anyhow::bail!("{}: a property without a name", at());
        }
        if let Some((_, owner)) = OWNED.iter().find(|(owned, _)| *owned == name) {
            anyhow::bail!("{}: {name} is set by {owner}, not by this file", at());
        }
        if properties.iter().any(|(seen, _)| seen == name) {
            anyhow::bail!("{}: {name} is given twice", at());
        }
        properties.push((name.to_owned(), value.to_owned()));
    }
    Ok(KafkaProperties(properties))
}

/// topk's consumer settings, then the operator's properties.
pub fn client_config(options: &KafkaOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.brokers)
        .set("group.id", &options.group)
        // Offsets are committed after the records are in the log, never before.
        .set("enable.auto.commit", "false")
        // A new group starts at the topic's start: history is backfilled at each record's time.
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            options.session_timeout.as_millis().to_string(),
        );
    for (name, value) in &options.properties.0 {
        config.set(name, value);
    }
    config
}

/// Has librdkafka check every setting without connecting anywhere: an unknown property or a bad value is
/// refused at start, not when the first connection fails.
pub fn check(options: &KafkaOptions) -> anyhow::Result<()> {
    client_config(options)
        .create_native_config()
        .map(drop)
        .map_err(|e| anyhow::anyhow!("the Kafka consumer's settings (TOPK_KAFKA_CONFIG_FILE): {e}"))
}

/// The source's consumer: a [`StreamConsumer`] that logs what its group does with it.
pub type SourceConsumer = StreamConsumer<GroupEvents>;

/// Logs the group's rebalances: which partitions this consumer now reads, at info, so that an operator sees
/// partitions move. (A failed asynchronous commit is logged by librdkafka itself, as a `COMMITFAIL`
/// warning: rdkafka hands topk no result for it.)
pub struct GroupEvents;

impl ClientContext for GroupEvents {}

impl ConsumerContext for GroupEvents {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| {
            list.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(",")
        };
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(partitions = %partitions(list), "Kafka partitions assigned")
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = %partitions(list), "Kafka partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "Kafka rebalance failed"),
        }
    }
}

/// A consumer in `options.group`, subscribed to `options.topic`, that commits only when told.
pub fn consumer(options: &KafkaOptions) -> anyhow::Result<SourceConsumer> {
    let consumer: SourceConsumer = client_config(options)
        .create_with_context(GroupEvents)
        .context("create the Kafka consumer (TOPK_KAFKA_BROKERS, TOPK_KAFKA_CONFIG_FILE)")?;
    consumer
        .subscribe(&[&options.topic])
        .with_context(|| format!("subscribe to the Kafka topic {:?}", options.topic))?;
    Ok(consumer)
}

/// Commits `offsets` (the next offset to read, per partition) of the partitions assigned to this consumer now:
/// a partition revoked since its records were forwarded belongs to another member, whose newer offset an
/// old one would overwrite (making it read that stretch again). A failed or skipped commit only means that a
/// later owner reads those records again, and the logs drop them: it is logged, not fatal.
pub(super) fn commit(
    consumer: &SourceConsumer,
    topic: &str,
    offsets: &BTreeMap<KafkaPartition, KafkaOffset>,
    mode: CommitMode,
) {
    let assigned = match consumer.assignment() {
        Ok(assigned) => assigned,
        Err(e) => {
            tracing::warn!(error = %e, "reading the Kafka assignment failed; offsets not committed");
            return;
        }
    };
    let mut list = TopicPartitionList::new();
    for (KafkaPartition(partition), KafkaOffset(next)) in offsets {
        if assigned.find_partition(topic, *partition).is_none() {
            continue;
        }
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::warn!(error = %e, partition, "bad Kafka offset to commit");
        }
    }
    if list.count() == 0 {
        return;
    }
    if let Err(e) = consumer.commit(&list, mode) {
        tracing::warn!(error = %e, "committing Kafka offsets failed; those records will be read again and dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> anyhow::Result<KafkaProperties> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        read_properties(file.path())
    }

    #[test]
    fn a_properties_file_is_read_as_kafka_writes_them() {
        let p = read(
            "# SASL\n\n security.protocol = SASL_PLAINTEXT\n! a comment\nsasl.password=a=b c\nclient.id=topk\n",
        )
        .unwrap();
        assert_eq!(
            p.0,
            [
                ("security.protocol".to_owned(), "SASL_PLAINTEXT".to_owned()),
                ("sasl.password".to_owned(), "a=b c".to_owned()),
                ("client.id".to_owned(), "topk".to_owned()),
            ]
        );
        // Values never show.
        assert_eq!(
            format!("{p:?}"),
            r#"["security.protocol", "sasl.password", "client.id"]"#
        );
    }

    #[test]
    fn a_bad_properties_file_is_refused_naming_the_line() {
        for (text, why) in [
            ("client.id=a\nnonsense\n", "line 2: expected name=value"),
            ("=x\n", "line 1: a property without a name"),
            (
                "group.id=other\n",
                "line 1: group.id is set by TOPK_KAFKA_GROUP",
            ),
            (
                "enable.auto.commit=true\n",
                "line 1: enable.auto.commit is set by topk",
            ),
            ("bootstrap.servers=x:1\n", "TOPK_KAFKA_BROKERS"),
            (
                "client.id=a\n# c\nclient.id=b\n",
                "line 3: client.id is given twice",
            ),
        ] {
            let err = read(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
        let missing = read_properties(Path::new("/nonexistent/kafka.properties"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("kafka.properties"), "{missing}");
    }
}
