//! A projector reads the log in batches of the size its projection asks for
//! (`Projection::batch`), over the real SQLite log and read models: the search projection
//! needs room for what arrives between two of its paced batches, or under load every batch is
//! full and the pace never applies.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use commands::EventStore;
use domain::{Envelope, Event, Position};
use infra::event_store::SqliteEventStore;
use infra::read_model::SqliteReadModels;
use infra::source::StoreSource;
use infra::synth::{History, group};
use projections::feed::Feed;
use projections::runner::{BATCH, REBUILD_BATCH, TURN, rebuild, rebuild_together, run};
use projections::search::Search;
use projections::{
    Change, Decoded, EventSource, Generation, Projection, ProjectionHub, Promotion, ReadModelError,
    ReadModelStore,
};
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
    ) -> Result<Vec<Arc<Decoded>>, ReadModelError> {
        self.limits.lock().unwrap().push(limit);
        self.inner.read_after(after, limit).await
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.inner.watch()
    }
}

/// The feed projection with a batch size and a pace of its own: `pause` after a batch of
/// `busy` events or more, none after a smaller one. It writes down every batch size the
/// projector tells it.
struct Tuned {
    batch: usize,
    busy: usize,
    pause: Duration,
    told: Mutex<Vec<usize>>,
}

impl Tuned {
    /// The feed as it is: its own batch size, never paced.
    fn feed() -> Self {
        Self {
            batch: Feed.batch(),
            busy: usize::MAX,
            pause: Duration::ZERO,
            told: Mutex::new(Vec::new()),
        }
    }
}

impl Projection for Tuned {
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
        self.batch
    }
    fn pace(&self, events: usize) -> Duration {
        self.told.lock().unwrap().push(events);
        if events >= self.busy {
            self.pause
        } else {
            Duration::ZERO
        }
    }
}

/// A SQLite log holding `events` synthetic events (appended `batch` at a time), read through a
/// recording source, and empty SQLite read models beside it; the directory goes with the guard.
async fn recorded_history(
    events: u64,
    batch: usize,
) -> (tempfile::TempDir, Arc<Recorded>, Arc<SqliteReadModels>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = Arc::new(
        SqliteEventStore::open_in(dir.path())
            .await
            .expect("the log opens"),
    );
    History::new()
        .write(&*log, None, events, batch, |_| {})
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
    (dir, source, models)
}

#[tokio::test]
async fn a_projector_reads_in_the_batches_its_projection_asks_for() {
    let (_dir, source, models) = recorded_history(50, 50).await;
    let projection: Arc<dyn Projection> = Arc::new(Tuned {
        batch: 7,
        ..Tuned::feed()
    });
    let hub = ProjectionHub::new(std::slice::from_ref(&projection), source.watch());
    let projector = tokio::spawn(run(projection, source.clone(), models, hub.clone()));
    hub.wait_for(&[], 50, Duration::from_secs(10))
        .await
        .expect("the projector catches up");
    projector.abort();
    let limits = source.limits.lock().unwrap().clone();
    // Eight reads of seven (the last one gets one event), then the reads at the head.
    assert!(limits.len() >= 8, "{limits:?}");
    assert!(limits.iter().all(|&l| l == 7), "{limits:?}");
}

