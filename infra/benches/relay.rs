//! How fast the relay publishes the log to Kafka, against raw `rdkafka` production of the same
//! records in the same run.
//!
//! ```text
//! eval "$(scripts/kafka-tools)" && eval "$(scripts/kafka-start /tmp/benchkafka)"
//! cargo bench -p infra --bench relay                       # TREEHOLE_BENCH_EVENTS=100000
//! cargo bench -p infra --bench relay -- --events 20000 --json
//! scripts/kafka-stop /tmp/benchkafka
//! ```
//!
//! The broker is `TREEHOLE_BENCH_KAFKA_BROKERS`, else `TREEHOLE_TEST_KAFKA_BROKERS`; without
//! either the bench says so and succeeds. It
//!
//! 1. appends a synthetic log (comments of ~300 bytes, in batches) to a SQLite event store in a
//!    temporary directory;
//! 2. times `Relay::catch_up` publishing all of it to a fresh topic: reading the store, encoding
//!    envelopes and headers, producing with the idempotent producer, awaiting every
//!    acknowledgement and moving the checkpoint;
//! 3. times the baseline: a `FutureProducer` with the same settings (`enable.idempotence`,
//!    `acks=all`, `linger.ms=5`) producing the same keys, values and headers, read from memory,
//!    to another fresh topic, awaiting every acknowledgement;
//! 4. reads both topics' high watermarks to check that each holds every record.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use commands::{EventStore, ExpectedVersion, StreamWrite};
use domain::{Envelope, Metadata, NewEvent, StreamId};
use infra::event_store::SqliteEventStore;
use infra::kafka::{KafkaSettings, Relay};
use infra::read_model::SqliteReadModels;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use uuid::Uuid;

type BenchResult<T> = Result<T, Box<dyn Error>>;

const DEFAULT_EVENTS: usize = 100_000;
const APPEND_BATCH: usize = 1_000;

#[tokio::main]
async fn main() -> BenchResult<()> {
    let (events, json_out) = options()?;
    let Some(brokers) = [
        "TREEHOLE_BENCH_KAFKA_BROKERS",
        "TREEHOLE_TEST_KAFKA_BROKERS",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty())) else {
        println!("skipped: TREEHOLE_BENCH_KAFKA_BROKERS not set");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteEventStore::open(&dir.path().join("events.db")).await?);
    let checkpoints = Arc::new(SqliteReadModels::open(&dir.path().join("readmodels.db")).await?);
    write_log(store.as_ref(), events).await?;
    let log = read_log(store.as_ref()).await?;

    let run = Uuid::new_v4().simple().to_string();
    let relay_settings = KafkaSettings::new(&brokers, format!("treehole.bench.relay.{run}"));
    let relay = Relay::new(relay_settings.clone(), store.clone(), checkpoints)?;
    let started = Instant::now();
    let reached = relay.catch_up().await?;
    let relay_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        reached,
        log.len() as u64,
        "the relay did not publish everything"
    );

    let raw_settings = KafkaSettings::new(&brokers, format!("treehole.bench.raw.{run}"));
    infra::kafka::ensure_topic(&raw_settings).await?;
    let raw_secs = produce_raw(&raw_settings, &log).await?;

    for topic in [&relay_settings.topic, &raw_settings.topic] {
        let count = records_in(&brokers, topic).await?;
        assert!(
            count >= log.len() as i64,
            "{topic} holds {count} of {} events",
            log.len()
        );
    }
    let relay_rate = log.len() as f64 / relay_secs;
    let raw_rate = log.len() as f64 / raw_secs;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "events": log.len(),
                "relay_events_per_second": relay_rate,
                "raw_rdkafka_events_per_second": raw_rate,
                "ratio": relay_rate / raw_rate,
            }))?
        );
    } else {
        println!(
            "relay throughput, {} events of ~{} bytes",
            log.len(),
            average_size(&log)
        );
        println!(
            "  relay (store -> topic, acked, checkpointed) {relay_rate:>10.0} events/s  {relay_secs:.2} s"
        );
        println!(
            "  raw rdkafka production (baseline)          {raw_rate:>10.0} events/s  {raw_secs:.2} s"
        );
        println!(
            "  ratio relay / raw                          {:>10.3}",
            relay_rate / raw_rate
        );
    }
    Ok(())
}

