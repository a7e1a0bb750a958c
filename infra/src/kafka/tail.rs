//! Reading the topic as an analyst does (`treehole events tail --source kafka`).

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaError, KafkaSettings, Record, decode, partitions_of};

/// Where to start and when to stop.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// Start at the oldest record of every partition (else only new records are read).
    pub from_beginning: bool,
    /// Stop once no record arrived for this long (else follow forever).
    pub idle_timeout: Option<Duration>,
    /// Stop after this many records.
    pub max: Option<u64>,
}

/// Reads every partition of the topic (no consumer group: nothing is committed, any number of
/// analysts can read at once) and hands each record to `each`, in each partition's order.
/// Returns how many records were read.
pub async fn tail(
    settings: &KafkaSettings,
    options: &TailOptions,
    mut each: impl FnMut(Record) -> std::io::Result<()>,
) -> Result<u64, KafkaError> {
    let group = format!("treehole.tail.{}", uuid::Uuid::new_v4().simple());
    let consumer: StreamConsumer = settings
        .client_config(&[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ])
        .create()
        .map_err(|e| KafkaError::Config(e.to_string()))?;
    let partitions = partitions_of(&consumer, settings, Duration::from_secs(10))?;
    let start = if options.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        let p = i32::try_from(p).map_err(|e| KafkaError::Broker(e.to_string()))?;
        list.add_partition_offset(&settings.topic, p, start)
            .map_err(|e| KafkaError::Broker(e.to_string()))?;
    }
    consumer
        .assign(&list)
        .map_err(|e| KafkaError::Broker(e.to_string()))?;
    let mut read = 0u64;
    while options.max.is_none_or(|m| read < m) {
        let next = match options.idle_timeout {
            Some(idle) => match tokio::time::timeout(idle, consumer.recv()).await {
                Ok(r) => r,
                Err(_) => break,
            },
            None => consumer.recv().await,
        };
        let message = next.map_err(|e| KafkaError::Broker(e.to_string()))?;
        match decode(&message) {
            Ok(record) => {
                each(record).map_err(|e| KafkaError::Broker(format!("output: {e}")))?;
                read += 1;
            }
            Err(reason) => tracing::warn!(%reason, "skipping a record that is not an event"),
        }
    }
    Ok(read)
}
