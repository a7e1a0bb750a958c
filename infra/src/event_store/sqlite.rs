//! The embedded event store: one SQLite file in WAL mode (ARCHITECTURE.md §3).
//!
//! Writes go through a single writer task that owns the only write connection and commits
//! concurrent appends together (group commit, see `sqlite/writer.rs`); reads use a small pool
//! of read-only connections, which WAL lets run beside the writer. Because there is exactly one writer,
//! positions (the rowid autoincrement) are handed out in commit order, so a reader tailing
//! `read_all` can never skip an event that commits later with a smaller position.
//!
//! Semantics beyond the port's module docs, pinned by the contract suite:
//! - A call without events at all is [`StoreError::Invalid`]; a [`StreamWrite`] without events
//!   is allowed, gets no entry in [`Committed::results`], but its expectation still guards the
//!   batch (a cheap "only if that stream is still at version n").
//! - Several writes for the same stream in one call apply in order, each seeing the previous.
//! - `Exact(0)` and an event id repeated within one call are [`StoreError::Invalid`].
//! - A call whose event ids are all stored, in the same streams at consecutive versions in the
//!   call's order, is answered with the original positions and `replayed: true` (even if its
//!   expectation no longer holds: that is the retry of a lost acknowledgement). If only some
//!   are stored, or elsewhere, it is [`StoreError::EventIdReused`].

mod plan;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use commands::{Committed, EventStore, ExpectedVersion, IdempotencyKey, StoreError, StreamWrite};
use domain::{Envelope, Position, RawEnvelope, StoredEvent, StoredEvents, StreamId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, SqliteExecutor};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::instrument;

use crate::read_model::readers::{QueryError, Readers};
pub use writer::WriteStats;
use writer::{EncodedEvent, EncodedWrite, Request, Writer};

/// The file [`SqliteEventStore::open_in`] uses inside its directory.
pub const FILE_NAME: &str = "events.db";

/// How long a connection waits for a lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader threads for events, each with a read-only connection; WAL lets them all read while
/// the writer commits.
const READ_THREADS: usize = 4;
/// Read-only sqlx connections for the head and idempotency keys.
const READ_CONNECTIONS: u32 = 2;
/// Appends queued for the writer before `append_many` callers wait for room.
const QUEUE_CAPACITY: usize = 1024;
/// Room a `read_all_stored` page starts with: events (at most the limit), and bytes of text
/// per event (it grows if the events are larger).
const STORED_PAGE_HINT: usize = 10_000;
const STORED_EVENT_BYTES: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL UNIQUE,
    stream      TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    type        TEXT    NOT NULL,
    schema      INTEGER NOT NULL,
    occurred_at TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    UNIQUE (stream, version)
) STRICT;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key         TEXT NOT NULL PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    results     TEXT NOT NULL
) STRICT;
";

const READ_STREAM: &str = "SELECT position, event_id, stream, version, type, schema, \
     occurred_at, data, metadata FROM events WHERE stream = ? AND version >= ? ORDER BY version";
const READ_ALL: &str = "SELECT position, event_id, stream, version, type, schema, \
     occurred_at, data, metadata FROM events WHERE position > ? ORDER BY position LIMIT ?";

/// The SQLite event store. Cheap to share behind an `Arc`; dropping it lets the writer finish
/// the queued appends and close.
///
/// ```no_run
/// # async fn demo() -> Result<(), commands::StoreError> {
/// use std::sync::Arc;
/// let store: Arc<dyn commands::EventStore> =
///     Arc::new(infra::event_store::SqliteEventStore::open_in("data".as_ref()).await?);
/// # Ok(()) }
/// ```
pub struct SqliteEventStore {
    requests: mpsc::Sender<Request>,
    /// The reads of events (`read_all`, `read_all_raw`, `read_stream`), a whole query per
    /// hand-off to a thread with its own rusqlite connection.
    readers: Readers,
    /// The rare reads (the head, a recorded idempotency key), through sqlx.
    reads: SqlitePool,
    head: watch::Receiver<Position>,
    stats: Arc<writer::Counters>,
}

