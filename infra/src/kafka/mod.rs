//! The Kafka event log: the relay that publishes the store's events to a topic, and the source
//! that feeds projectors from it (ARCHITECTURE.md §2-§4).
//!
//! The store stays the log of record; the topic is a copy that everything downstream can read at
//! scale. Every record is one §2 envelope:
//! - key: the stream id (so one stream's events stay in one partition, in version order);
//! - value: the envelope's JSON, exactly as `treehole events export --raw` writes it;
//! - headers: `type` (the event type), `position` (decimal) and `previous-position` (decimal:
//!   the position of the event the relay published just before this one, 0 for the first).
//!
//! `previous-position` chains all records of the topic into the store's order, across
//! partitions: a consumer that holds every partition can apply them in exactly the store's
//! position order, and knows when one is missing rather than guessing from gaps. Delivery is at
//! least once: after a relay crash some records appear twice (same content, same chain), and
//! consumers drop what is not beyond their checkpoint. Kafka transactions are not used: the
//! brokers we test against do not isolate them, and position de-duplication makes them
//! unnecessary.

mod relay;
mod source;
mod tail;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use domain::{Envelope, Position, StoredEvent};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::types::RDKafkaErrorCode;

pub use relay::{Relay, RelayStatus};
pub use source::KafkaSource;
pub use tail::{TailOptions, tail};

/// Where the topic lives and how clients talk to it.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    pub topic: String,
    /// Partitions of the topic when the relay creates it.
    pub partitions: i32,
    /// Replication factor of the topic when the relay creates it.
    pub replication_factor: i32,
    /// Consumer groups of Kafka-fed projectors are `<prefix><projection>`.
    pub group_prefix: String,
    /// librdkafka options passed through as they are (e.g. `security.protocol`,
    /// `session.timeout.ms`); they override the defaults set here.
    pub options: BTreeMap<String, String>,
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            partitions: 1,
            replication_factor: 1,
            group_prefix: "treehole.projector.".into(),
            options: BTreeMap::new(),
        }
    }

    /// A client configuration with `defaults` under the operator's pass-through options.
    pub(crate) fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        for (k, v) in &self.options {
            config.set(k, v);
        }
        config
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: invalid configuration: {0}")]
    Config(String),
    #[error("kafka: cannot reach the brokers at {brokers}: {reason}")]
    Unreachable { brokers: String, reason: String },
    #[error("kafka: {0}")]
    Broker(String),
    #[error("kafka relay: event store: {0}")]
    Store(String),
}

/// Where the relay keeps its checkpoint: the position of the last event the broker acknowledged.
#[async_trait]
pub trait RelayCheckpoints: Send + Sync + 'static {
    async fn relay_checkpoint(&self, name: &str) -> Result<Position, projections::ReadModelError>;
    /// Moves the checkpoint forward (never back).
    async fn save_relay_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> Result<(), projections::ReadModelError>;
}

/// The partition count of the topic; fails if the brokers do not answer in `timeout`.
pub(crate) fn partitions_of<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    settings: &KafkaSettings,
    timeout: Duration,
) -> Result<usize, KafkaError> {
    let unreachable = |reason: String| KafkaError::Unreachable {
        brokers: settings.brokers.clone(),
        reason,
    };
    let metadata = consumer
        .fetch_metadata(Some(&settings.topic), timeout)
        .map_err(|e| unreachable(e.to_string()))?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == settings.topic)
        .ok_or_else(|| KafkaError::Broker(format!("topic {} not found", settings.topic)))?;
    if let Some(e) = topic.error() {
        return Err(KafkaError::Broker(format!(
            "topic {}: {:?}",
            settings.topic,
            RDKafkaErrorCode::from(e)
        )));
    }
    Ok(topic.partitions().len())
}

/// Creates the topic unless it exists (through the admin API: brokers need not auto-create).
pub async fn ensure_topic(settings: &KafkaSettings) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config(&[])
        .create()
        .map_err(|e| KafkaError::Config(e.to_string()))?;
    let created = create_topic(&admin, settings).await;
    // Dropping an admin client joins its polling thread, which looks for a stop every 100 ms:
    // a blocking wait of up to 100 ms (it was a fifth of a relay's catch-up of 100 000
    // events), done on a blocking thread instead of this task's worker.
    drop(tokio::task::spawn_blocking(move || drop(admin)));
    created
}

async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    settings: &KafkaSettings,
) -> Result<(), KafkaError> {
    let topic = NewTopic::new(
        &settings.topic,
        settings.partitions,
        TopicReplication::Fixed(settings.replication_factor),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        admin
            .create_topics([&topic], &options)
            .await
            .map_err(|e| KafkaError::Unreachable {
                brokers: settings.brokers.clone(),
                reason: e.to_string(),
            })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::Broker(format!(
                    "cannot create topic {name}: {code}"
                )));
            }
        }
    }
    Ok(())
}

pub const HEADER_TYPE: &str = "type";
pub const HEADER_POSITION: &str = "position";
pub const HEADER_PREVIOUS: &str = "previous-position";

/// The headers of the record that carries `event`, whose value [`StoredEvent::write_json`]
/// writes: the envelope's JSON as `serde_json` writes it for the stored row.
pub(crate) fn headers(event: &StoredEvent<'_>, previous: Position) -> OwnedHeaders {
    let (mut position, mut before) = ([0; 20], [0; 20]);
    OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: HEADER_TYPE,
            value: Some(event.event_type),
        })
        .insert(Header {
            key: HEADER_POSITION,
            value: Some(decimal(event.position, &mut position)),
        })
        .insert(Header {
            key: HEADER_PREVIOUS,
            value: Some(decimal(previous, &mut before)),
        })
}

/// `n` in decimal, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// A record read back: the envelope and the position published before it.
#[derive(Debug, Clone)]
pub struct Record {
    pub envelope: Envelope,
    pub previous: Position,
    pub partition: i32,
    pub offset: i64,
}

/// Reads a record written by [`encode`].
pub fn decode<M: Message>(message: &M) -> Result<Record, String> {
    let payload = message.payload().ok_or("record without a value")?;
    let envelope: Envelope =
        serde_json::from_slice(payload).map_err(|e| format!("not an event envelope: {e}"))?;
    let header = |name: &str| -> Option<String> {
        let headers = message.headers()?;
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let previous = header(HEADER_PREVIOUS)
        .ok_or_else(|| format!("record without a {HEADER_PREVIOUS} header"))?
        .parse::<Position>()
        .map_err(|e| format!("bad {HEADER_PREVIOUS} header: {e}"))?;
    if previous >= envelope.position {
        return Err(format!(
            "{HEADER_PREVIOUS} {previous} is not before position {}",
            envelope.position
        ));
    }
    Ok(Record {
        envelope,
        previous,
        partition: message.partition(),
        offset: message.offset(),
    })
}
