//! The relay's records, read back byte for byte from a real broker
//! (`TREEHOLE_TEST_KAFKA_BROKERS`, the in-memory tansu that scripts/test starts; without it the
//! test says it was skipped): key, value and headers are what the module docs of
//! `infra::kafka` define, the value being `serde_json`'s JSON of the raw envelope.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use commands::{EventStore, ExpectedVersion, StreamWrite};
use domain::{Metadata, NewEvent, StreamId};
use infra::event_store::SqliteEventStore;
use infra::kafka::{KafkaSettings, Relay};
use infra::read_model::SqliteReadModels;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use uuid::Uuid;

/// More than one round of the relay (10 000 events), so that `previous-position` is seen
/// crossing from one round to the next.
const EVENTS: usize = 10_500;

/// Key, value and headers of one record.
type Published = (Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>);

fn brokers() -> Option<String> {
    let brokers = std::env::var("TREEHOLE_TEST_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty());
    if brokers.is_none() {
        use std::io::Write;
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("kafka_relay");
        let _ = std::io::stderr().write_all(
            format!("test-skipped: {test}: TREEHOLE_TEST_KAFKA_BROKERS not set\n").as_bytes(),
        );
    }
    brokers
}

fn events(n: usize) -> Vec<StreamWrite> {
    let streams = [
        StreamId::parse("post-1").unwrap(),
        StreamId::parse(r#"odd-"quoted"\stream"#).unwrap(),
        StreamId::parse(format!("user-{}", Uuid::now_v7())).unwrap(),
    ];
    (0..n)
        .map(|i| StreamWrite {
            stream: streams[i % streams.len()].clone(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                typed: Default::default(),
                event_id: Uuid::now_v7(),
                event_type: if i % 7 == 0 {
                    "Odd \"type\" \\ \n\u{1} é 图".into()
                } else {
                    "CommentAdded".into()
                },
                schema: 1 + (i % 2) as u32,
                occurred_at: Utc
                    .timestamp_millis_opt(1_790_000_000_000 + i as i64)
                    .unwrap(),
                data: if i % 5 == 0 {
                    json!(null)
                } else {
                    json!({"n": i, "body": "图书馆 \"x\" \u{1}\n", "list": [1.5, null, true]})
                },
                metadata: Metadata {
                    correlation_id: Some(format!("c-{i}")),
                    causation_id: None,
                    actor: (i % 3 == 0).then(|| "user-1".to_owned()),
                },
            }],
        })
        .collect()
}

/// The records the relay must have published for the store's log, in order.
async fn expected(store: &dyn EventStore) -> Vec<Published> {
    let mut out = Vec::new();
    let mut previous = 0;
    loop {
        let page = store.read_all_raw(previous, 1000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        for e in page {
            out.push((
                e.stream.as_str().as_bytes().to_vec(),
                serde_json::to_vec(&e).unwrap(),
                vec![
                    ("type".to_owned(), e.event_type.as_bytes().to_vec()),
                    ("position".to_owned(), e.position.to_string().into_bytes()),
                    (
                        "previous-position".to_owned(),
                        previous.to_string().into_bytes(),
                    ),
                ],
            ));
            previous = e.position;
        }
    }
}

/// Every record of the (one-partition) topic, in offset order.
fn published(brokers: &str, topic: &str, count: usize) -> Vec<Published> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("treehole.test.{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&partitions).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.unwrap();
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            message.key().unwrap_or_default().to_vec(),
            message.payload().unwrap_or_default().to_vec(),
            headers,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_the_raw_envelopes_byte_for_byte() {
    let Some(brokers) = brokers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteEventStore::open(&dir.path().join("events.db"))
            .await
            .unwrap(),
    );
    let checkpoints = Arc::new(
        SqliteReadModels::open(&dir.path().join("readmodels.db"))
            .await
            .unwrap(),
    );
    let writes = events(EVENTS);
    for chunk in writes.chunks(1000) {
        store.append_many(chunk.to_vec(), None).await.unwrap();
    }
    let topic = format!("treehole.test.relay.{}", Uuid::new_v4().simple());
    let relay = Relay::new(
        KafkaSettings::new(&brokers, &topic),
        store.clone(),
        checkpoints,
    )
    .unwrap();
    let head = store.head().await.unwrap();
    assert_eq!(relay.catch_up().await.unwrap(), head);

    // A second catch-up publishes only what was appended since, chained to what was before.
    store.append_many(events(3), None).await.unwrap();
    let head = store.head().await.unwrap();
    assert_eq!(relay.catch_up().await.unwrap(), head);

    let expected = expected(store.as_ref()).await;
    assert_eq!(expected.len(), EVENTS + 3);
    let got = published(&brokers, &topic, expected.len());
    assert_eq!(got.len(), expected.len(), "records in the topic");
    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(
            got,
            expected,
            "record {i}: {} against {}",
            String::from_utf8_lossy(&got.1),
            String::from_utf8_lossy(&expected.1)
        );
    }
}