impl SqliteEventStore {
    /// Opens (creating if missing) the event store in the SQLite file at `path`, creates its
    /// tables and starts the writer task. Must be called inside a Tokio runtime.
    #[instrument(skip_all, fields(path = %path.display()))]
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            // Statement journals (undo for one statement inside a transaction) in memory, not
            // in temporary files: under `comments` their spills were 8% of the server's CPU.
            .pragma("temp_store", "memory");
        let mut conn = options
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode FULL syncs the log on every commit: acknowledged means durable.
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await
            .map_err(|e| unavailable(&format!("cannot open {}", path.display()), e))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut conn)
            .await
            .map_err(|e| backend("cannot create the event tables", e))?;
        let head = max_position(&mut conn).await?;
        let readers = Readers::open(path, READ_THREADS)
            .map_err(|e| StoreError::Unavailable(format!("cannot open the readers: {e}")))?;
        // No ping before each use: see the read models' pools.
        let reads = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| unavailable("cannot open the read connections", e))?;
        Ok(Self::start(conn, readers, reads, head))
    }

    /// Opens the store in `dir/events.db`, creating the directory if needed.
    pub async fn open_in(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        Self::open(&dir.join(FILE_NAME)).await
    }

    fn start(conn: SqliteConnection, readers: Readers, reads: SqlitePool, head: Position) -> Self {
        let (requests, queue) = mpsc::channel(QUEUE_CAPACITY);
        let (head_tx, head_rx) = watch::channel(head);
        let stats = Arc::new(writer::Counters::default());
        tokio::spawn(Writer::new(conn, head_tx, Arc::clone(&stats)).run(queue));
        Self {
            requests,
            readers,
            reads,
            head: head_rx,
            stats,
        }
    }

    /// Counters of the writer's group commits since open.
    pub fn stats(&self) -> WriteStats {
        self.stats.snapshot()
    }
}

