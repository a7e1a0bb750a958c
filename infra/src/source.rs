//! The event store seen as a projection source.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use commands::{Committed, EventStore, IdempotencyKey, StoreError, StreamWrite};
use domain::{Envelope, NewEvent, Position, RawEnvelope, StoredEvents, StreamId};
use projections::{Decoded, EventSource, ReadModelError};
use tokio::sync::{Notify, watch};

use crate::event_store::advance;

/// Feeds projectors straight from the log of record.
///
/// The projectors of one process follow the same head, so they ask for the same events one
/// after another. The newest events read are kept (at most [`StoreSource::TAIL`]), decoded:
/// the first projector to ask reads and decodes them, and the others get the same records
/// from memory instead of querying, cloning and decoding them again. Reads are one at a time,
/// so projectors woken together by one append wait for the first one's read rather than all
/// querying the store at once.
///
/// Written through ([`StoreSource::write_through`]), the appends of this process hand their
/// events to the tail as they commit, so projectors that keep up never read the log at all:
/// no query, no opening of sealed values, no JSON parse. The projectors' head notification
/// then waits (at most [`StoreSource::GRACE`]) for the appends that moved the head to hand
/// their events over, and so does a projector that reads again at the tail's end while
/// appends it has not been told of are committed and about to hand theirs over. Only a run
/// of positions that follows the tail's head is taken in; anything else (another process's
/// appends, an appender gone before it handed over) leaves a gap that the next read of the
/// store fills, so the tail never serves a run with a hole.
pub struct StoreSource {
    store: Arc<dyn EventStore>,
    tail: Mutex<Tail>,
    /// One read of the store at a time.
    reading: tokio::sync::Mutex<()>,
    head: watch::Receiver<Position>,
    /// The store's own head: what appends have committed, handed over or not (the same as
    /// `head` for a source that is not written through).
    committed: watch::Receiver<Position>,
    /// How long appends' events are waited for before the store is read instead.
    grace: Duration,
    /// Signalled whenever appends hand events over.
    offered: Notify,
}

/// Every event with a position in `(after, head]`, in order, and events handed over that do
/// not follow `head` yet.
#[derive(Default)]
struct Tail {
    after: Position,
    head: Position,
    events: VecDeque<Held>,
    /// What the held events take, as [`footprint`] reckons it.
    bytes: usize,
    pending: BTreeMap<Position, Arc<Decoded>>,
}

/// An event of the tail, and what it takes in memory.
struct Held {
    event: Arc<Decoded>,
    bytes: usize,
}

impl Held {
    fn new(event: Arc<Decoded>) -> Self {
        Self {
            bytes: footprint(&event),
            event,
        }
    }
}

/// About what a decoded event takes in memory: its data's JSON tree, as much again for the
/// typed event's copies of its strings, and a fixed part for the rest.
fn footprint(event: &Decoded) -> usize {
    1024 + 2 * json_bytes(&event.envelope.data)
}

fn json_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    // A value, and a string's or a key's own allocation.
    const NODE: usize = 32;
    NODE + match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(json_bytes).sum(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| NODE + k.len() + json_bytes(v))
            .sum(),
        _ => 0,
    }
}

impl Tail {
    /// A tail that knows every event up to `head` is in the store (none of them held).
    fn at(head: Position) -> Self {
        Self {
            after: head,
            head,
            ..Self::default()
        }
    }

    /// The events after `after`, at most `limit`, if this tail holds `after`'s successors.
    fn serve(&self, after: Position, limit: usize) -> Option<Vec<Arc<Decoded>>> {
        if self.events.is_empty() || after < self.after || after >= self.head {
            return None;
        }
        let skip = self.events.partition_point(|e| e.event.position() <= after);
        Some(
            self.events
                .iter()
                .skip(skip)
                .take(limit)
                .map(|e| e.event.clone())
                .collect(),
        )
    }