fn options() -> BenchResult<(usize, bool)> {
    let mut events = match std::env::var("TREEHOLE_BENCH_EVENTS") {
        Ok(v) => v.parse()?,
        Err(_) => DEFAULT_EVENTS,
    };
    let mut json_out = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => events = args.next().ok_or("--events needs a number")?.parse()?,
            "--json" => json_out = true,
            _ => {}
        }
    }
    Ok((events, json_out))
}

/// Comments on 100 posts, as the comment events of a busy forum look in size.
async fn write_log(store: &dyn EventStore, events: usize) -> BenchResult<()> {
    let posts: Vec<StreamId> = (0..100)
        .map(|_| StreamId::parse(format!("post-{}", Uuid::now_v7())))
        .collect::<Result<_, _>>()?;
    let mut written = 0;
    while written < events {
        let n = APPEND_BATCH.min(events - written);
        let writes = (0..n)
            .map(|i| StreamWrite {
                stream: posts[(written + i) % posts.len()].clone(),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    typed: Default::default(),
                    event_id: Uuid::now_v7(),
                    event_type: "CommentAdded".into(),
                    schema: 1,
                    occurred_at: Utc::now(),
                    data: json!({
                        "comment_id": Uuid::now_v7(),
                        "author_id": Uuid::now_v7(),
                        "author_name": "Angry Alice",
                        "anonymous": true,
                        "is_host": false,
                        "body": "图书馆三楼的自习室今天人很多, the coffee machine is broken again",
                        "reply_to": null,
                    }),
                    metadata: Metadata {
                        correlation_id: Some(Uuid::now_v7().to_string()),
                        ..Metadata::default()
                    },
                }],
            })
            .collect();
        store.append_many(writes, None).await?;
        written += n;
    }
    Ok(())
}

async fn read_log(store: &dyn EventStore) -> BenchResult<Vec<Envelope>> {
    let mut log = Vec::new();
    loop {
        let page = store
            .read_all(log.last().map_or(0, |e: &Envelope| e.position), 10_000)
            .await?;
        if page.is_empty() {
            return Ok(log);
        }
        log.extend(page);
    }
}

fn average_size(log: &[Envelope]) -> usize {
    let total: usize = log
        .iter()
        .map(|e| serde_json::to_vec(e).map_or(0, |v| v.len()))
        .sum();
    total / log.len().max(1)
}

/// The same records the relay writes, produced straight from memory.
async fn produce_raw(settings: &KafkaSettings, log: &[Envelope]) -> BenchResult<f64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let records: Vec<(String, Vec<u8>, OwnedHeaders)> = log
        .iter()
        .zip(std::iter::once(0).chain(log.iter().map(|e| e.position)))
        .map(|(e, previous)| {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "type",
                    value: Some(e.event_type.as_str()),
                })
                .insert(Header {
                    key: "position",
                    value: Some(&e.position.to_string()),
                })
                .insert(Header {
                    key: "previous-position",
                    value: Some(&previous.to_string()),
                });
            (
                e.stream.as_str().to_owned(),
                serde_json::to_vec(e).expect("json"),
                headers,
            )
        })
        .collect();
    // Connected and holding its producer id before the clock starts, as the relay's producer
    // is by the time `catch_up` runs (it created the topic first).
    producer
        .send(
            FutureRecord::to(&settings.topic)
                .key("warm-up")
                .payload("{}"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    let started = Instant::now();
    // The same shape as the relay: 10 000 records in flight, then wait for all of them.
    for chunk in records.chunks(10_000) {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for (key, payload, headers) in chunk {
            let mut record = FutureRecord::to(&settings.topic)
                .key(key.as_str())
                .payload(payload.as_slice())
                .headers(headers.clone());
            loop {
                match producer.send_result(record) {
                    Ok(d) => {
                        deliveries.push(d);
                        break;
                    }
                    Err((_, r)) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }
        for d in deliveries {
            d.await?.map_err(|(e, _)| e)?;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Distinct positions in the topic, read back through the analysts' tail (the brokers'
/// watermarks are not a record count on every implementation).
async fn records_in(brokers: &str, topic: &str) -> BenchResult<i64> {
    let settings = KafkaSettings::new(brokers, topic);
    let options = infra::kafka::TailOptions {
        from_beginning: true,
        idle_timeout: Some(Duration::from_secs(3)),
        max: None,
    };
    let mut seen = std::collections::HashSet::new();
    infra::kafka::tail(&settings, &options, |r| {
        seen.insert(r.envelope.position);
        Ok(())
    })
    .await?;
    Ok(seen.len() as i64)
}
