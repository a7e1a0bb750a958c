//! Group commit: the one thread that writes.
//!
//! `append_many` queues a [`Request`] and waits for its answer. The writer thread owns the
//! file's only read-write connection (rusqlite) and takes everything
//! queued (up to [`MAX_BATCH`]) into one `BEGIN IMMEDIATE` transaction, so the cost of the
//! fsync at `COMMIT` is shared by all of them; while it waits on that fsync, the next batch
//! queues up. Nobody hears back before the `COMMIT` is durable; if it fails, every request of
//! the batch gets the error.
//!
//! A batch is decided in memory and written with a handful of prepared statements whatever
//! its size (the planned path). They run on the writer's own thread, so a batch costs one
//! hand-off in per request and one answer out; sqlx's driver handed every statement to its
//! worker thread and back (BENCHMARKS.md, "The log's writer on a thread of its own"):
//! 1. `BEGIN IMMEDIATE`; read the stored idempotency keys the batch uses (one `SELECT`), the
//!    versions of its streams the writer does not remember (one `SELECT`) and, once per open,
//!    the last position.
//! 2. Decide every request in order against those ([`Plan`]): a refused one is left out, so
//!    it is refused alone while its neighbours commit, with no savepoint.
//! 3. Insert all the batch's events with multi-row `INSERT`s (prepared once per row count, at
//!    most one per set bit of the count), its new keys likewise; every [`INDEX_EVERY`] or
//!    [`INDEX_EVERY_EVENTS`], index the log's tail by stream (`stream_index`); then `COMMIT`.
//!
//! The writer remembers the version of the streams it wrote lately ([`VERSION_CACHE`]
//! streams, least recently used forgotten first) and the last position. Being the only writer
//! of the file, it is right about them; the database still has the last word:
//! - What a batch decided enters that memory only after its `COMMIT` succeeded; any failure of
//!   a batch forgets everything, to be read again.
//! - A refusal made on a remembered version stands only after that version is read again; if
//!   it was wrong, the batch takes the savepoint path.
//! - An event id stored before is caught by its unique index: the multi-row insert fails, the
//!   transaction is rolled back, and the batch takes the savepoint path.
//! - Should another connection have appended after all (the memory then stale), the positions
//!   the plan handed out are taken: the insert fails on the primary key, and the batch takes
//!   the savepoint path, which reads every version from the database. (The log has no unique
//!   index on `(stream, version)` since the stream index is written in batches.)
//!
//! The savepoint path (also for a batch that uses one event id twice) runs each request in its
//! own savepoint with the version read from the table, so a refused one is rolled back alone,
//! and tells a retry of a stored call (answered with the original positions) from a reuse of
//! its ids. It is slower and rare: it needs a client retrying an append whose answer it lost.
//!
//! Versions are checked after the requests before it in the same batch, so of two `Exact(n)`
//! appends to one stream exactly one wins. Being the only writer also makes positions, which
//! the plan hands out after the last one stored, follow commit order.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use commands::{AppendResult, Committed, ExpectedVersion, IdempotencyKey, StoreError};
use domain::{Position, StreamId};
use lru::LruCache;
use rusqlite::{Connection, Error as SqliteError, ErrorCode, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, field, instrument, warn};

use super::plan::{Decision, Plan, RecordedKey, Row};
use super::{
    STREAM_INDEX_FLUSH, STREAM_VERSION, STREAM_VERSIONS, recorded_key, sqlite_error, to_i64, to_u64,
};
pub(super) use crate::event_store::write_stats::Counters;
pub use crate::event_store::write_stats::WriteStats;
use crate::event_store::write_stats::{answer_committed, fail_all};