/// A rebuild reads the whole log, so it reads at least [`REBUILD_BATCH`] events at a time;
/// projections rebuilt together read each batch once, and end with the same rows as the same
/// projections rebuilt one after another.
#[tokio::test]
async fn projections_rebuilt_together_read_the_log_once_and_match_their_rebuilds_alone() {
    let (_dir, source, models) = recorded_history(3000, 500).await;
    let chosen: Vec<Arc<dyn Projection>> = projections::all()
        .into_iter()
        .filter(|p| ["users", "feed", "comments", "stats"].contains(&p.name()))
        .collect();
    let mut alone = Vec::new();
    for projection in &chosen {
        rebuild(
            projection.clone(),
            source.clone(),
            models.clone(),
            None,
            &|_, _| {},
        )
        .await
        .expect("a rebuild alone");
        alone.push(models.dump(projection.name()).await.expect("a dump"));
    }
    source.limits.lock().unwrap().clear();

    let reported = Mutex::new(Vec::new());
    let built = rebuild_together(
        &chosen,
        source.clone(),
        models.clone(),
        None,
        &|name, at, _| reported.lock().unwrap().push((name, at)),
    )
    .await
    .expect("the rebuild together");
    assert_eq!(
        built.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        chosen.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "the generations come back in the order asked"
    );
    for ((name, generation), dump) in built.iter().zip(&alone) {
        assert_eq!(generation.position, 3000, "{name}");
        assert_eq!(
            models.live(name).await.unwrap().map(|g| g.number),
            Some(generation.number),
            "{name} was promoted"
        );
        assert_eq!(&models.dump(name).await.expect("a dump"), dump, "{name}");
    }
    // One batch of 3 000 events and the empty read at the head: read once for all four.
    assert_eq!(
        *source.limits.lock().unwrap(),
        vec![REBUILD_BATCH; 2],
        "the reads of the rebuild together"
    );
    let reported = reported.into_inner().unwrap();
    assert_eq!(reported.len(), chosen.len(), "{reported:?}");
    assert!(reported.iter().all(|&(_, at)| at == 3000), "{reported:?}");
}

#[test]
fn the_search_projection_asks_for_more_than_the_default_and_the_shared_tail_holds_four() {
    assert!(Search.batch() > BATCH);
    // Under load the search projector reads a full batch, applies it, and reads on: the
    // events that came meanwhile must still be in the tail, or it reads them from the store.
    assert!(4 * Search.batch() <= StoreSource::TAIL);
    assert_eq!(Feed.batch(), BATCH);
}

/// The real SQLite read models, with a pace of their own, the batches applied counted, and
/// (with `promotion_fails`) every promotion failing.
struct Instrumented {
    inner: Arc<SqliteReadModels>,
    pace: Duration,
    batches: AtomicUsize,
    promotion_fails: bool,
    /// How long each batch waits before it is applied (to lose a race on purpose).
    late: Duration,
    /// How long each batch says it held the shared writer (`None`: what the store says).
    held: Option<Duration>,
}

impl Instrumented {
    fn new(inner: impl Into<Arc<SqliteReadModels>>) -> Self {
        Self {
            inner: inner.into(),
            pace: Duration::ZERO,
            batches: AtomicUsize::new(0),
            promotion_fails: false,
            late: Duration::ZERO,
            held: None,
        }
    }
}

#[async_trait]
impl ReadModelStore for Instrumented {
    async fn live(&self, projection: &str) -> Result<Option<Generation>, ReadModelError> {
        self.inner.live(projection).await
    }
    async fn create_generation(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<Generation, ReadModelError> {
        self.inner.create_generation(projection, version).await
    }
    async fn apply(
        &self,
        projection: &str,
        generation: u32,
        changes: &[Change],
        from: Position,
        to: Position,
    ) -> Result<(), ReadModelError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.late).await;
        self.inner
            .apply(projection, generation, changes, from, to)
            .await
    }
    async fn promote(
        &self,
        projection: &str,
        generation: u32,
    ) -> Result<Promotion, ReadModelError> {
        if self.promotion_fails {
            return Err(ReadModelError::Backend("the promotion broke".into()));
        }
        self.inner.promote(projection, generation).await
    }
    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError> {
        self.inner.dump(projection).await
    }
    fn pace(&self, _projection: &str) -> Duration {
        self.pace
    }
    fn held(&self, projection: &str) -> Option<Duration> {
        self.held.or_else(|| self.inner.held(projection))
    }
}

/// On SQLite every projection's transactions take turns on one writer: a projector whose
/// batches hold it longer than a turn reads fewer events next time, in proportion (a hot
/// post's fan-out of notifications kept every other read model waiting for seconds), and the
/// store says how long each batch held it.
#[tokio::test]
async fn a_projector_whose_batches_hold_the_shared_writer_long_reads_smaller_ones() {
    let (_dir, source, models) = recorded_history(2_000, 500).await;
    let store = Arc::new(Instrumented {
        // Ten turns: the next batch gets a tenth of the events.
        held: Some(TURN * 10),
        ..Instrumented::new(models.clone())
    });
    let projection: Arc<dyn Projection> = Arc::new(Feed);
    let hub = ProjectionHub::new(std::slice::from_ref(&projection), source.watch());
    let projector = tokio::spawn(run(projection, source.clone(), store, hub.clone()));
    hub.wait_for(&[], 2_000, Duration::from_secs(30))
        .await
        .expect("the projector catches up");
    projector.abort();
    let limits = source.limits.lock().unwrap().clone();
    assert_eq!(limits[..3], [BATCH, BATCH / 10, BATCH / 100], "{limits:?}");
    assert!(limits[3..].iter().all(|&l| l == 1), "{limits:?}");
    // The real store measured its own: the last batch held the writer for some time, and far
    // less than the wait a test could notice.
    let held = models.held(Feed.name()).expect("SQLite's writer is shared");
    assert!(
        held > Duration::ZERO && held < Duration::from_secs(5),
        "{held:?}"
    );
}

