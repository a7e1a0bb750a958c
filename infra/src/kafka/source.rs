//! Feeding projectors from the topic (`treehole project --source kafka`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::Position;
use projections::{Decoded, EventSource, ReadModelError};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{KafkaError, KafkaSettings, Record, decode, partitions_of};

/// A partition with this many records waiting is paused until it drains below [`RESUME_BELOW`].
const PAUSE_AT: usize = 50_000;
const RESUME_BELOW: usize = 10_000;

/// How long the next event may be missing while every partition has later records before the
/// source reports it (the relay may still be re-sending it after a failed delivery).
const GAP_REPORT_AFTER: Duration = Duration::from_secs(30);

/// The least time between two offset commits of one source.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// Records received and not yet applied, per assigned partition.
#[derive(Default)]
struct Buffer {
    partitions: BTreeMap<i32, Partition>,
    /// Partitions of the topic (a worker needs all of them to apply events in log order).
    total: usize,
    /// The last position the projection reported as applied.
    floor: Position,
    /// Since when no record continues the chain although every partition has records.
    stalled_since: Option<Instant>,
    /// When offsets were last sent to the group coordinator.
    last_commit: Option<Instant>,
}

#[derive(Default)]
struct Partition {
    queue: VecDeque<Record>,
    /// Offset of the last record known applied (or a duplicate of an applied one).
    done: Option<i64>,
    committed: Option<i64>,
    paused: bool,
}

struct SourceContext {
    buffer: Arc<Mutex<Buffer>>,
    topic: String,
    group: String,
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut buffer = lock(&self.buffer);
            for elem in list.elements_for_topic(&self.topic) {
                buffer.partitions.remove(&elem.partition());
            }
            tracing::info!(topic = %self.topic, group = %self.group, partitions = list.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let mut buffer = lock(&self.buffer);
            let assigned: Vec<i32> = list
                .elements_for_topic(&self.topic)
                .iter()
                .map(|e| e.partition())
                .collect();
            buffer.partitions.retain(|p, _| assigned.contains(p));
            for p in &assigned {
                buffer.partitions.entry(*p).or_default();
            }
            if assigned.len() < buffer.total {
                tracing::warn!(
                    topic = %self.topic,
                    group = %self.group,
                    held = assigned.len(),
                    total = buffer.total,
                    "this worker holds only some partitions; a Kafka-fed projection applies \
                     events in log order and waits until it holds all of them (run one active \
                     worker per projection; more are standbys only with a one-partition topic)"
                );
            } else {
                tracing::info!(topic = %self.topic, group = %self.group, partitions = ?assigned, "partitions assigned");
            }
        }
    }
}

fn lock(buffer: &Mutex<Buffer>) -> std::sync::MutexGuard<'_, Buffer> {
    buffer.lock().unwrap_or_else(|p| p.into_inner())
}

/// One projection's view of the topic, in the store's position order.
///
/// It joins the consumer group `<prefix><projection>`, buffers what it receives per partition,
/// and hands the runner the events that continue the `previous-position` chain from the
/// runner's checkpoint, so that the projection code sees exactly the sequence it would read
/// from the store. Records at or below the checkpoint (re-deliveries, relay re-sends) are
/// dropped. Offsets are committed only for records at or below a checkpoint the runner asked
/// from, i.e. after their read-model transaction committed; a crash before that re-delivers
/// them, and the position check drops them again.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer<SourceContext>>,
    buffer: Arc<Mutex<Buffer>>,
    head: watch::Sender<Position>,
    topic: String,
    reader: JoinHandle<()>,
}