/// The most requests committed in one transaction; bounds the latency of the first one.
const MAX_BATCH: usize = 256;
/// Streams whose version the writer remembers (some megabytes at most).
const VERSION_CACHE: NonZeroUsize = NonZeroUsize::new(65_536).expect("not zero");
/// The log's tail left unindexed by stream (`stream_index`) while appends keep coming: at most
/// this many events, or this long. Each stream touched in that time costs a leaf of the index
/// once, where indexed at every commit it cost one per commit; reads of a stream scan the
/// tail (see the module docs of `sqlite.rs`).
const INDEX_EVERY_EVENTS: usize = 2048;
const INDEX_EVERY: Duration = Duration::from_millis(50);
/// The most rows one `INSERT` carries: a power of two, and with nine columns far below
/// SQLite's limit of 32 766 variables.
const MAX_ROWS: usize = 256;

const INSERT_EVENTS: &str = "INSERT INTO events \
    (position, event_id, stream, version, type, schema, occurred_at, data, metadata) VALUES ";
const INSERT_KEYS: &str = "INSERT INTO idempotency_keys (key, fingerprint, results) VALUES ";
/// `INSERT_EVENTS` for 1, 2, 4, ... `MAX_ROWS` rows: few texts, each prepared once.
static EVENT_INSERTS: LazyLock<Vec<String>> =
    LazyLock::new(|| multi_row(INSERT_EVENTS, EVENT_COLUMNS));
static KEY_INSERTS: LazyLock<Vec<String>> = LazyLock::new(|| multi_row(INSERT_KEYS, KEY_COLUMNS));
/// The columns of [`INSERT_EVENTS`] and [`INSERT_KEYS`]: the placeholders of one row.
const EVENT_COLUMNS: usize = 9;
const KEY_COLUMNS: usize = 3;

/// Each request's own answer, in the batch's order.
type Outcomes = Vec<Result<Committed, StoreError>>;

/// Streams at their versions.
type Versions<'b> = HashMap<&'b StreamId, u64>;

/// One `append_many` call, validated and serialised.
pub(super) struct Request {
    pub writes: Vec<EncodedWrite>,
    pub idempotency: Option<IdempotencyKey>,
    pub reply: oneshot::Sender<Result<Committed, StoreError>>,
}

pub(super) struct EncodedWrite {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<EncodedEvent>,
}

/// An event's columns, ready to bind.
pub(super) struct EncodedEvent {
    pub event_id: String,
    pub event_type: String,
    pub schema: i64,
    pub occurred_at: String,
    pub data: String,
    pub metadata: String,
}

pub(super) struct Writer {
    conn: Connection,
    head: watch::Sender<Position>,
    stats: Arc<Counters>,
    /// Committed versions of recently written streams.
    versions: LruCache<StreamId, u64>,
    /// The last position stored, once read.
    last_position: Option<Position>,
    /// Events committed since the tail was last indexed by stream, and when that was.
    unindexed: usize,
    indexed_at: Instant,
}