/// An empty SQLite log, a source reading it and empty SQLite read models beside it; the
/// directory goes with the guard.
async fn empty_log() -> (
    tempfile::TempDir,
    Arc<SqliteEventStore>,
    Arc<dyn EventSource>,
    Arc<SqliteReadModels>,
) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = Arc::new(
        SqliteEventStore::open_in(dir.path())
            .await
            .expect("the log opens"),
    );
    let source: Arc<dyn EventSource> = Arc::new(StoreSource::new(log.clone()));
    let models = Arc::new(
        SqliteReadModels::open(&dir.path().join("readmodels.db"))
            .await
            .expect("the read models open"),
    );
    (dir, log, source, models)
}

/// Appends 40 events one at a time, 5 ms apart, to a log followed by a live feed projector
/// and returns how many batches the projector applied for them and how long the appends took.
async fn batches_for_a_trickle(pace: Duration) -> (usize, Duration) {
    let (_dir, log, source, models) = empty_log().await;
    let store = Arc::new(Instrumented {
        pace,
        ..Instrumented::new(models)
    });
    let projection: Arc<dyn Projection> = Arc::new(Feed);
    let hub = ProjectionHub::new(std::slice::from_ref(&projection), source.watch());
    let projector = tokio::spawn(run(projection, source, store.clone(), hub.clone()));
    hub.wait_for(&[], 0, Duration::from_secs(10))
        .await
        .expect("the projector starts");
    let before = store.batches.load(Ordering::SeqCst);
    let mut history = History::new();
    let started = std::time::Instant::now();
    for _ in 0..40 {
        log.append_many(group(history.take(1)), None)
            .await
            .expect("an append");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    let head = log.head().await.expect("the head");
    hub.wait_for(&[], head, Duration::from_secs(10))
        .await
        .expect("the projector catches up");
    projector.abort();
    (store.batches.load(Ordering::SeqCst) - before, took)
}

/// A store's pace gathers what arrives meanwhile into one batch (fewer transactions on a
/// database server); without one, a projector that keeps up applies each event on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_store_gets_fewer_larger_batches_from_a_live_projector() {
    let (unpaced, _) = batches_for_a_trickle(Duration::ZERO).await;
    let (paced, took) = batches_for_a_trickle(Duration::from_millis(100)).await;
    // At most a batch per 100 ms of appending, plus the first and the last.
    let most = took.as_millis() as usize / 100 + 2;
    assert!(
        paced <= most,
        "paced: {paced} batches for 40 events appended in {took:?}"
    );
    assert!(
        unpaced > 2 * paced,
        "unpaced: {unpaced} batches, paced: {paced}"
    );
}