    /// Takes in what a read of the store after `after` returned: it extends the tail when it
    /// starts where the tail ends, and replaces it when it starts past it. Older reads (a
    /// rebuild from the start of the log) leave it as it is.
    fn remember(&mut self, after: Position, read: &[Arc<Decoded>]) {
        let Some(last) = read.last() else { return };
        if after > self.head || self.events.is_empty() {
            self.events.clear();
            self.bytes = 0;
            self.after = after;
        } else if after < self.head {
            return;
        }
        for event in read {
            self.hold(event.clone());
        }
        self.head = last.position();
        self.take_pending();
    }

    /// Takes in events an append handed over; they join the tail once their predecessors
    /// have.
    fn offer(&mut self, events: Vec<Arc<Decoded>>) {
        for e in events {
            if e.position() > self.head {
                self.pending.insert(e.position(), e);
            }
        }
        self.take_pending();
        if self.pending.len() > StoreSource::TAIL {
            // A gap nobody fills: the store will be read past it.
            self.pending.clear();
        }
    }

    fn take_pending(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            let position = *entry.key();
            if position <= self.head {
                entry.remove();
                continue;
            }
            if position != self.head + 1 {
                break;
            }
            let event = entry.remove();
            if self.events.is_empty() {
                self.after = self.head;
            }
            self.hold(event);
            self.head = position;
        }
        while self.events.len() > StoreSource::TAIL || self.bytes > StoreSource::TAIL_BYTES {
            let Some(dropped) = self.events.pop_front() else {
                break;
            };
            self.after = dropped.event.position();
            self.bytes -= dropped.bytes;
        }
    }

    fn hold(&mut self, event: Arc<Decoded>) {
        let held = Held::new(event);
        self.bytes += held.bytes;
        self.events.push_back(held);
    }
}

impl StoreSource {
    /// Events kept in memory for the other projectors: four of the search projection's
    /// batches. Under load that projector waits a second between batches and then reads a
    /// full batch after another; what came in meanwhile must still be here. With one batch's
    /// worth (4 096) it read nearly every batch back from the store under `treehole bench
    /// comments` at 7 000 comments a second: the query, the opening of the sealed values and
    /// the decoding, about 5% of the server's CPU (BENCHMARKS.md). A comment's event takes 2-3
    /// KiB held (the resident size grew by 32 MiB with the larger tail); [`Self::TAIL_BYTES`]
    /// bounds what larger events (a task's input of up to 64 KiB) can take.
    pub const TAIL: usize = 16384;
    /// What the held events may take in memory, about (see [`footprint`]); the oldest go first.
    pub const TAIL_BYTES: usize = 64 << 20;
    /// How long the head notification waits for appends to hand over their events before
    /// projectors are woken to read the store instead.
    pub const GRACE: Duration = Duration::from_millis(10);