/// Where the event ids of a refused request were found.
enum Stored {
    Nowhere,
    /// Some of them, or all but not as this request would have written them.
    Elsewhere,
    /// All of them, as this request would have written them: the original results.
    AsRequested(Vec<AppendResult>),
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        head: watch::Sender<Position>,
        stats: Arc<Counters>,
    ) -> Self {
        Self {
            conn,
            head,
            stats,
            versions: LruCache::new(VERSION_CACHE),
            last_position: None,
            unindexed: 0,
            indexed_at: Instant::now(),
        }
    }

    /// Commits batches until the store is dropped and the queue is drained. Runs on a thread of
    /// its own (it blocks on the queue and on SQLite).
    pub(super) fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH
                && let Ok(next) = queue.try_recv()
            {
                batch.push(next);
            }
            self.commit(std::mem::take(&mut batch));
        }
        if let Err((_, e)) = self.conn.close() {
            warn!(error = %e, "closing the event store's write connection failed");
        }
        debug!("event store writer stopped");
    }

    #[instrument(
        name = "group_commit",
        level = "debug",
        skip_all, fields(batch = batch.len(), events = field::Empty, head = field::Empty))]
    fn commit(&mut self, batch: Vec<Request>) {
        let outcomes = match self.planned(&batch) {
            Ok(Some(outcomes)) => Ok(outcomes),
            Ok(None) => self.with_savepoints(&batch),
            Err(failure) => Err(failure),
        };
        let replies = batch.into_iter().map(|r| r.reply);
        match outcomes {
            Ok(outcomes) => answer_committed(&self.stats, &self.head, replies.collect(), outcomes),
            Err(failure) => {
                self.roll_back();
                // Whether the failed COMMIT left anything is unknown: read it all again.
                self.versions.clear();
                self.last_position = None;
                warn!(error = %failure, "group commit failed");
                fail_all(replies, &failure);
            }
        }
    }

    /// The planned path: the batch decided in memory and written with a few statements, or
    /// `None` (rolled back) when only the savepoint path can answer it. The outer error aborts
    /// the batch; the inner results are each request's own answer.
    fn planned(&mut self, batch: &[Request]) -> Result<Option<Outcomes>, StoreError> {
        self.exec("BEGIN IMMEDIATE", "cannot begin a transaction")?;
        let keys = self.recorded_keys(batch)?;
        let (versions, remembered) = self.stream_versions(batch)?;
        let head = self.last_position()?;
        let mut plan = Plan::new(versions, head, keys);
        let mut outcomes = Vec::with_capacity(batch.len());
        for request in batch {
            let outcome = match plan.decide(request) {
                Decision::Answer(answer) => answer,
                Decision::Undecidable => return self.abandon(),
                Decision::Conflict(conflict) => {
                    if let StoreError::Conflict { stream, .. } = &conflict
                        && let Some(&believed) = remembered.get(stream)
                        && self.stored_version(stream)? != believed
                    {
                        warn!(%stream, "the writer's remembered version was wrong");
                        return self.abandon();
                    }
                    self.unless_stored(conflict, &request.writes)
                }
            };
            outcomes.push(outcome);
        }
        match self.insert_events(plan.rows()) {
            Err(e) if is_unique_violation(&e) => return self.abandon(),
            Err(e) => return Err(sqlite_error("cannot insert the events", e)),
            Ok(()) => {}
        }
        self.insert_keys(plan.new_keys())?;
        let indexed = self.index_streams_if_due(plan.rows().len())?;
        self.exec("COMMIT", "cannot commit")?;
        if indexed {
            self.unindexed = 0;
            self.indexed_at = Instant::now();
        } else {
            self.unindexed += plan.rows().len();
        }
        let (versions, head) = plan.into_committed();
        for (stream, version) in versions {
            self.versions.put(stream.clone(), version);
        }
        self.last_position = Some(head);
        Ok(Some(outcomes))
    }

    /// Indexes the log's tail by stream in the batch's transaction when enough events or time
    /// have gone by since the last time (counting the batch's `events`); whether it did. A
    /// failure leaves the tail as it was (it is read by scanning) and the batch goes on.
    fn index_streams_if_due(&mut self, events: usize) -> Result<bool, StoreError> {
        if self.unindexed + events < INDEX_EVERY_EVENTS && self.indexed_at.elapsed() < INDEX_EVERY {
            return Ok(false);
        }
        self.exec("SAVEPOINT stream_index", "cannot open a savepoint")?;
        if let Err(e) = self.conn.execute_batch(STREAM_INDEX_FLUSH) {
            warn!(error = %e, "indexing the log's tail by stream failed; it is read by scanning");
            self.exec("ROLLBACK TO stream_index", "cannot roll back a savepoint")?;
            self.exec("RELEASE stream_index", "cannot release a savepoint")?;
            return Ok(false);
        }
        self.exec("RELEASE stream_index", "cannot release a savepoint")?;
        Ok(true)
    }

    /// Rolls the planned path's transaction back, for the savepoint path to take over.
    fn abandon(&mut self) -> Result<Option<Outcomes>, StoreError> {
        self.exec("ROLLBACK", "cannot roll back")?;
        Ok(None)
    }

    /// The savepoint path, which reads versions from the table and leaves the writer's memory
    /// of the batch's streams as it commits them.
    fn with_savepoints(&mut self, batch: &[Request]) -> Result<Outcomes, StoreError> {
        debug!(
            batch = batch.len(),
            "group commit with a savepoint per request"
        );
        for write in batch.iter().flat_map(|r| &r.writes) {
            self.versions.pop(&write.stream);
        }
        self.last_position = None;
        let outcomes = self.apply_all(batch)?;
        let appended = outcomes.iter().flatten().filter(|c| !c.replayed);
        for result in appended.flat_map(|c| &c.results) {
            self.versions
                .put(result.stream.clone(), result.last_version);
        }
        Ok(outcomes)
    }

    /// The stored idempotency keys among the batch's keys, read with one statement.
    fn recorded_keys<'b>(
        &mut self,
        batch: &'b [Request],
    ) -> Result<HashMap<&'b str, RecordedKey>, StoreError> {
        let keys: HashSet<&str> = batch
            .iter()
            .filter_map(|r| r.idempotency.as_ref())
            .map(|k| k.key.as_str())
            .collect();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let keys_json = json_array(keys.iter())?;
        let rows: Vec<(String, String, String)> = self
            .conn
            .prepare_cached(
                "SELECT key, fingerprint, results FROM idempotency_keys \
                 WHERE key IN (SELECT value FROM json_each(?))",
            )
            .and_then(|mut select| {
                select
                    .query_map([keys_json], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(|e| sqlite_error("cannot look up the idempotency keys", e))?;
        rows.into_iter()
            .filter_map(|(key, fingerprint, results)| {
                let key = *keys.get(key.as_str())?;
                Some(stored_results(&results).map(|results| {
                    let recorded = RecordedKey {
                        fingerprint,
                        results,
                    };
                    (key, recorded)
                }))
            })
            .collect()
    }

    /// Every stream of the batch at its committed version, and those of them that came from
    /// memory. The others are read with one statement.
    fn stream_versions<'b>(
        &mut self,
        batch: &'b [Request],
    ) -> Result<(Versions<'b>, Versions<'b>), StoreError> {
        let mut versions = HashMap::new();
        let mut remembered = HashMap::new();
        let mut unknown = HashMap::new();
        for stream in batch.iter().flat_map(|r| &r.writes).map(|w| &w.stream) {
            if versions.contains_key(stream) || unknown.contains_key(stream.as_str()) {
                continue;
            }
            match self.versions.get(stream) {
                Some(&version) => {
                    versions.insert(stream, version);
                    remembered.insert(stream, version);
                }
                None => {
                    unknown.insert(stream.as_str(), stream);
                }
            }
        }
        if unknown.is_empty() {
            return Ok((versions, remembered));
        }
        let unknown_json = json_array(unknown.keys())?;
        let rows: Vec<(String, i64)> = self
            .conn
            .prepare_cached(&STREAM_VERSIONS)
            .and_then(|mut select| {
                select
                    .query_map([unknown_json], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| sqlite_error("cannot read the stream versions", e))?;
        for (stream, version) in rows {
            if let Some(&stream) = unknown.get(stream.as_str()) {
                versions.insert(stream, to_u64(version)?);
            }
        }
        Ok((versions, remembered))
    }

    fn stored_version(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        let version: i64 = self
            .conn
            .prepare_cached(&STREAM_VERSION)
            .and_then(|mut select| select.query_row([stream.as_str()], |r| r.get(0)))
            .map_err(|e| sqlite_error("cannot read the stream version", e))?;
        to_u64(version)
    }

    fn last_position(&mut self) -> Result<Position, StoreError> {
        if let Some(position) = self.last_position {
            return Ok(position);
        }
        // AUTOINCREMENT never reuses a position, not even one whose row is gone.
        let last: i64 = self
            .conn
            .query_row(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), \
                            COALESCE((SELECT MAX(position) FROM events), 0))",
                [],
                |r| r.get(0),
            )
            .map_err(|e| sqlite_error("cannot read the last position", e))?;
        let last = to_u64(last)?;
        self.last_position = Some(last);
        Ok(last)
    }

    /// A refused request's answer: the original results if all its events are stored as it
    /// would have written them (a retry), `EventIdReused` if some are, else the refusal.
    fn unless_stored(
        &mut self,
        refusal: StoreError,
        writes: &[EncodedWrite],
    ) -> Result<Committed, StoreError> {
        match self.stored(writes)? {
            Stored::AsRequested(results) => Ok(Committed {
                results,
                replayed: true,
            }),
            Stored::Elsewhere => Err(StoreError::EventIdReused),
            Stored::Nowhere => Err(refusal),
        }
    }

    fn insert_events(&mut self, rows: &[Row<'_>]) -> Result<(), SqliteError> {
        for chunk in power_of_two_chunks(rows) {
            let mut insert = self
                .conn
                .prepare_cached(&EVENT_INSERTS[chunk.len().trailing_zeros() as usize])?;
            for (i, row) in chunk.iter().enumerate() {
                let at = i * EVENT_COLUMNS;
                insert.raw_bind_parameter(at + 1, saturating_i64(row.position))?;
                insert.raw_bind_parameter(at + 2, row.event.event_id.as_str())?;
                insert.raw_bind_parameter(at + 3, row.stream.as_str())?;
                insert.raw_bind_parameter(at + 4, saturating_i64(row.version))?;
                insert.raw_bind_parameter(at + 5, row.event.event_type.as_str())?;
                insert.raw_bind_parameter(at + 6, row.event.schema)?;
                insert.raw_bind_parameter(at + 7, row.event.occurred_at.as_str())?;
                insert.raw_bind_parameter(at + 8, row.event.data.as_str())?;
                insert.raw_bind_parameter(at + 9, row.event.metadata.as_str())?;
            }
            insert.raw_execute()?;
        }
        Ok(())
    }

    fn insert_keys(
        &mut self,
        keys: &[(&IdempotencyKey, Vec<AppendResult>)],
    ) -> Result<(), StoreError> {
        let failed = |e| sqlite_error("cannot record the idempotency keys", e);
        for chunk in power_of_two_chunks(keys) {
            let mut insert = self
                .conn
                .prepare_cached(&KEY_INSERTS[chunk.len().trailing_zeros() as usize])
                .map_err(failed)?;
            for (i, (key, results)) in chunk.iter().enumerate() {
                let at = i * KEY_COLUMNS;
                let results = results_json(results)?;
                insert
                    .raw_bind_parameter(at + 1, key.key.as_str())
                    .and_then(|()| insert.raw_bind_parameter(at + 2, key.fingerprint.as_str()))
                    .and_then(|()| insert.raw_bind_parameter(at + 3, results))
                    .map_err(failed)?;
            }
            insert.raw_execute().map_err(failed)?;
        }
        Ok(())
    }

    /// Runs the whole batch in one transaction. The outer error aborts the batch; the inner
    /// results are each request's own answer.
    fn apply_all(&mut self, batch: &[Request]) -> Result<Outcomes, StoreError> {
        self.exec("BEGIN IMMEDIATE", "cannot begin a transaction")?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for request in batch {
            outcomes.push(self.apply(request)?);
        }
        self.exec("COMMIT", "cannot commit")?;
        Ok(outcomes)
    }

    fn roll_back(&mut self) {
        // Fails harmlessly when the failed statement already ended the transaction.
        if let Err(e) = self.conn.execute_batch("ROLLBACK") {
            debug!(error = %e, "rollback after a failed batch");
        }
    }

    /// One request inside its savepoint: kept if it succeeds, rolled back alone if refused.
    fn apply(&mut self, request: &Request) -> Result<Result<Committed, StoreError>, StoreError> {
        self.exec("SAVEPOINT request", "cannot open a savepoint")?;
        let mut outcome = self.attempt(request);
        if outcome.is_err() {
            self.exec("ROLLBACK TO request", "cannot roll back a savepoint")?;
            if let Err(refusal @ (StoreError::Conflict { .. } | StoreError::EventIdReused)) =
                outcome
            {
                outcome = self.unless_stored(refusal, &request.writes);
            }
        }
        self.exec("RELEASE request", "cannot release a savepoint")?;
        Ok(outcome)
    }

    fn attempt(&mut self, request: &Request) -> Result<Committed, StoreError> {
        if let Some(key) = &request.idempotency
            && let Some(answer) = recorded_key(&self.conn, key)?
        {
            return answer;
        }
        let mut results = Vec::with_capacity(request.writes.len());
        for write in &request.writes {
            if let Some(result) = self.write(write)? {
                results.push(result);
            }
        }
        if let Some(key) = &request.idempotency {
            self.record_key(key, &results)?;
        }
        Ok(Committed {
            results,
            replayed: false,
        })
    }

    /// Checks the expectation and appends the events after the stream's current version.
    fn write(&mut self, write: &EncodedWrite) -> Result<Option<AppendResult>, StoreError> {
        let current = self.stored_version(&write.stream)?;
        if !write.expected.admits(current) {
            return Err(StoreError::Conflict {
                stream: write.stream.clone(),
                expected: write.expected,
                actual: current,
            });
        }
        let mut positions = Vec::with_capacity(write.events.len());
        for (version, event) in (current + 1..).zip(&write.events) {
            positions.push(self.insert(&write.stream, version, event)?);
        }
        let (Some(&first_position), Some(&last_position)) = (positions.first(), positions.last())
        else {
            return Ok(None);
        };
        Ok(Some(AppendResult {
            stream: write.stream.clone(),
            first_version: current + 1,
            last_version: current + positions.len() as u64,
            first_position,
            last_position,
        }))
    }

    fn insert(
        &mut self,
        stream: &StreamId,
        version: u64,
        event: &EncodedEvent,
    ) -> Result<Position, StoreError> {
        let version = to_i64(version)?;
        self.conn
            .prepare_cached(
                "INSERT INTO events \
                 (event_id, stream, version, type, schema, occurred_at, data, metadata) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .and_then(|mut insert| {
                insert.execute(rusqlite::params![
                    event.event_id,
                    stream.as_str(),
                    version,
                    event.event_type,
                    event.schema,
                    event.occurred_at,
                    event.data,
                    event.metadata,
                ])
            })
            .map_err(|e| {
                if is_duplicate_event_id(&e) {
                    StoreError::EventIdReused
                } else {
                    sqlite_error("cannot insert an event", e)
                }
            })?;
        to_u64(self.conn.last_insert_rowid())
    }

    fn record_key(
        &mut self,
        key: &IdempotencyKey,
        results: &[AppendResult],
    ) -> Result<(), StoreError> {
        let results = results_json(results)?;
        self.conn
            .prepare_cached(
                "INSERT INTO idempotency_keys (key, fingerprint, results) VALUES (?, ?, ?)",
            )
            .and_then(|mut insert| insert.execute([&key.key, &key.fingerprint, &results]))
            .map_err(|e| sqlite_error("cannot record the idempotency key", e))?;
        Ok(())
    }

    /// Looks for the event ids of a refused request: were they committed before?
    fn stored(&mut self, writes: &[EncodedWrite]) -> Result<Stored, StoreError> {
        let (mut found, mut missing) = (0usize, 0usize);
        let mut results = Vec::with_capacity(writes.len());
        let mut layout_matches = true;
        let mut previous_position = 0;
        for write in writes.iter().filter(|w| !w.events.is_empty()) {
            let mut rows = Vec::with_capacity(write.events.len());
            for event in &write.events {
                let row: Option<(i64, String, i64)> = self
                    .conn
                    .prepare_cached(
                        "SELECT position, stream, version FROM events WHERE event_id = ?",
                    )
                    .and_then(|mut select| {
                        select
                            .query_row([&event.event_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                            .optional()
                    })
                    .map_err(|e| sqlite_error("cannot look up event ids", e))?;
                match row {
                    Some(row) => {
                        found += 1;
                        rows.push(row);
                    }
                    None => missing += 1,
                }
            }
            if missing > 0 {
                continue;
            }
            let Some(&(first_position, _, first_version)) = rows.first() else {
                continue;
            };
            for (i, (position, stream, version)) in rows.iter().enumerate() {
                layout_matches &= stream == write.stream.as_str()
                    && *version == first_version + i as i64
                    && to_u64(*position)? > previous_position;
                previous_position = to_u64(*position)?;
            }
            results.push(AppendResult {
                stream: write.stream.clone(),
                first_version: to_u64(first_version)?,
                last_version: to_u64(first_version)? + rows.len() as u64 - 1,
                first_position: to_u64(first_position)?,
                last_position: previous_position,
            });
        }
        Ok(match (found, missing) {
            (0, _) => Stored::Nowhere,
            (_, 0) if layout_matches => Stored::AsRequested(results),
            _ => Stored::Elsewhere,
        })
    }

    fn exec(&mut self, sql: &'static str, context: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(drop)
            .map_err(|e| sqlite_error(context, e))
    }
}

/// The insert failed because the event id is stored already (not because of the version).
fn is_duplicate_event_id(e: &SqliteError) -> bool {
    matches!(e, SqliteError::SqliteFailure(_, Some(message)) if message.contains("events.event_id"))
        && is_unique_violation(e)
}

/// Whether an insert failed on a unique index: a stored event id, or a version or position the
/// plan believed free.
fn is_unique_violation(e: &SqliteError) -> bool {
    matches!(e, SqliteError::SqliteFailure(failure, _)
    if failure.code == ErrorCode::ConstraintViolation
        && matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        ))
}

/// `prefix` followed by 1, 2, 4, ... [`MAX_ROWS`] rows of `columns` placeholders.
fn multi_row(prefix: &str, columns: usize) -> Vec<String> {
    let row = format!("({})", vec!["?"; columns].join(", "));
    std::iter::successors(Some(1usize), |n| Some(n * 2))
        .take_while(|&n| n <= MAX_ROWS)
        .map(|n| format!("{prefix}{}", vec![row.as_str(); n].join(", ")))
        .collect()
}

/// `items` in pieces of the largest power of two that fits, at most [`MAX_ROWS`]: one
/// statement per set bit of the length (per `MAX_ROWS` beyond it).
fn power_of_two_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let size = MAX_ROWS.min(1 << items.len().ilog2());
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

fn json_array<'a>(items: impl Iterator<Item = &'a &'a str>) -> Result<String, StoreError> {
    serde_json::to_string(&items.collect::<Vec<_>>())
        .map_err(|e| StoreError::Backend(format!("cannot serialise a list: {e}")))
}

