//! A projector reads the log in batches of the size its projection asks for
//! (`Projection::batch`), over the real SQLite log and read models: the search projection
//! needs room for what arrives between two of its paced batches, or under load every batch is
//! full and the pace never applies.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domain::{Envelope, Event, Position};
use infra::event_store::SqliteEventStore;
use infra::read_model::SqliteReadModels;
use infra::source::StoreSource;
use infra::synth::History;
use projections::feed::Feed;
use projections::runner::{BATCH, rebuild};
use projections::search::Search;
use projections::{Change, EventSource, Projection, ReadModelError};
use tokio::sync::watch;

/// The real source, with the limit of every read written down.
struct Recorded {
    inner: StoreSource,
    limits: Mutex<Vec<usize>>,
}

#[async_trait]
impl EventSource for Recorded {
    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Envelope>, ReadModelError> {
        self.limits.lock().unwrap().push(limit);
        self.inner.read_after(after, limit).await
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.inner.watch()
    }
}

/// The feed projection, asking for batches of seven events.
struct SmallBatches;

impl Projection for SmallBatches {
    fn name(&self) -> &'static str {
        Feed.name()
    }
    fn version(&self) -> u32 {
        Feed.version()
    }
    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        Feed.apply(envelope, event)
    }
    fn batch(&self) -> usize {
        7
    }
}

#[tokio::test]
async fn a_projector_reads_in_the_batches_its_projection_asks_for() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = Arc::new(
        SqliteEventStore::open_in(dir.path())
            .await
            .expect("the log opens"),
    );
    History::new()
        .write(&*log, 50, 50, |_| {})
        .await
        .expect("the history is written");
    let source = Arc::new(Recorded {
        inner: StoreSource::new(log),
        limits: Mutex::new(Vec::new()),
    });
    let models = Arc::new(
        SqliteReadModels::open(&dir.path().join("readmodels.db"))
            .await
            .expect("the read models open"),
    );
    let built = rebuild(
        Arc::new(SmallBatches),
        source.clone(),
        models,
        None,
        &|_, _| {},
    )
    .await
    .expect("the rebuild");
    assert_eq!(built.position, 50);
    let limits = source.limits.lock().unwrap().clone();
    // Eight reads of seven (the last one gets one event) and the empty read at the end.
    assert_eq!(limits, vec![7; 9]);
}

#[test]
fn the_search_projection_asks_for_more_than_the_default_and_no_more_than_the_shared_tail() {
    assert!(Search.batch() > BATCH);
    assert!(Search.batch() <= StoreSource::TAIL);
    assert_eq!(Feed.batch(), BATCH);
}