    /// A source that reads the store; its head notification is the store's.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        let head = store.watch();
        Self::with(store, Tail::default(), head.clone(), head, Self::GRACE)
    }

    fn with(
        store: Arc<dyn EventStore>,
        tail: Tail,
        head: watch::Receiver<Position>,
        committed: watch::Receiver<Position>,
        grace: Duration,
    ) -> Self {
        Self {
            store,
            tail: Mutex::new(tail),
            reading: tokio::sync::Mutex::new(()),
            head,
            committed,
            grace,
            offered: Notify::new(),
        }
    }

    /// A source fed by the appends of this process, and the store to append through. Must be
    /// called within a Tokio runtime (it starts the task that forwards head notifications).
    pub fn write_through(store: Arc<dyn EventStore>) -> (Arc<Self>, Arc<dyn EventStore>) {
        Self::write_through_waiting(store, Self::GRACE)
    }

    /// [`StoreSource::write_through`], waiting `grace` instead of [`StoreSource::GRACE`] for
    /// appends to hand their events over.
    pub fn write_through_waiting(
        store: Arc<dyn EventStore>,
        grace: Duration,
    ) -> (Arc<Self>, Arc<dyn EventStore>) {
        let upstream = store.watch();
        let base = *upstream.borrow();
        let (head, watching) = watch::channel(base);
        let source = Arc::new(Self::with(
            store.clone(),
            Tail::at(base),
            watching,
            upstream.clone(),
            grace,
        ));
        tokio::spawn(forward(Arc::downgrade(&source), upstream, head));
        let through = Arc::new(WriteThrough {
            inner: store,
            source: source.clone(),
        });
        (source, through)
    }

    fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The events after `after` once this process's appends have handed them over, when they
    /// are on their way: committed past `after` (the store's head says so), not yet in the
    /// tail, which ends at `after`, and the projectors' head not moved past it (so
    /// [`forward`] is still waiting for them too). A projector that reads again as soon as
    /// its batch is done finds the appends of the meantime between their commit and their
    /// hand-over more often than not; reading them from the store would query, open their
    /// sealed values and decode them, on a runtime worker, for events about to be in memory.
    /// Waits at most the source's grace ([`StoreSource::GRACE`]); `None` leaves it to the
    /// store.
    async fn handed_over(&self, after: Position, limit: usize) -> Option<Vec<Arc<Decoded>>> {
        if *self.committed.borrow() <= after || *self.head.borrow() > after {
            return None;
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        loop {
            let offered = self.offered.notified();
            tokio::pin!(offered);
            offered.as_mut().enable();
            {
                let tail = self.tail();
                if tail.head != after {
                    return tail.serve(after, limit);
                }
            }
            if tokio::time::timeout_at(deadline, offered).await.is_err() {
                return None;
            }
        }
    }

    /// Hands over the events of a committed append.
    fn offer(&self, written: Vec<(StreamId, Vec<NewEvent>)>, committed: &Committed) {
        let mut events = Vec::new();
        for ((stream, new), result) in written.into_iter().zip(&committed.results) {
            let n = new.len() as u64;
            // Only a write whose events sit at consecutive positions can be told apart;
            // anything else is left for the store to tell.
            if result.stream != stream
                || result.last_position + 1 != result.first_position + n
                || result.last_version + 1 != result.first_version + n
            {
                continue;
            }
            for (i, e) in new.into_iter().enumerate() {
                let i = i as u64;
                let typed = e.typed.take();
                let envelope = Envelope {
                    position: result.first_position + i,
                    event_id: e.event_id,
                    stream: stream.clone(),
                    version: result.first_version + i,
                    event_type: e.event_type,
                    schema: e.schema,
                    // The stores keep milliseconds.
                    occurred_at: DateTime::from_timestamp_millis(e.occurred_at.timestamp_millis())
                        .unwrap_or(e.occurred_at),
                    data: e.data,
                    metadata: e.metadata,
                };
                // The event the command decided, as it is: decoding `data` gives the same.
                events.push(match typed {
                    Some(event) => Decoded::with_event(envelope, event),
                    None => Decoded::new(envelope),
                });
            }
        }
        if !events.is_empty() {
            self.tail().offer(events);
            self.offered.notify_waiters();
        }
    }
}

/// Moves the projectors' head to the store's once the appends that moved it handed their
/// events over, or the source's grace ([`StoreSource::GRACE`]) passed.
async fn forward(
    source: Weak<StoreSource>,
    mut upstream: watch::Receiver<Position>,
    head: watch::Sender<Position>,
) {
    while upstream.changed().await.is_ok() {
        let to = *upstream.borrow_and_update();
        let Some(source) = source.upgrade() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + source.grace;
        loop {
            let offered = source.offered.notified();
            tokio::pin!(offered);
            offered.as_mut().enable();
            if source.tail().head >= to {
                break;
            }
            if tokio::time::timeout_at(deadline, offered).await.is_err() {
                break;
            }
        }
        drop(source);
        advance(&head, to);
    }
}

#[async_trait]
impl EventSource for StoreSource {
    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Arc<Decoded>>, ReadModelError> {
        if let Some(events) = self.tail().serve(after, limit) {
            return Ok(events);
        }
        if let Some(events) = self.handed_over(after, limit).await {
            return Ok(events);
        }
        let _one = self.reading.lock().await;
        if let Some(events) = self.tail().serve(after, limit) {
            return Ok(events);
        }
        let read: Vec<Arc<Decoded>> = self
            .store
            .read_all(after, limit)
            .await
            .map_err(|e| ReadModelError::Unavailable(e.to_string()))?
            .into_iter()
            .map(Decoded::new)
            .collect();
        self.tail().remember(after, &read);
        Ok(read)
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.head.clone()
    }
}