impl KafkaSource {
    /// Joins the group of `projection` on the topic and starts receiving.
    pub async fn connect(settings: &KafkaSettings, projection: &str) -> Result<Self, KafkaError> {
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let group = format!("{}{projection}", settings.group_prefix);
        let consumer: StreamConsumer<SourceContext> = settings
            .client_config(&[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
            ])
            .create_with_context(SourceContext {
                buffer: buffer.clone(),
                topic: settings.topic.clone(),
                group: group.clone(),
            })
            .map_err(|e| KafkaError::Config(e.to_string()))?;
        let consumer = Arc::new(consumer);
        let total = {
            let (c, s) = (consumer.clone(), settings.clone());
            tokio::task::spawn_blocking(move || partitions_of(&*c, &s, Duration::from_secs(10)))
                .await
                .map_err(|e| KafkaError::Broker(e.to_string()))??
        };
        lock(&buffer).total = total;
        consumer
            .subscribe(&[&settings.topic])
            .map_err(|e| KafkaError::Broker(e.to_string()))?;
        let head = watch::Sender::new(0);
        let reader = tokio::spawn(receive(
            consumer.clone(),
            buffer.clone(),
            head.clone(),
            settings.topic.clone(),
        ));
        tracing::info!(topic = %settings.topic, group, partitions = total, "kafka source joined");
        Ok(Self {
            consumer,
            buffer,
            head,
            topic: settings.topic.clone(),
            reader,
        })
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn receive(
    consumer: Arc<StreamConsumer<SourceContext>>,
    buffer: Arc<Mutex<Buffer>>,
    head: watch::Sender<Position>,
    topic: String,
) {
    loop {
        let message = match consumer.recv().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let record = match decode(&message) {
            Ok(r) => r,
            Err(reason) => {
                // Not a record of the relay: nothing to apply; its offset is committed with
                // the next applied record of its partition.
                tracing::error!(partition = message.partition(), offset = message.offset(), %reason, "skipping a record that is not an event");
                continue;
            }
        };
        let position = record.envelope.position;
        let pause = {
            let mut b = lock(&buffer);
            match b.partitions.get_mut(&record.partition) {
                // Revoked meanwhile: whoever holds it now reads it from the committed offset.
                None => None,
                Some(p) => {
                    p.queue.push_back(record);
                    (!p.paused && p.queue.len() >= PAUSE_AT).then(|| {
                        p.paused = true;
                        message_partition(&topic, message.partition())
                    })
                }
            }
        };
        if let Some(list) = pause {
            let _ = consumer.pause(&list);
        }
        crate::event_store::advance(&head, position);
    }
}

fn message_partition(topic: &str, partition: i32) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    list
}

#[async_trait]
impl EventSource for KafkaSource {
    /// The buffered events that continue the chain after `after` (the runner's checkpoint),
    /// in position order. Everything at or below `after` is applied: it leaves the buffer and
    /// its offsets are committed.
    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Arc<Decoded>>, ReadModelError> {
        let mut commits = TopicPartitionList::new();
        let mut resume = TopicPartitionList::new();
        let mut out = Vec::new();
        {
            let mut b = lock(&self.buffer);
            if after < b.floor {
                return Err(ReadModelError::Backend(format!(
                    "the Kafka source is at position {} and cannot go back to {after}; restart the worker",
                    b.floor
                )));
            }
            b.floor = after;
            // Offsets go to the coordinator at most every COMMIT_EVERY: a projector reads
            // many small batches, and a commit per batch loaded the test broker's coordinator
            // until heartbeats timed out. A crash re-delivers at most that much more, and
            // the position check drops it.
            let commit_due = b.last_commit.is_none_or(|t| t.elapsed() >= COMMIT_EVERY);
            if commit_due {
                b.last_commit = Some(Instant::now());
            }
            for (&number, p) in b.partitions.iter_mut() {
                while p
                    .queue
                    .front()
                    .is_some_and(|r| r.envelope.position <= after)
                {
                    p.done = p.queue.pop_front().map(|r| r.offset);
                }
                if commit_due && let Some(done) = p.done.filter(|d| Some(*d) > p.committed) {
                    let _ =
                        commits.add_partition_offset(&self.topic, number, Offset::Offset(done + 1));
                    p.committed = Some(done);
                }
                if p.paused && p.queue.len() < RESUME_BELOW {
                    p.paused = false;
                    resume.add_partition(&self.topic, number);
                }
            }
            let mut cursors: BTreeMap<i32, usize> = b.partitions.keys().map(|p| (*p, 0)).collect();
            let mut current = after;
            while out.len() < limit {
                match next_in_chain(&b.partitions, &mut cursors, current) {
                    Some(record) => {
                        current = record.envelope.position;
                        out.push(Decoded::new(record.envelope.clone()));
                    }
                    None => break,
                }
            }
            // Stalled: nothing continues the chain although every partition has later records.
            let stalled = out.is_empty()
                && b.partitions.len() >= b.total
                && b.partitions
                    .values()
                    .all(|p| p.queue.iter().any(|r| r.envelope.position > after));
            if !stalled {
                b.stalled_since = None;
            } else {
                let since = *b.stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > GAP_REPORT_AFTER {
                    let earliest = b
                        .partitions
                        .values()
                        .flat_map(|p| p.queue.iter())
                        .filter(|r| r.envelope.position > after)
                        .map(|r| r.previous)
                        .min()
                        .unwrap_or(after);
                    return Err(ReadModelError::Backend(format!(
                        "the topic {} has no event following position {after} (the earliest \
                         waiting follows {earliest}): events are missing from the topic; \
                         rebuild this projection from the store",
                        self.topic
                    )));
                }
            }
        }
        if commits.count() > 0
            && let Err(e) = self.consumer.commit(&commits, CommitMode::Async)
        {
            tracing::warn!(error = %e, "offset commit failed; records will be re-delivered and dropped");
        }
        if resume.count() > 0 {
            let _ = self.consumer.resume(&resume);
        }
        Ok(out)
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}

/// The record whose `previous` is `current`: first at the partitions' cursors (the usual
/// case), else anywhere further on (after a failed delivery the relay re-sends from its
/// checkpoint, so a record can arrive after later ones of its partition).
fn next_in_chain<'a>(
    partitions: &'a BTreeMap<i32, Partition>,
    cursors: &mut BTreeMap<i32, usize>,
    current: Position,
) -> Option<&'a Record> {
    for deep in [false, true] {
        for (number, p) in partitions {
            let cursor = cursors.entry(*number).or_default();
            while p
                .queue
                .get(*cursor)
                .is_some_and(|r| r.envelope.position <= current)
            {
                *cursor += 1;
            }
            let window = if deep { p.queue.len() } else { *cursor + 1 };
            if let Some(i) =
                (*cursor..window.min(p.queue.len())).find(|&i| p.queue[i].previous == current)
            {
                *cursor = i + 1;
                return Some(&p.queue[i]);
            }
        }
    }
    None
}