impl SqliteEventStore {
    /// The events after `after`, at most `limit`, with data and metadata read as `D` and `M`.
    async fn read_after<D, M>(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Envelope<D, M>>, StoreError>
    where
        D: serde::de::DeserializeOwned + Send + 'static,
        M: serde::de::DeserializeOwned + Send + 'static,
    {
        let after = saturate(after);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read_rows("cannot read the log", move |c| {
            let mut statement = c.prepare_cached(READ_ALL)?;
            collect(statement.query(rusqlite::params![after, limit])?)
        })
        .await
    }

    /// Runs `read` on a reader thread.
    async fn read_rows<T, F>(&self, context: &'static str, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, ReadFailure> + Send + 'static,
    {
        match self.readers.call(read).await {
            None => Err(StoreError::Unavailable(
                "the event store's readers have stopped".into(),
            )),
            Some(Ok(value)) => Ok(value),
            Some(Err(ReadFailure::Sqlite(e))) => Err(sqlite_error(context, e)),
            Some(Err(ReadFailure::Model(e))) => Err(e),
        }
    }
}

/// Why a read on a reader thread failed: SQLite, or a stored row that does not decode.
type ReadFailure = QueryError<StoreError>;

/// Every row of `rows` as an envelope.
fn collect<D, M>(mut rows: rusqlite::Rows<'_>) -> Result<Vec<Envelope<D, M>>, ReadFailure>
where
    D: serde::de::DeserializeOwned,
    M: serde::de::DeserializeOwned,
{
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

#[async_trait]
impl EventStore for SqliteEventStore {
    #[instrument(level = "debug", skip_all, fields(writes = writes.len()))]
    async fn append_many(
        &self,
        writes: Vec<StreamWrite>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Committed, StoreError> {
        let writes = encode(writes)?;
        let (reply, answer) = oneshot::channel();
        let request = Request {
            writes,
            idempotency,
            reply,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| StoreError::Unavailable("the event store writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the event store writer stopped before answering".into())
        })?
    }

    async fn find_idempotent(&self, key: &IdempotencyKey) -> Result<Option<Committed>, StoreError> {
        recorded_key(&self.reads, key).await?.transpose()
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<Envelope>, StoreError> {
        let stream = stream.as_str().to_owned();
        let from = saturate(from_version);
        self.read_rows("cannot read the stream", move |c| {
            let mut statement = c.prepare_cached(READ_STREAM)?;
            collect(statement.query(rusqlite::params![stream, from])?)
        })
        .await
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<Envelope>, StoreError> {
        self.read_after(after, limit).await
    }

    /// The same rows as `read_all`, with data and metadata checked as JSON but not parsed into
    /// values.
    async fn read_all_raw(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RawEnvelope>, StoreError> {
        self.read_after(after, limit).await
    }

    /// The same rows as `read_all`, their text copied into one page as stored: data and
    /// metadata are not parsed, the event id and time only checked for their spelling.
    async fn read_all_stored(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<StoredEvents, StoreError> {
        let after = saturate(after);
        let events = limit.min(STORED_PAGE_HINT);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read_rows("cannot read the log", move |c| {
            let mut statement = c.prepare_cached(READ_ALL)?;
            let mut rows = statement.query(rusqlite::params![after, limit])?;
            let mut page = StoredEvents::with_capacity(events, events * STORED_EVENT_BYTES);
            while let Some(row) = rows.next()? {
                push_stored(&mut page, row)?;
            }
            Ok(page)
        })
        .await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        max_position(&self.reads).await
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.head.clone()
    }
}

/// Validates a call and serialises its events, so the writer only binds strings.
fn encode(writes: Vec<StreamWrite>) -> Result<Vec<EncodedWrite>, StoreError> {
    if writes.iter().all(|w| w.events.is_empty()) {
        return Err(StoreError::Invalid("nothing to append".into()));
    }
    let mut ids = std::collections::HashSet::new();
    writes
        .into_iter()
        .map(|write| {
            if write.expected == ExpectedVersion::Exact(0) {
                return Err(StoreError::Invalid(format!(
                    "Exact(0) on stream {}: use NoStream",
                    write.stream
                )));
            }
            let events = write
                .events
                .into_iter()
                .map(|e| {
                    if !ids.insert(e.event_id) {
                        return Err(StoreError::Invalid(format!(
                            "event id {} appears twice",
                            e.event_id
                        )));
                    }
                    Ok(EncodedEvent {
                        event_id: e.event_id.to_string(),
                        event_type: e.event_type,
                        schema: i64::from(e.schema),
                        occurred_at: e.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                        data: to_json(&e.data)?,
                        metadata: to_json(&e.metadata)?,
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(EncodedWrite {
                stream: write.stream,
                expected: write.expected,
                events,
            })
        })
        .collect()
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("cannot serialise an event: {e}")))
}

/// A stored row (position, event_id, stream, version, type, schema, occurred_at, data,
/// metadata) as an envelope whose data and metadata are read as `D` and `M`: decoded values,
/// or the stored JSON text ([`RawEnvelope`]).
fn decode<D, M>(row: &rusqlite::Row<'_>) -> Result<Envelope<D, M>, ReadFailure>
where
    D: serde::de::DeserializeOwned,
    M: serde::de::DeserializeOwned,
{
    let position: i64 = row.get(0)?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Backend(format!("stored event {position} has a bad {what}: {e}"))
    };
    let text = |i: usize, what: &str| -> Result<&str, ReadFailure> {
        Ok(row.get_ref(i)?.as_str().map_err(|e| corrupt(what, &e))?)
    };
    Ok(Envelope {
        position: to_u64(position)?,
        event_id: text(1, "event_id")?
            .parse()
            .map_err(|e| corrupt("event_id", &e))?,
        stream: StreamId::parse(text(2, "stream")?.to_owned())
            .map_err(|e| corrupt("stream", &e))?,
        version: to_u64(row.get(3)?)?,
        event_type: text(4, "type")?.to_owned(),
        schema: u32::try_from(row.get::<_, i64>(5)?).map_err(|e| corrupt("schema", &e))?,
        occurred_at: DateTime::parse_from_rfc3339(text(6, "occurred_at")?)
            .map_err(|e| corrupt("occurred_at", &e))?
            .with_timezone(&Utc),
        data: serde_json::from_str(text(7, "data")?).map_err(|e| corrupt("data", &e))?,
        metadata: serde_json::from_str(text(8, "metadata")?)
            .map_err(|e| corrupt("metadata", &e))?,
    })
}

/// Appends a stored row (as [`decode`] reads it) to `page` without decoding its text.
fn push_stored(page: &mut StoredEvents, row: &rusqlite::Row<'_>) -> Result<(), ReadFailure> {
    let position: i64 = row.get(0)?;
    let text = |i: usize, what: &str| -> Result<&str, ReadFailure> {
        Ok(row.get_ref(i)?.as_str().map_err(|e| {
            StoreError::Backend(format!("stored event {position} has a bad {what}: {e}"))
        })?)
    };
    let schema = row.get::<_, i64>(5)?;
    page.push(StoredEvent {
        position: to_u64(position)?,
        event_id: text(1, "event_id")?,
        stream: text(2, "stream")?,
        version: to_u64(row.get(3)?)?,
        event_type: text(4, "type")?,
        schema: u32::try_from(schema).map_err(|e| {
            StoreError::Backend(format!("stored event {position} has a bad schema: {e}"))
        })?,
        occurred_at: text(6, "occurred_at")?,
        data: text(7, "data")?,
        metadata: text(8, "metadata")?,
    })
    .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(())
}

async fn max_position<'e>(conn: impl SqliteExecutor<'e>) -> Result<Position, StoreError> {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
        .fetch_one(conn)
        .await
        .map_err(|e| backend("cannot read the head", e))?;
    to_u64(head)
}

/// The stored answer for `key`: `None` if unknown, `Some(Err(IdempotencyKeyReused))` if it was
/// used with another fingerprint.
async fn recorded_key<'e>(
    conn: impl SqliteExecutor<'e>,
    key: &IdempotencyKey,
) -> Result<Option<Result<Committed, StoreError>>, StoreError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT fingerprint, results FROM idempotency_keys WHERE key = ?")
            .bind(&key.key)
            .fetch_optional(conn)
            .await
            .map_err(|e| backend("cannot look up the idempotency key", e))?;
    let Some((fingerprint, results)) = row else {
        return Ok(None);
    };
    if fingerprint != key.fingerprint {
        return Ok(Some(Err(StoreError::IdempotencyKeyReused)));
    }
    let results = serde_json::from_str(&results).map_err(|e| {
        StoreError::Backend(format!("stored idempotency results are unreadable: {e}"))
    })?;
    Ok(Some(Ok(Committed {
        results,
        replayed: true,
    })))
}

/// A bound for a read: nothing is stored beyond `i64::MAX` anyway.
fn saturate(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("{n} is out of range")))
}

fn to_u64(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Backend(format!("negative number {n} stored")))
}

/// Maps a driver error, calling lock contention, I/O and pool exhaustion "unavailable" (worth
/// retrying later) and everything else a backend failure.
fn backend(context: &str, e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes.
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    };
    if transient {
        StoreError::Unavailable(format!("{context}: {e}"))
    } else {
        StoreError::Backend(format!("{context}: {e}"))
    }
}

/// A reader thread's SQLite error: busy and locked (another connection holds the file) are
/// worth retrying later, the rest is a backend failure.
fn sqlite_error(context: &str, e: rusqlite::Error) -> StoreError {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    if busy {
        StoreError::Unavailable(format!("{context}: {e}"))
    } else {
        StoreError::Backend(format!("{context}: {e}"))
    }
}

fn unavailable(context: &str, e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("{context}: {e}"))
}
