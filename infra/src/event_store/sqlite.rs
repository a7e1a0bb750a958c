//! The embedded event store: one SQLite file in WAL mode (ARCHITECTURE.md §3).
//!
//! Writes go through a single writer thread that owns the only write connection and commits
//! concurrent appends together (group commit, see `sqlite/writer.rs`); reads go to a few reader
//! threads with read-only connections, which WAL lets run beside the writer. Both use rusqlite,
//! one hand-off per call rather than per statement. Because there is exactly one writer,
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
//!
//! The events of a stream are found through `stream_index` (stream, version, position), which
//! the writer fills in batches: the events up to `stream_index_upto` are in it, those after
//! it (the log's tail, a few hundred events at most while the writer is busy) are found by
//! scanning them, and every read of a stream does both in one statement. Indexed at each
//! commit, each comment of a group commit rewrote a whole 4 KiB leaf of the index (most
//! land on different posts): 12.9 of a commit's 20.7 pages, and about an eighth of the
//! server's CPU under `bench comments` (BENCHMARKS.md, "The log's stream index in
//! batches"). Logs made before it keep their `UNIQUE (stream, version)` besides; the writer
//! alone guards versions in both (its memory, and the position it hands out: see
//! `sqlite/writer.rs`).

mod plan;
mod writer;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use commands::{Committed, EventStore, ExpectedVersion, IdempotencyKey, StoreError, StreamWrite};
use domain::{Envelope, Position, RawEnvelope, StoredEvent, StoredEvents, StreamId};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::instrument;

use crate::read_model::readers::{self, QueryError, Readers};
pub use writer::WriteStats;
use writer::{EncodedEvent, EncodedWrite, Request, Writer};

/// The file [`SqliteEventStore::open_in`] uses inside its directory.
pub const FILE_NAME: &str = "events.db";

/// Reader threads for events, the head and recorded idempotency keys, each with a read-only
/// connection; WAL lets them all read while the writer commits.
const READ_THREADS: usize = 4;
/// Statements the writer keeps prepared: its few fixed ones and the multi-row inserts of each
/// chunk size (nine for events, nine for keys).
const WRITER_STATEMENTS: usize = 48;
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
    metadata    TEXT    NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key         TEXT NOT NULL PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    results     TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS stream_index (
    stream      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    PRIMARY KEY (stream, version)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS stream_index_upto (
    one         INTEGER PRIMARY KEY CHECK (one = 1),
    position    INTEGER NOT NULL
) STRICT;
INSERT OR IGNORE INTO stream_index_upto (one, position) VALUES (1, 0);
";

/// Indexes the events after `stream_index_upto` by stream and moves it to the last position, in
/// the caller's transaction. Sorted, so that each leaf of the index is visited once.
const STREAM_INDEX_FLUSH: &str = "
INSERT INTO stream_index (stream, version, position)
    SELECT stream, version, position FROM events
    WHERE position > (SELECT position FROM stream_index_upto WHERE one = 1)
    ORDER BY stream, version;
UPDATE stream_index_upto SET position = (SELECT COALESCE(MAX(position), 0) FROM events)
    WHERE one = 1;
";

/// A stream's events from a version on: those indexed, then those of the tail not indexed yet
/// (both read in one statement, so from one snapshot: the index holds no event of the tail).
const READ_STREAM: &str = "SELECT position, event_id, stream, version, type, schema, \
     occurred_at, data, metadata FROM events \
     WHERE position IN (SELECT position FROM stream_index WHERE stream = ?1 AND version >= ?2) \
     UNION ALL \
     SELECT position, event_id, stream, version, type, schema, \
     occurred_at, data, metadata FROM events \
     WHERE position > (SELECT position FROM stream_index_upto WHERE one = 1) \
     AND stream = ?1 AND version >= ?2 \
     ORDER BY version";
/// The last version (0 if none) of the stream named by the SQL expression `stream`, the same
/// way: the index's, or the tail's if it has a later one.
fn last_version_of(stream: &str) -> String {
    format!(
        "MAX( \
         COALESCE((SELECT MAX(version) FROM stream_index WHERE stream = {stream}), 0), \
         COALESCE((SELECT MAX(version) FROM events \
                   WHERE position > (SELECT position FROM stream_index_upto WHERE one = 1) \
                   AND stream = {stream}), 0))"
    )
}
/// A stream's last version (0 if it has none).
static STREAM_VERSION: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {}", last_version_of("?1")));
/// The last version of each stream of a JSON array of names.
static STREAM_VERSIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT j.value, {} FROM json_each(?) AS j",
        last_version_of("j.value")
    )
});
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
    /// Every read, a whole query per hand-off to a thread with its own rusqlite connection.
    readers: Readers,
    head: watch::Receiver<Position>,
    stats: Arc<writer::Counters>,
}

