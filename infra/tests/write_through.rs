//! Projectors fed through [`StoreSource::write_through`] see exactly what a read of the log
//! gives them, over the real sealing SQLite store: the events an append hands over are the
//! stored ones (positions, versions, times, opened personal values), and projectors that keep
//! up are served from memory without reading the log.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use commands::{Committed, EventStore, IdempotencyKey, Keys, SealedStore, StoreError, StreamWrite};
use domain::{Envelope, Position, RawEnvelope, StreamId};
use infra::event_store::SqliteEventStore;
use infra::keys::SqliteKeyStore;
use infra::source::StoreSource;
use infra::synth::{History, group, prepare};
use projections::{Decoded, EventSource};
use tempfile::TempDir;

/// The sealing store, with its reads of the log counted; with a gate, its appends return (and
/// so hand their events over) only when the test lets them, one permit each.
struct Counted {
    inner: Arc<dyn EventStore>,
    reads: AtomicUsize,
    gate: Option<tokio::sync::Semaphore>,
}

impl Counted {
    fn new(inner: Arc<dyn EventStore>, gated: bool) -> Arc<Self> {
        Arc::new(Self {
            inner,
            reads: AtomicUsize::new(0),
            gate: gated.then(|| tokio::sync::Semaphore::new(0)),
        })
    }

    fn open_gate(&self) {
        self.gate.as_ref().expect("a gated store").add_permits(1);
    }
}

/// The log, the key store and the sealing store over them, in `dir`.
async fn stores(dir: &TempDir) -> (Arc<dyn EventStore>, Arc<Keys>, Arc<dyn EventStore>) {
    let log: Arc<dyn EventStore> = Arc::new(
        SqliteEventStore::open_in(dir.path())
            .await
            .expect("the event store opens"),
    );
    let keys = Arc::new(Keys::new(
        Arc::new(
            SqliteKeyStore::open_in(dir.path())
                .await
                .expect("the key store opens"),
        ),
        b"server secret",
    ));
    let sealed: Arc<dyn EventStore> = Arc::new(SealedStore::new(log.clone(), keys.clone()));
    (log, keys, sealed)
}

