//! `treehole relay`: tails the store and publishes every event to the topic, in position order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::EventStore;
use domain::{Position, StoredEvents};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use tokio::sync::{Notify, watch};

use super::{HEADER_POSITION, KafkaError, KafkaSettings, RelayCheckpoints, ensure_topic, headers};

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
/// them while deliveries are still being retried inside the producer, and the delivery report
/// of every record, which it counts in the record's round ([`Acks`]).
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

impl ProducerContext for RelayContext {
    /// The round of the record: a reference count, no allocation per record.
    type DeliveryOpaque = Arc<Acks>;

    /// Runs on the producer's polling thread, once per record (librdkafka reports every
    /// record it accepted exactly once: acknowledged, failed, or purged when the producer
    /// goes).
    fn delivery(&self, result: &DeliveryResult<'_>, acks: Arc<Acks>) {
        match result {
            Ok(_) => acks.settle_one(None),
            Err((error, message)) => {
                let position = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == HEADER_POSITION))
                    .and_then(|h| h.value)
                    .map_or_else(|| "?".into(), |v| String::from_utf8_lossy(v).into_owned());
                acks.settle_one(Some(format!(
                    "delivery of position {position} failed: {error}"
                )));
            }
        }
    }
}

/// The delivery reports of one round: how many records are still unreported, the first
/// failure, and a notification when none is left. Counting them here instead of giving
/// every record a future of its own (`FutureProducer`) saves a channel per record and a wake-up
/// of the relay's task per report.
struct Acks {
    /// Records handed to the producer and not yet reported, plus one while the round is
    /// still being handed over (so that it cannot look settled before it is complete).
    pending: AtomicUsize,
    failure: Mutex<Option<String>>,
    settled: Notify,
}

impl Acks {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            pending: AtomicUsize::new(1),
            failure: Mutex::new(None),
            settled: Notify::new(),
        })
    }

    fn settle_one(&self, failure: Option<String>) {
        if let Some(failure) = failure {
            self.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(failure);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_one();
        }
    }

    /// Waits for every report, then returns the first failure, if any.
    async fn all_reported(&self) -> Option<String> {
        while self.pending.load(Ordering::Acquire) > 0 {
            // notify_one keeps its permit when nobody waits yet: a report that comes between
            // the load and this await is not missed.
            self.settled.notified().await;
        }
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

fn fail(status: &mut RelayStatus, message: String) {
    status.last_error = Some(message);
    status.failing_since.get_or_insert_with(Utc::now);
    status.updated_at = Utc::now();
}

type Producer_ = ThreadedProducer<RelayContext>;

/// Records handed to the producer and not yet known acknowledged.
struct Round {
    last: Position,
    count: u64,
    acks: Arc<Acks>,
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
        let acks = Acks::new();
        let mut previous = after;
        // One buffer for every value of the round: the producer copies each one.
        let mut payload = Vec::new();
        for event in batch.iter() {
            payload.clear();
            event.write_json(&mut payload);
            acks.pending.fetch_add(1, Ordering::AcqRel);
            let mut record = BaseRecord::with_opaque_to(&self.settings.topic, acks.clone())
                .key(event.stream)
                .payload(&payload)
                .headers(headers(&event, previous));
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        // Not handed over: no report will come for it.
                        acks.settle_one(None);
                        return Err(KafkaError::Broker(format!("cannot produce: {e}")));
                    }
                }
            }
            previous = event.position;
        }
        // Handed over: the round settles with its last report.
        acks.settle_one(None);
        Ok(Round {
            last,
            count: batch.len() as u64,
            acks,
        })
    }

    /// Waits until the broker acknowledged every record of `round`, then moves the checkpoint
    /// to its last event.
    async fn settle(&self, round: Round) -> Result<Position, KafkaError> {
        let count = round.count;
        if let Some(failure) = round.acks.all_reported().await {
            return Err(KafkaError::Broker(failure));
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Acks;

    #[tokio::test]
    async fn a_round_settles_after_its_handover_and_its_last_report() {
        let acks = Acks::new();
        for _ in 0..3 {
            acks.pending.fetch_add(1, super::Ordering::AcqRel);
        }
        // Two reports before the handover ends, on another thread (as librdkafka's).
        let reporter = acks.clone();
        std::thread::spawn(move || (0..2).for_each(|_| reporter.settle_one(None)))
            .join()
            .unwrap();
        let waiting = tokio::spawn({
            let acks = acks.clone();
            async move { acks.all_reported().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "settled with a record unreported");
        let reporter = acks.clone();
        std::thread::spawn(move || reporter.settle_one(Some("failed".into())))
            .join()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "settled before the handover ended");
        acks.settle_one(None);
        assert_eq!(waiting.await.unwrap().as_deref(), Some("failed"));
    }

    #[tokio::test]
    async fn the_first_failure_is_the_one_reported() {
        let acks = Acks::new();
        acks.pending.fetch_add(2, super::Ordering::AcqRel);
        acks.settle_one(Some("first".into()));
        acks.settle_one(Some("second".into()));
        acks.settle_one(None);
        assert_eq!(acks.all_reported().await.as_deref(), Some("first"));
    }
}