impl SqliteEventStore {
    /// Opens (creating if missing) the event store in the SQLite file at `path`, creates its
    /// tables and starts the writer thread. Must be called inside a Tokio runtime.
    #[instrument(skip_all, fields(path = %path.display()))]
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let (conn, head, path) = tokio::task::spawn_blocking(move || {
            open_writer(&path).map(|(conn, head)| (conn, head, path))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("opening the event store: {e}")))??;
        let readers = Readers::open(&path, READ_THREADS)
            .map_err(|e| StoreError::Unavailable(format!("cannot open the readers: {e}")))?;
        Self::start(conn, readers, head)
    }

    /// Opens the store in `dir/events.db`, creating the directory if needed.
    pub async fn open_in(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        Self::open(&dir.join(FILE_NAME)).await
    }

    fn start(conn: Connection, readers: Readers, head: Position) -> Result<Self, StoreError> {
        let (requests, queue) = mpsc::channel(QUEUE_CAPACITY);
        let (head_tx, head_rx) = watch::channel(head);
        let stats = Arc::new(writer::Counters::default());
        let writer = Writer::new(conn, head_tx, Arc::clone(&stats));
        std::thread::Builder::new()
            .name("sqlite-log-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            requests,
            readers,
            head: head_rx,
            stats,
        })
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
        let key = key.clone();
        self.read_rows("cannot look up the idempotency key", move |c| {
            Ok(recorded_key(c, &key)?)
        })
        .await?
        .transpose()
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
        self.read_rows("cannot read the head", |c| Ok(max_position(c)?))
            .await
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

/// The write connection at `path`, in WAL mode with its tables, and the last position stored.
fn open_writer(path: &Path) -> Result<(Connection, Position), StoreError> {
    let failed = |e| sqlite_error(&format!("cannot open {}", path.display()), e);
    let conn = readers::open_writer(path).map_err(StoreError::Unavailable)?;
    conn.busy_handler(Some(readers::wait_for_the_lock))
        .map_err(failed)?;
    // In WAL mode FULL syncs the log on every commit: acknowledged means durable. Statement
    // journals (undo for one statement inside a transaction) stay in memory (`readers::open`):
    // under `comments` their spills to temporary files were 8% of the server's CPU.
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(failed)?;
    conn.execute_batch(SCHEMA)
        .map_err(|e| sqlite_error("cannot create the event tables", e))?;
    // What the last run left unindexed (all of a log made before the index, once).
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {STREAM_INDEX_FLUSH} COMMIT;"))
        .map_err(|e| sqlite_error("cannot index the log's streams", e))?;
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    let head = max_position(&conn)?;
    Ok((conn, head))
}

fn max_position(conn: &Connection) -> Result<Position, StoreError> {
    let head: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")
        .and_then(|mut select| select.query_row([], |r| r.get(0)))
        .map_err(|e| sqlite_error("cannot read the head", e))?;
    to_u64(head)
}

/// The stored answer for `key`: `None` if unknown, `Some(Err(IdempotencyKeyReused))` if it was
/// used with another fingerprint.
fn recorded_key(
    conn: &Connection,
    key: &IdempotencyKey,
) -> Result<Option<Result<Committed, StoreError>>, StoreError> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT fingerprint, results FROM idempotency_keys WHERE key = ?")
        .and_then(|mut select| {
            select
                .query_row([&key.key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(|e| sqlite_error("cannot look up the idempotency key", e))?;
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

/// An SQLite error: busy and locked (another connection holds the file) are worth retrying
/// later, the rest is a backend failure.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What SQLite plans for `sql`: each step's detail.
    fn plan(sql: &str) -> Vec<String> {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let args: [&dyn rusqlite::ToSql; 2] = [&"post-x", &1];
        let args = &args[..explain.parameter_count()];
        explain
            .query_map(args, |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A stream's reads look its events up in the stream index and read only the log's tail
    /// beyond it, by position; a scan of the whole log would make every load of a stream
    /// cost the log's size.
    #[test]
    fn stream_reads_use_the_index_and_the_tail_by_position() {
        for sql in [READ_STREAM, STREAM_VERSION.as_str()] {
            let steps = plan(sql);
            assert!(
                steps
                    .iter()
                    .any(|s| s.contains("stream_index USING PRIMARY KEY")),
                "{sql}: {steps:?}"
            );
            assert!(
                steps
                    .iter()
                    .any(|s| s.contains("SEARCH events USING INTEGER PRIMARY KEY (rowid>?)")),
                "{sql}: {steps:?}"
            );
            assert!(
                !steps.iter().any(|s| s.starts_with("SCAN events")),
                "{sql}: {steps:?}"
            );
        }
    }
}
