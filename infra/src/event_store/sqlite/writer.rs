//! Group commit: the one task that writes.
//!
//! `append_many` queues a [`Request`] and waits for its answer. The writer takes everything
//! queued (up to [`MAX_BATCH`]) into one `BEGIN IMMEDIATE` transaction, so the cost of the
//! fsync at `COMMIT` is shared by all of them; while it waits on that fsync, the next batch
//! queues up. Nobody hears back before the `COMMIT` is durable; if it fails, every request of
//! the batch gets the error.
//!
//! Each statement is a round trip to sqlx's SQLite thread, so a batch is decided in memory and
//! written with a handful of statements whatever its size (the planned path):
//! 1. `BEGIN IMMEDIATE`; read the stored idempotency keys the batch uses (one `SELECT`), the
//!    versions of its streams the writer does not remember (one `SELECT`) and, once per open,
//!    the last position.
//! 2. Decide every request in order against those ([`Plan`]): a refused one is left out, so
//!    it is refused alone while its neighbours commit, with no savepoint.
//! 3. Insert all the batch's events with multi-row `INSERT`s (prepared once per row count, at
//!    most one per set bit of the count), its new keys likewise, then `COMMIT`.
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

use commands::{AppendResult, Committed, ExpectedVersion, IdempotencyKey, StoreError};
use domain::{Position, StreamId};
use lru::LruCache;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Error as SqlxError};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, field, instrument, warn};

use super::plan::{Decision, Plan, RecordedKey, Row};
use super::{backend, recorded_key, to_i64, to_u64};
pub(super) use crate::event_store::write_stats::Counters;
pub use crate::event_store::write_stats::WriteStats;
use crate::event_store::write_stats::{answer_committed, fail_all};

/// The most requests committed in one transaction; bounds the latency of the first one.
const MAX_BATCH: usize = 256;
/// Streams whose version the writer remembers (some megabytes at most).
const VERSION_CACHE: NonZeroUsize = NonZeroUsize::new(65_536).expect("not zero");
/// The most rows one `INSERT` carries: a power of two, and with nine columns far below
/// SQLite's limit of 32 766 variables.
const MAX_ROWS: usize = 256;

const INSERT_EVENTS: &str = "INSERT INTO events \
    (position, event_id, stream, version, type, schema, occurred_at, data, metadata) VALUES ";
