//! `treehole relay`: tails the store and publishes every event to the topic, in position order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::EventStore;
use domain::{Position, StoredEvents};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError as RdError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use tokio::sync::watch;

use super::{KafkaError, KafkaSettings, RelayCheckpoints, ensure_topic, headers};

/// Events read from the store and handed to the producer per round; the checkpoint moves once
/// per round, after the broker acknowledged all of them. One round is in flight while the next
/// is read and produced (see BENCHMARKS.md for the rate).
const BATCH: usize = 10_000;

/// How long a caught-up relay waits for a notification before looking at the log anyway
/// (other processes may append to a shared SQLite file without notifying this one).
const POLL: Duration = Duration::from_secs(1);

/// What the relay is doing, for `/readyz`, `/admin/projections` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    pub topic: String,
    /// The checkpoint: every event up to here was acknowledged by the broker.
    pub position: Position,
    /// Records acknowledged since this process started.
    pub published: u64,
    /// The last failure (broker unreachable, delivery failed, store error), until the next
    /// acknowledged round clears it.
    pub last_error: Option<String>,
    /// Since when the relay has been failing, if it is.
    pub failing_since: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Receives librdkafka's client-level errors (e.g. all brokers down) so that the status shows
/// them while deliveries are still being retried inside the producer.
struct RelayContext {
    status: Arc<watch::Sender<RelayStatus>>,
}

impl ClientContext for RelayContext {
    fn error(&self, error: RdError, reason: &str) {
        tracing::warn!(error = %error, reason, "kafka client error");
        let message = format!("{error}: {reason}");
        self.status.send_modify(|s| fail(s, message));
    }
}

fn fail(status: &mut RelayStatus, message: String) {
    status.last_error = Some(message);
    status.failing_since.get_or_insert_with(Utc::now);
    status.updated_at = Utc::now();
}

type Producer_ = FutureProducer<RelayContext>;

/// Records handed to the producer and not yet known acknowledged.
struct Round {
    last: Position,
    deliveries: Vec<(Position, rdkafka::producer::DeliveryFuture)>,
}

/// Publishes the log to Kafka. The checkpoint (in the read-model store, see
/// [`RelayCheckpoints`]) only moves after the broker acknowledged every event up to it, so a
/// crash or an outage loses nothing: the relay resumes from the checkpoint and may publish some
/// events again, which consumers drop by position. The producer is idempotent
/// (`enable.idempotence`), so its own retries neither duplicate nor reorder records.
pub struct Relay {
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn RelayCheckpoints>,
    settings: KafkaSettings,
    producer: Mutex<Arc<Producer_>>,
    status: Arc<watch::Sender<RelayStatus>>,
}

impl Relay {
    pub fn new(
        settings: KafkaSettings,
        store: Arc<dyn EventStore>,
        checkpoints: Arc<dyn RelayCheckpoints>,
    ) -> Result<Self, KafkaError> {
        let status = Arc::new(watch::Sender::new(RelayStatus {
            topic: settings.topic.clone(),
            position: 0,
            published: 0,
            last_error: None,
            failing_since: None,
            updated_at: Utc::now(),
        }));
        let producer = Mutex::new(Arc::new(producer(&settings, &status)?));
        Ok(Self {
            store,
            checkpoints,
            settings,
            producer,
            status,
        })
    }

    pub fn status(&self) -> watch::Receiver<RelayStatus> {
        self.status.subscribe()
    }

    fn checkpoint_name(&self) -> String {
        format!("relay:{}", self.settings.topic)
    }

    /// Publishes forever. Failures are reported in the status and retried with backoff from the
    /// checkpoint.
    pub async fn run(&self) {
        let mut retry = Duration::from_millis(200);
        loop {
            let Err(e) = self.follow(&mut retry).await;
            tracing::warn!(error = %e, retry_in = ?retry, "relay failed; resuming from its checkpoint");
            self.status.send_modify(|s| fail(s, e.to_string()));
            self.renew_producer_if_fatal();
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(Duration::from_secs(30));
        }
    }

    /// Publishes everything the log holds, then returns the checkpoint.
    pub async fn catch_up(&self) -> Result<Position, KafkaError> {
        ensure_topic(&self.settings).await?;
        let checkpoint = self.load_checkpoint().await?;
        self.drain(checkpoint).await
    }

    /// Publishes the log as it grows: drains it, then waits for the head to move.
    async fn follow(&self, retry: &mut Duration) -> Result<std::convert::Infallible, KafkaError> {
        ensure_topic(&self.settings).await?;
        let mut checkpoint = self.load_checkpoint().await?;
        tracing::info!(topic = %self.settings.topic, checkpoint, "relay publishing");
        let mut head = self.store.watch();
        loop {
            head.borrow_and_update();
            let reached = self.drain(checkpoint).await?;
            if reached > checkpoint {
                *retry = Duration::from_millis(200);
            }
            checkpoint = reached;
            let _ = tokio::time::timeout(POLL, head.changed()).await;
        }
    }