/// The store as the appends of a process use it when its projectors are fed through
/// [`StoreSource::write_through`]: every committed append hands its events to the source.
pub struct WriteThrough {
    inner: Arc<dyn EventStore>,
    source: Arc<StoreSource>,
}

#[async_trait]
impl EventStore for WriteThrough {
    async fn append_many(
        &self,
        writes: Vec<StreamWrite>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Committed, StoreError> {
        let written: Vec<(StreamId, Vec<NewEvent>)> = writes
            .iter()
            .filter(|w| !w.events.is_empty())
            .map(|w| (w.stream.clone(), w.events.clone()))
            .collect();
        let committed = self.inner.append_many(writes, idempotency).await?;
        if !committed.replayed {
            self.source.offer(written, &committed);
        }
        Ok(committed)
    }

    async fn find_idempotent(&self, key: &IdempotencyKey) -> Result<Option<Committed>, StoreError> {
        self.inner.find_idempotent(key).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<Envelope>, StoreError> {
        self.inner.read_stream(stream, from_version).await
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<Envelope>, StoreError> {
        self.inner.read_all(after, limit).await
    }

    async fn read_all_raw(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RawEnvelope>, StoreError> {
        self.inner.read_all_raw(after, limit).await
    }

    async fn read_all_stored(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<StoredEvents, StoreError> {
        self.inner.read_all_stored(after, limit).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.inner.head().await
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.inner.watch()
    }
}

/// A source whose envelopes may carry sealed personal values (the Kafka topic carries the
/// log's stored text): opens them through the key store before the projections see them, so
/// that a projector fed by the topic writes what one fed by the store writes.
pub struct OpeningSource {
    inner: Arc<dyn EventSource>,
    keys: Arc<commands::Keys>,
}

impl OpeningSource {
    pub fn new(inner: Arc<dyn EventSource>, keys: Arc<commands::Keys>) -> Self {
        Self { inner, keys }
    }
}

#[async_trait]
impl EventSource for OpeningSource {
    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Arc<Decoded>>, ReadModelError> {
        let read = self.inner.read_after(after, limit).await?;
        let sealed: Vec<domain::Envelope> = read
            .iter()
            .filter(|d| domain::personal::has_sealed(&d.envelope.data))
            .map(|d| d.envelope.clone())
            .collect();
        let failed = |e: commands::KeyError| match e {
            commands::KeyError::Backend(m) => ReadModelError::Unavailable(m),
            other => ReadModelError::Backend(other.to_string()),
        };
        self.keys.prefetch(&sealed).await.map_err(failed)?;
        let mut out = Vec::with_capacity(read.len());
        for d in read {
            let sealed = d.envelope.event_type == "UserUnregistered"
                || domain::personal::has_sealed(&d.envelope.data);
            if sealed {
                let mut envelope = d.envelope.clone();
                self.keys.open(&mut envelope).await.map_err(failed)?;
                out.push(Decoded::new(envelope));
            } else {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.inner.watch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::{Envelope, Metadata, StreamId};

    fn event(position: Position) -> Arc<Decoded> {
        event_with(position, serde_json::json!({}))
    }

    fn event_with(position: Position, data: serde_json::Value) -> Arc<Decoded> {
        Decoded::new(Envelope {
            position,
            event_id: uuid::Uuid::from_u128(position.into()),
            stream: StreamId::parse("user-1").unwrap(),
            version: position,
            event_type: "UserLoggedIn".into(),
            schema: 1,
            occurred_at: Utc::now(),
            data,
            metadata: Metadata::default(),
        })
    }

    fn run(from: Position, to: Position) -> Vec<Arc<Decoded>> {
        (from..=to).map(event).collect()
    }

    fn positions(events: &[Arc<Decoded>]) -> Vec<Position> {
        events.iter().map(|e| e.position()).collect()
    }

    #[test]
    fn serves_only_what_it_holds_in_full() {
        let mut tail = Tail::default();
        assert!(tail.serve(0, 10).is_none(), "empty");
        tail.remember(10, &run(11, 20));
        assert!(tail.serve(9, 10).is_none(), "event 10 is not held");
        assert!(
            tail.serve(20, 10).is_none(),
            "nothing past the head is known"
        );
        assert_eq!(positions(&tail.serve(10, 3).unwrap()), vec![11, 12, 13]);
        assert_eq!(positions(&tail.serve(18, 10).unwrap()), vec![19, 20]);

        // A read that starts at the head extends the tail; an older one leaves it.
        tail.remember(20, &run(21, 22));
        tail.remember(0, &run(1, 5));
        assert_eq!(positions(&tail.serve(19, 10).unwrap()), vec![20, 21, 22]);
        assert!(tail.serve(3, 10).is_none());

        // A read past the head (events this source never saw between) replaces it.
        tail.remember(30, &run(31, 31));
        assert!(tail.serve(22, 10).is_none());
        assert_eq!(positions(&tail.serve(30, 10).unwrap()), vec![31]);
        // An empty read changes nothing.
        tail.remember(31, &[]);
        assert_eq!(positions(&tail.serve(30, 10).unwrap()), vec![31]);
    }

    #[test]
    fn handed_over_events_join_only_after_their_predecessors() {
        let mut tail = Tail::at(10);
        // Appenders answered out of order: 12 and 13 wait for 11.
        tail.offer(run(12, 13));
        assert!(tail.serve(10, 10).is_none(), "11 is missing");
        tail.offer(run(11, 11));
        assert_eq!(positions(&tail.serve(10, 10).unwrap()), vec![11, 12, 13]);

        // 14 never comes (its appender went away): 15 waits until a read of the store
        // fills the gap, and is then taken from memory.
        tail.offer(run(15, 15));
        assert!(tail.serve(13, 10).is_none());
        tail.remember(13, &run(14, 14));
        assert_eq!(positions(&tail.serve(13, 10).unwrap()), vec![14, 15]);
        // Events handed over again, or already read, are not doubled.
        tail.offer(run(14, 16));
        assert_eq!(
            positions(&tail.serve(10, 10).unwrap()),
            (11..=16).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_gap_nobody_fills_does_not_grow_without_bound() {
        let mut tail = Tail::at(0);
        let n = StoreSource::TAIL as Position;
        tail.offer(run(2, n + 2));
        assert!(tail.pending.is_empty(), "dropped once over the bound");
        assert!(tail.serve(0, 1).is_none());
    }

    #[test]
    fn large_events_are_held_within_the_byte_budget() {
        let mut tail = Tail::default();
        let mib = |p| event_with(p, serde_json::json!({ "input": "x".repeat(1 << 20) }));
        let read: Vec<_> = (1..=64).map(mib).collect();
        tail.remember(0, &read);
        assert!(
            tail.bytes <= StoreSource::TAIL_BYTES,
            "{} bytes held",
            tail.bytes
        );
        let held = tail.events.len() as Position;
        assert!((16..64).contains(&held), "{held} events of 2 MiB held");
        assert!(tail.serve(0, 1).is_none(), "the oldest were dropped");
        assert_eq!(positions(&tail.serve(63, 5).unwrap()), vec![64]);
        assert_eq!(tail.after, 64 - held);
        // Small ones after them push the large ones out, not each other.
        tail.offer(run(65, 100));
        assert_eq!(positions(&tail.serve(99, 5).unwrap()), vec![100]);
        assert_eq!(
            tail.bytes,
            tail.events.iter().map(|e| e.bytes).sum::<usize>()
        );
    }

    #[test]
    fn keeps_the_newest_events_only() {
        let mut tail = Tail::default();
        let n = StoreSource::TAIL as Position;
        tail.remember(0, &run(1, n));
        tail.remember(n, &run(n + 1, n + 10));
        assert!(tail.serve(5, 1).is_none(), "the oldest were dropped");
        assert_eq!(positions(&tail.serve(10, 1).unwrap()), vec![11]);
        assert_eq!(
            positions(&tail.serve(n + 8, 5).unwrap()),
            vec![n + 9, n + 10]
        );
    }
}