const INSERT_KEYS: &str = "INSERT INTO idempotency_keys (key, fingerprint, results) VALUES ";
/// `INSERT_EVENTS` for 1, 2, 4, ... `MAX_ROWS` rows: few texts, so sqlx prepares each once.
static EVENT_INSERTS: LazyLock<Vec<String>> = LazyLock::new(|| multi_row(INSERT_EVENTS, 9));
static KEY_INSERTS: LazyLock<Vec<String>> = LazyLock::new(|| multi_row(INSERT_KEYS, 3));

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
    conn: SqliteConnection,
    head: watch::Sender<Position>,
    stats: Arc<Counters>,
    /// Committed versions of recently written streams.
    versions: LruCache<StreamId, u64>,
    /// The last position stored, once read.
    last_position: Option<Position>,
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
        conn: SqliteConnection,
        head: watch::Sender<Position>,
        stats: Arc<Counters>,
    ) -> Self {
        Self {
            conn,
            head,
            stats,
            versions: LruCache::new(VERSION_CACHE),
            last_position: None,
        }
    }

    /// Commits batches until the store is dropped and the queue is drained.
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.commit(std::mem::take(&mut batch)).await;
        }
        if let Err(e) = self.conn.close().await {
            warn!(error = %e, "closing the event store's write connection failed");
        }
        debug!("event store writer stopped");
    }

    #[instrument(
        name = "group_commit",
        level = "debug",
        skip_all, fields(batch = batch.len(), events = field::Empty, head = field::Empty))]
    async fn commit(&mut self, batch: Vec<Request>) {
        let outcomes = match self.planned(&batch).await {
            Ok(Some(outcomes)) => Ok(outcomes),
            Ok(None) => self.with_savepoints(&batch).await,
            Err(failure) => Err(failure),
        };
        let replies = batch.into_iter().map(|r| r.reply);
        match outcomes {
            Ok(outcomes) => answer_committed(&self.stats, &self.head, replies.collect(), outcomes),
            Err(failure) => {
                self.roll_back().await;
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
    async fn planned(&mut self, batch: &[Request]) -> Result<Option<Outcomes>, StoreError> {
        self.exec("BEGIN IMMEDIATE", "cannot begin a transaction")
            .await?;
        let keys = self.recorded_keys(batch).await?;
        let (versions, remembered) = self.stream_versions(batch).await?;
        let head = self.last_position().await?;
        let mut plan = Plan::new(versions, head, keys);
        let mut outcomes = Vec::with_capacity(batch.len());
        for request in batch {
            let outcome = match plan.decide(request) {
                Decision::Answer(answer) => answer,
                Decision::Undecidable => return self.abandon().await,
                Decision::Conflict(conflict) => {
                    if let StoreError::Conflict { stream, .. } = &conflict
                        && let Some(&believed) = remembered.get(stream)
                        && self.stored_version(stream).await? != believed
                    {
                        warn!(%stream, "the writer's remembered version was wrong");
                        return self.abandon().await;
                    }
                    self.unless_stored(conflict, &request.writes).await
                }
            };
            outcomes.push(outcome);
        }
        match self.insert_events(plan.rows()).await {
            Err(e) if is_unique_violation(&e) => return self.abandon().await,
            Err(e) => return Err(backend("cannot insert the events", e)),
            Ok(()) => {}
        }
        self.insert_keys(plan.new_keys()).await?;
        self.exec("COMMIT", "cannot commit").await?;
        let (versions, head) = plan.into_committed();
        for (stream, version) in versions {
            self.versions.put(stream.clone(), version);
        }
        self.last_position = Some(head);
        Ok(Some(outcomes))
    }

    /// Rolls the planned path's transaction back, for the savepoint path to take over.
    async fn abandon(&mut self) -> Result<Option<Outcomes>, StoreError> {
        self.exec("ROLLBACK", "cannot roll back").await?;
        Ok(None)
    }

    /// The savepoint path, which reads versions from the table and leaves the writer's memory
    /// of the batch's streams as it commits them.
    async fn with_savepoints(&mut self, batch: &[Request]) -> Result<Outcomes, StoreError> {
        debug!(
            batch = batch.len(),
            "group commit with a savepoint per request"
        );
        for write in batch.iter().flat_map(|r| &r.writes) {
            self.versions.pop(&write.stream);
        }
        self.last_position = None;
        let outcomes = self.apply_all(batch).await?;
        let appended = outcomes.iter().flatten().filter(|c| !c.replayed);
        for result in appended.flat_map(|c| &c.results) {
            self.versions
                .put(result.stream.clone(), result.last_version);
        }
        Ok(outcomes)
    }

    /// The stored idempotency keys among the batch's keys, read with one statement.
    async fn recorded_keys<'b>(
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
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT key, fingerprint, results FROM idempotency_keys \
             WHERE key IN (SELECT value FROM json_each(?))",
        )
        .bind(json_array(keys.iter())?)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| backend("cannot look up the idempotency keys", e))?;
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
    async fn stream_versions<'b>(
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
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT j.value, COALESCE((SELECT MAX(version) FROM events WHERE stream = j.value), 0) \
             FROM json_each(?) AS j",
        )
        .bind(json_array(unknown.keys())?)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| backend("cannot read the stream versions", e))?;
        for (stream, version) in rows {
            if let Some(&stream) = unknown.get(stream.as_str()) {
                versions.insert(stream, to_u64(version)?);
            }
        }
        Ok((versions, remembered))
    }

    async fn stored_version(&mut self, stream: &StreamId) -> Result<u64, StoreError> {
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = ?")
                .bind(stream.as_str())
                .fetch_one(&mut self.conn)
                .await
                .map_err(|e| backend("cannot read the stream version", e))?;
        to_u64(version)
    }

    async fn last_position(&mut self) -> Result<Position, StoreError> {
        if let Some(position) = self.last_position {
            return Ok(position);
        }
        // AUTOINCREMENT never reuses a position, not even one whose row is gone.
        let last: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), \
                        COALESCE((SELECT MAX(position) FROM events), 0))",
        )
        .fetch_one(&mut self.conn)
        .await
        .map_err(|e| backend("cannot read the last position", e))?;
        let last = to_u64(last)?;
        self.last_position = Some(last);
        Ok(last)
    }

    /// A refused request's answer: the original results if all its events are stored as it
    /// would have written them (a retry), `EventIdReused` if some are, else the refusal.
    async fn unless_stored(
        &mut self,
        refusal: StoreError,
        writes: &[EncodedWrite],
    ) -> Result<Committed, StoreError> {
        match self.stored(writes).await? {
            Stored::AsRequested(results) => Ok(Committed {
                results,
                replayed: true,
            }),
            Stored::Elsewhere => Err(StoreError::EventIdReused),
            Stored::Nowhere => Err(refusal),
        }
    }

    async fn insert_events(&mut self, rows: &[Row<'_>]) -> Result<(), SqlxError> {
        for chunk in power_of_two_chunks(rows) {
            let mut insert = sqlx::query(&EVENT_INSERTS[chunk.len().trailing_zeros() as usize]);
            for row in chunk {
                insert = insert
                    .bind(saturating_i64(row.position))
                    .bind(row.event.event_id.as_str())
                    .bind(row.stream.as_str())
                    .bind(saturating_i64(row.version))
                    .bind(row.event.event_type.as_str())
                    .bind(row.event.schema)
                    .bind(row.event.occurred_at.as_str())
                    .bind(row.event.data.as_str())
                    .bind(row.event.metadata.as_str());
            }
            insert.execute(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn insert_keys(
        &mut self,
        keys: &[(&IdempotencyKey, Vec<AppendResult>)],
    ) -> Result<(), StoreError> {
        for chunk in power_of_two_chunks(keys) {
            let mut insert = sqlx::query(&KEY_INSERTS[chunk.len().trailing_zeros() as usize]);
            for (key, results) in chunk {
                insert = insert
                    .bind(key.key.as_str())
                    .bind(key.fingerprint.as_str())
                    .bind(results_json(results)?);
            }
            insert
                .execute(&mut self.conn)
                .await
                .map_err(|e| backend("cannot record the idempotency keys", e))?;
        }
        Ok(())
    }

    /// Runs the whole batch in one transaction. The outer error aborts the batch; the inner
    /// results are each request's own answer.
    async fn apply_all(&mut self, batch: &[Request]) -> Result<Outcomes, StoreError> {
        self.exec("BEGIN IMMEDIATE", "cannot begin a transaction")
            .await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for request in batch {
            outcomes.push(self.apply(request).await?);
        }
        self.exec("COMMIT", "cannot commit").await?;
        Ok(outcomes)
    }

    async fn roll_back(&mut self) {
        // Fails harmlessly when the failed statement already ended the transaction.
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut self.conn).await {
            debug!(error = %e, "rollback after a failed batch");
        }
    }

    /// One request inside its savepoint: kept if it succeeds, rolled back alone if refused.
    async fn apply(
        &mut self,
        request: &Request,
    ) -> Result<Result<Committed, StoreError>, StoreError> {
        self.exec("SAVEPOINT request", "cannot open a savepoint")
            .await?;
        let mut outcome = self.attempt(request).await;
        if outcome.is_err() {
            self.exec("ROLLBACK TO request", "cannot roll back a savepoint")
                .await?;
            if let Err(StoreError::Conflict { .. } | StoreError::EventIdReused) = outcome {
                outcome = match self.stored(&request.writes).await {
                    Ok(Stored::AsRequested(results)) => Ok(Committed {
                        results,
                        replayed: true,
                    }),
                    Ok(Stored::Elsewhere) => Err(StoreError::EventIdReused),
                    Ok(Stored::Nowhere) => outcome,
                    Err(e) => Err(e),
                };
            }
        }
        self.exec("RELEASE request", "cannot release a savepoint")
            .await?;
        Ok(outcome)
    }

    async fn attempt(&mut self, request: &Request) -> Result<Committed, StoreError> {
        if let Some(key) = &request.idempotency
            && let Some(answer) = recorded_key(&mut self.conn, key).await?
        {
            return answer;
        }
        let mut results = Vec::with_capacity(request.writes.len());
        for write in &request.writes {
            if let Some(result) = self.write(write).await? {
                results.push(result);
            }
        }
        if let Some(key) = &request.idempotency {
            self.record_key(key, &results).await?;
        }
        Ok(Committed {
            results,
            replayed: false,
        })
    }

    /// Checks the expectation and appends the events after the stream's current version.
    async fn write(&mut self, write: &EncodedWrite) -> Result<Option<AppendResult>, StoreError> {
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = ?")
                .bind(write.stream.as_str())
                .fetch_one(&mut self.conn)
                .await
                .map_err(|e| backend("cannot read the stream version", e))?;
        let current = to_u64(current)?;
        if !write.expected.admits(current) {
            return Err(StoreError::Conflict {
                stream: write.stream.clone(),
                expected: write.expected,
                actual: current,
            });
        }
        let mut positions = Vec::with_capacity(write.events.len());
        for (version, event) in (current + 1..).zip(&write.events) {
            positions.push(self.insert(&write.stream, version, event).await?);
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

    async fn insert(
        &mut self,
        stream: &StreamId,
        version: u64,
        event: &EncodedEvent,
    ) -> Result<Position, StoreError> {
        let done = sqlx::query(
            "INSERT INTO events \
             (event_id, stream, version, type, schema, occurred_at, data, metadata) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&event.event_id)
        .bind(stream.as_str())
        .bind(to_i64(version)?)
        .bind(&event.event_type)
        .bind(event.schema)
        .bind(&event.occurred_at)
        .bind(&event.data)
        .bind(&event.metadata)
        .execute(&mut self.conn)
        .await
        .map_err(|e| {
            if is_duplicate_event_id(&e) {
                StoreError::EventIdReused
            } else {
                backend("cannot insert an event", e)
            }
        })?;
        to_u64(done.last_insert_rowid())
    }

    async fn record_key(
        &mut self,
        key: &IdempotencyKey,
        results: &[AppendResult],
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO idempotency_keys (key, fingerprint, results) VALUES (?, ?, ?)")
            .bind(&key.key)
            .bind(&key.fingerprint)
            .bind(results_json(results)?)
            .execute(&mut self.conn)
            .await
            .map_err(|e| backend("cannot record the idempotency key", e))?;
        Ok(())
    }

    /// Looks for the event ids of a refused request: were they committed before?
    async fn stored(&mut self, writes: &[EncodedWrite]) -> Result<Stored, StoreError> {
        let (mut found, mut missing) = (0usize, 0usize);
        let mut results = Vec::with_capacity(writes.len());
        let mut layout_matches = true;
        let mut previous_position = 0;
        for write in writes.iter().filter(|w| !w.events.is_empty()) {
            let mut rows = Vec::with_capacity(write.events.len());
            for event in &write.events {
                let row: Option<(i64, String, i64)> = sqlx::query_as(
                    "SELECT position, stream, version FROM events WHERE event_id = ?",
                )
                .bind(&event.event_id)
                .fetch_optional(&mut self.conn)
                .await
                .map_err(|e| backend("cannot look up event ids", e))?;
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

    async fn exec(&mut self, sql: &'static str, context: &str) -> Result<(), StoreError> {
        sqlx::query(sql)
            .execute(&mut self.conn)
            .await
            .map(drop)
            .map_err(|e| backend(context, e))
    }
}

/// The insert failed because the event id is stored already (not because of the version).
fn is_duplicate_event_id(e: &SqlxError) -> bool {
    matches!(e, SqlxError::Database(db)
        if db.is_unique_violation() && db.message().contains("events.event_id"))
}

/// Whether an insert failed on a unique index: a stored event id, or a version or position the
/// plan believed free.
fn is_unique_violation(e: &SqlxError) -> bool {
    matches!(e, SqlxError::Database(db) if db.is_unique_violation())
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
            assert_eq!(sql.matches('?').count(), 9 << i);
        }
        assert_eq!(KEY_INSERTS[3].matches('?').count(), 3 * 8);
    }
}