    /// Publishes round after round until a read of the log comes back empty, keeping one
    /// round in flight while the next is read and produced, and moves the checkpoint as each
    /// round is acknowledged. The read of the next round runs while this one is produced and
    /// the previous one settles. Returns the checkpoint.
    async fn drain(&self, mut checkpoint: Position) -> Result<Position, KafkaError> {
        let mut read_to = checkpoint;
        let mut in_flight: Option<Round> = None;
        let mut reading = self.read_ahead(read_to);
        loop {
            let batch = reading
                .await
                .map_err(|e| KafkaError::Store(format!("a read of the log failed: {e}")))??;
            let Some(last) = batch.last_position() else {
                if let Some(r) = in_flight.take() {
                    checkpoint = self.settle(r).await?;
                }
                return Ok(checkpoint);
            };
            reading = self.read_ahead(last);
            let round = self.send_round(read_to, &batch).await?;
            read_to = last;
            if let Some(r) = in_flight.take() {
                checkpoint = self.settle(r).await?;
            }
            in_flight = Some(round);
        }
    }

    /// Starts reading the events after `after`, as stored: their records are written from the
    /// stored text, nothing is decoded and encoded again.
    fn read_ahead(
        &self,
        after: Position,
    ) -> tokio::task::JoinHandle<Result<StoredEvents, KafkaError>> {
        let store = self.store.clone();
        tokio::spawn(async move {
            store
                .read_all_stored(after, BATCH)
                .await
                .map_err(store_error)
        })
    }

    async fn load_checkpoint(&self) -> Result<Position, KafkaError> {
        let checkpoint = self
            .checkpoints
            .relay_checkpoint(&self.checkpoint_name())
            .await
            .map_err(|e| KafkaError::Store(e.to_string()))?;
        self.status.send_modify(|s| s.position = checkpoint);
        Ok(checkpoint)
    }

    /// Hands `batch` (the events after `after`, not empty) to the producer. Nothing is
    /// acknowledged yet: see [`Self::settle`].
    async fn send_round(&self, after: Position, batch: &StoredEvents) -> Result<Round, KafkaError> {
        let last = batch.last_position().unwrap_or(after);
        let producer = self
            .producer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut deliveries = Vec::with_capacity(batch.len());
        let mut previous = after;
        // One buffer for every value of the round: the producer copies each one.
        let mut payload = Vec::new();
        for event in batch.iter() {
            payload.clear();
            event.write_json(&mut payload);
            let mut record = FutureRecord::to(&self.settings.topic)
                .key(event.stream)
                .payload(&payload)
                .headers(headers(&event, previous));
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push((event.position, delivery));
                        break;
                    }
                    Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(KafkaError::Broker(format!("cannot produce: {e}"))),
                }
            }
            previous = event.position;
        }
        Ok(Round { last, deliveries })
    }

    /// Waits until the broker acknowledged every record of `round`, then moves the checkpoint
    /// to its last event.
    async fn settle(&self, round: Round) -> Result<Position, KafkaError> {
        let count = round.deliveries.len() as u64;
        for (position, delivery) in round.deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(KafkaError::Broker(format!(
                        "delivery of position {position} failed: {e}"
                    )));
                }
                Err(_) => return Err(KafkaError::Broker("the producer was dropped".into())),
            }
        }
        self.checkpoints
            .save_relay_checkpoint(&self.checkpoint_name(), round.last)
            .await
            .map_err(|e| KafkaError::Store(e.to_string()))?;
        self.status.send_modify(|s| {
            s.position = round.last;
            s.published += count;
            s.last_error = None;
            s.failing_since = None;
            s.updated_at = Utc::now();
        });
        Ok(round.last)
    }

    /// An idempotent producer that hit a fatal error (e.g. its sequence was lost on the broker)
    /// cannot produce again; start a new one (the checkpoint decides what it publishes).
    fn renew_producer_if_fatal(&self) {
        let mut guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((code, reason)) = guard.client().fatal_error() {
            tracing::warn!(
                ?code,
                reason,
                "producer hit a fatal error; creating a new one"
            );
            match producer(&self.settings, &self.status) {
                Ok(p) => *guard = Arc::new(p),
                Err(e) => tracing::error!(error = %e, "cannot create a new producer"),
            }
        }
    }
}

fn producer(
    settings: &KafkaSettings,
    status: &Arc<watch::Sender<RelayStatus>>,
) -> Result<Producer_, KafkaError> {
    settings
        .client_config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
        ])
        .create_with_context(RelayContext {
            status: status.clone(),
        })
        .map_err(|e| KafkaError::Config(e.to_string()))
}

fn store_error(e: commands::StoreError) -> KafkaError {
    KafkaError::Store(e.to_string())
}