#[async_trait]
impl EventStore for Counted {
    async fn append_many(
        &self,
        writes: Vec<StreamWrite>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Committed, StoreError> {
        let committed = self.inner.append_many(writes, idempotency).await?;
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
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
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_all(after, limit).await
    }
    async fn read_all_raw(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RawEnvelope>, StoreError> {
        self.inner.read_all_raw(after, limit).await
    }
    async fn head(&self) -> Result<Position, StoreError> {
        self.inner.head().await
    }
    fn watch(&self) -> tokio::sync::watch::Receiver<Position> {
        self.inner.watch()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_over_events_are_the_stored_ones_and_spare_the_reads() {
    tokio::time::timeout(Duration::from_secs(120), handed_over())
        .await
        .expect("timed out");
}

async fn handed_over() {
    let dir = TempDir::new().expect("a temporary directory");
    let (log, keys, sealed) = stores(&dir).await;
    let mut history = History::new();
    // Some events before the source starts: they are read from the log.
    history
        .write(sealed.as_ref(), Some(&keys), 200, 50, |_| {})
        .await
        .expect("the first events");

    let counted = Counted::new(sealed.clone(), false);
    let (source, through) = StoreSource::write_through(counted.clone());

    // Concurrent appends through the store (one group commit answers them in any order),
    // with every kind of event, personal values included.
    for _ in 0..10 {
        let mut calls = Vec::new();
        for _ in 0..8 {
            let mut pending = history.take(25);
            // Times as a server takes them, finer than the stores keep.
            for (_, e) in &mut pending {
                e.occurred_at = chrono::Utc::now();
            }
            prepare(&keys, &history.take_keys())
                .await
                .expect("keys for the batch");
            let through = through.clone();
            calls.push(tokio::spawn(async move {
                through.append_many(group(pending), None).await
            }));
        }
        for call in calls {
            call.await.expect("the append task").expect("an append");
        }
    }
    let head = log.head().await.expect("the head");
    assert_eq!(head, 200 + 10 * 8 * 25);

    // The projectors' head reaches the log's.
    let mut watch = source.watch();
    tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|h| *h >= head))
        .await
        .expect("the head notification is forwarded")
        .expect("the source is open");

    // Read from where the source started, as a projector that keeps up would.
    let before = counted.reads.load(Ordering::SeqCst);
    let mut served: Vec<Arc<Decoded>> = Vec::new();
    let mut after = 200;
    while after < head {
        let batch = source.read_after(after, 97).await.expect("a read");
        after = batch.last().expect("events up to the head").position();
        served.extend(batch);
    }
    assert_eq!(
        counted.reads.load(Ordering::SeqCst),
        before,
        "every handed-over event was served from memory"
    );

    let stored = sealed.read_all(200, 10_000).await.expect("the log");
    assert_eq!(served.len(), stored.len());
    for (s, e) in served.iter().zip(stored) {
        let read = Decoded::new(e);
        assert_eq!(s.envelope, read.envelope, "as stored and opened");
        assert_eq!(s.event, read.event);
    }
    assert!(
        served
            .iter()
            .any(|d| d.envelope.data.to_string().contains("$personal")),
        "personal values were among them"
    );

    // Older events are still read from the log.
    let first = source.read_after(0, 10).await.expect("a read");
    assert_eq!(first.first().map(|d| d.position()), Some(1));
    assert!(counted.reads.load(Ordering::SeqCst) > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_at_the_tail_waits_for_committed_events_to_be_handed_over() {
    tokio::time::timeout(Duration::from_secs(120), in_flight())
        .await
        .expect("timed out");
}

async fn in_flight() {
    let dir = TempDir::new().expect("a temporary directory");
    let (log, keys, sealed) = stores(&dir).await;
    let mut history = History::new();
    history
        .write(sealed.as_ref(), Some(&keys), 20, 10, |_| {})
        .await
        .expect("the first events");

    // Committed, not handed over yet: `through`'s append is held after its commit.
    async fn commit_held(
        log: &Arc<dyn EventStore>,
        keys: &Arc<Keys>,
        history: &mut History,
        through: &Arc<dyn EventStore>,
    ) -> (
        Position,
        tokio::task::JoinHandle<Result<Committed, StoreError>>,
    ) {
        let from = log.head().await.expect("the head");
        let pending = history.take(5);
        prepare(keys, &history.take_keys())
            .await
            .expect("keys for the batch");
        let through = through.clone();
        let append = tokio::spawn(async move { through.append_many(group(pending), None).await });
        let mut committed = log.watch();
        committed
            .wait_for(|h| *h >= from + 5)
            .await
            .expect("the store is open");
        (from, append)
    }

    // A grace far longer than the hand-over takes: the reader waits for it.
    let gated = Counted::new(sealed.clone(), true);
    let (source, through) =
        StoreSource::write_through_waiting(gated.clone(), Duration::from_secs(60));
    let (from, append) = commit_held(&log, &keys, &mut history, &through).await;
    let reader = {
        let source = source.clone();
        tokio::spawn(async move { source.read_after(from, 100).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!reader.is_finished(), "the reader waits for the hand-over");
    gated.open_gate();
    let batch = reader.await.expect("the reader").expect("a read");
    let positions: Vec<Position> = batch.iter().map(|d| d.position()).collect();
    assert_eq!(positions, (from + 1..=from + 5).collect::<Vec<_>>());
    assert_eq!(
        gated.reads.load(Ordering::SeqCst),
        0,
        "served from the hand-over, not read from the log"
    );
    append.await.expect("the append task").expect("an append");
    let stored = sealed.read_all(from, 100).await.expect("the log");
    for (s, e) in batch.iter().zip(stored) {
        assert_eq!(s.envelope, Decoded::new(e).envelope, "as stored and opened");
    }

    // A hand-over that does not come within the grace: the reader reads the log.
    let gated = Counted::new(sealed.clone(), true);
    let (source, through) =
        StoreSource::write_through_waiting(gated.clone(), Duration::from_millis(20));
    let (from, append) = commit_held(&log, &keys, &mut history, &through).await;
    let batch = source.read_after(from, 100).await.expect("a read");
    assert_eq!(batch.len(), 5);
    assert_eq!(gated.reads.load(Ordering::SeqCst), 1, "read from the log");
    gated.open_gate();
    append.await.expect("the append task").expect("an append");
}