/// The search projection commits less often under load: a projector asks its projection for
/// the pace after each batch with that batch's size, waits it out before the next batch, and
/// does not wait after a small one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_is_paced_by_the_size_of_the_batch_it_has_just_applied() {
    let (_dir, log, source, models) = empty_log().await;
    let paced = Arc::new(Tuned {
        busy: 10,
        pause: Duration::from_secs(2),
        ..Tuned::feed()
    });
    let projection: Arc<dyn Projection> = paced.clone();
    let hub = ProjectionHub::new(std::slice::from_ref(&projection), source.watch());
    let projector = tokio::spawn(run(projection, source, models, hub.clone()));
    hub.wait_for(&[], 0, Duration::from_secs(10))
        .await
        .expect("the projector starts");
    let mut history = History::new();
    let mut append_and_time = async |events: usize| {
        let started = std::time::Instant::now();
        log.append_many(group(history.take(events)), None)
            .await
            .expect("an append");
        let head = log.head().await.expect("the head");
        hub.wait_for(&[], head, Duration::from_secs(10))
            .await
            .expect("the projector catches up");
        started.elapsed()
    };
    // A busy batch goes through at once; the event after it waits out most of the pause.
    assert!(append_and_time(10).await < Duration::from_secs(1));
    let after_busy = append_and_time(1).await;
    assert!(after_busy >= Duration::from_secs(1), "{after_busy:?}");
    // After a batch of one, the next event is applied without a pause.
    let after_quiet = append_and_time(1).await;
    assert!(after_quiet < Duration::from_secs(1), "{after_quiet:?}");
    // The projector reports its position before it asks for the pace, so the last batch's
    // size may reach the projection a moment after the wait above returns.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while paced.told.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    projector.abort();
    assert_eq!(paced.told.lock().unwrap()[..], [10, 1, 1]);
}

/// A rebuild whose promotion fails says so in the projection's status, and no longer shows a
/// rebuild under way.
#[tokio::test]
async fn a_failed_promotion_is_reported_in_the_status() {
    let (dir, source, _) = recorded_history(40, 40).await;
    let store = Arc::new(Instrumented {
        promotion_fails: true,
        ..Instrumented::new(
            SqliteReadModels::open(&dir.path().join("other.db"))
                .await
                .expect("the read models open"),
        )
    });
    let projection: Arc<dyn Projection> = Arc::new(Feed);
    let hub = ProjectionHub::new(std::slice::from_ref(&projection), source.watch());
    let failed = rebuild(projection, source, store, Some(hub.clone()), &|_, _| {}).await;
    assert!(failed.is_err());
    let status = hub.statuses().remove(0);
    assert!(status.rebuild.is_none(), "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("the promotion broke")),
        "{status:?}"
    );
}

/// Two projectors of one model on one database (two `serve` processes): the one that always
/// comes second finds every batch applied already (`Moved`). That is no failure: it re-attaches
/// from the other's checkpoint at once, keeps no error, and is at the head as soon as the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_that_loses_every_race_keeps_up_without_an_error() {
    let (_dir, log, source, models) = empty_log().await;
    let projection: Arc<dyn Projection> = Arc::new(Feed);
    // As `serve` does before it starts its projectors (two starting on an empty store would
    // each build a first generation, and one would replace the other's).
    projections::runner::prepare(std::slice::from_ref(&projection), models.as_ref())
        .await
        .expect("a first generation");
    let first = Arc::new(Instrumented::new(models.clone()));
    let second = Arc::new(Instrumented {
        late: Duration::from_millis(30),
        ..Instrumented::new(models)
    });
    let first_hub = ProjectionHub::new(std::slice::from_ref(&projection), source.watch());
    let second_hub = ProjectionHub::new(std::slice::from_ref(&projection), source.watch());
    let projectors = [
        tokio::spawn(run(
            projection.clone(),
            source.clone(),
            first,
            first_hub.clone(),
        )),
        tokio::spawn(run(projection, source, second.clone(), second_hub.clone())),
    ];
    for hub in [&first_hub, &second_hub] {
        hub.wait_for(&[], 0, Duration::from_secs(10))
            .await
            .expect("the projector starts");
    }
    let mut history = History::new();
    // Two seconds of appends, 60 ms apart: the second projector loses each one (30 ms late).
    for _ in 0..34 {
        log.append_many(group(history.take(1)), None)
            .await
            .expect("an append");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let head = log.head().await.expect("the head");
    first_hub
        .wait_for(&[], head, Duration::from_secs(10))
        .await
        .expect("the first projector catches up");
    // Retried with backoff (100 ms doubling), the loser would sleep 1.6 s and more by now.
    second_hub
        .wait_for(&[], head, Duration::from_secs(1))
        .await
        .expect("the second projector is at the head soon after the first");
    let status = &second_hub.statuses()[0];
    assert_eq!(status.last_error, None, "{status:?}");
    assert!(
        second.batches.load(Ordering::SeqCst) > 1,
        "the second projector tried batches of its own"
    );
    for p in projectors {
        p.abort();
    }
}