fn results_json(results: &[AppendResult]) -> Result<String, StoreError> {
    serde_json::to_string(results)
        .map_err(|e| StoreError::Backend(format!("cannot serialise results: {e}")))
}

fn stored_results(json: &str) -> Result<Vec<AppendResult>, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Backend(format!("stored idempotency results are unreadable: {e}")))
}

/// Positions and versions the plan made from stored ones plus a batch: far below `i64::MAX`.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_one_per_set_bit() {
        let sizes = |n: usize| {
            power_of_two_chunks(&vec![0u8; n])
                .map(<[u8]>::len)
                .collect::<Vec<_>>()
        };
        assert!(sizes(0).is_empty());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(63), [32, 16, 8, 4, 2, 1]);
        assert_eq!(sizes(64), [64]);
        assert_eq!(sizes(600), [256, 256, 64, 16, 8]);
    }

    #[test]
    fn each_chunk_size_has_its_statement() {
        assert_eq!(EVENT_INSERTS.len(), MAX_ROWS.ilog2() as usize + 1);
        for (i, sql) in EVENT_INSERTS.iter().enumerate() {
            assert_eq!(sql.matches('?').count(), EVENT_COLUMNS << i);
        }
        assert_eq!(KEY_INSERTS[3].matches('?').count(), 3 * 8);
    }
}
