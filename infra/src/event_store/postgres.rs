//! The server event store: PostgreSQL, shared by any number of treehole processes
//! (ARCHITECTURE.md §3).
//!
//! # Why a tailing reader never skips an event
//!
//! The danger on PostgreSQL is that positions are handed out before commit: if transaction A
//! takes position 7 and B takes 8, B may commit first, and a reader that sees 8 moves its cursor
//! past 7, which then appears behind it and is never read. So positions here come from a
//! *serialised allocator*, and commit order equals position order:
//!
//! 1. Every write transaction (a group-committed batch, see `postgres/writer.rs`) starts with
//!    `pg_advisory_xact_lock(WRITE_LOCK)`. The lock is per database and shared by every
//!    connection and process, and is held until the transaction ends.
//! 2. Only then, in the *next statement* of a `READ COMMITTED` transaction (which takes a new
//!    snapshot, after the lock was granted), the writer reads `MAX(position)` and numbers its
//!    events from there. Reading it in the locking statement, or in a `REPEATABLE READ` or
//!    `SERIALIZABLE` transaction whose one snapshot predates the lock, would see a stale
//!    maximum; so the writer names the isolation level in its `BEGIN`, whatever the server's
//!    default (a test runs under a `SERIALIZABLE` default to keep it so).
//! 3. PostgreSQL ends a transaction by flushing its commit record (synchronous commit), then
//!    making it visible to new snapshots, and only then releasing its locks. So when the next
//!    batch, in any process, is granted the lock, the previous one is durable and visible, its
//!    positions are all below the new maximum, and no other transaction holds allocated but
//!    uncommitted positions.
//!
//! Hence the set of committed positions only ever grows by appending above its maximum, and
//! every statement snapshot (a `read_all` is one statement, so one snapshot) sees a prefix of
//! the log: if it sees position n it sees every committed position below n. A reader that
//! resumes after the last position it saw cannot skip anything. As a bonus, positions have no
//! holes: a refused request's positions, or a failed batch's, are taken by the next one.
//!
//! The price is that writes to one database are serialised, which group commit makes cheap:
//! one writer task per process puts everything queued into one transaction, so one lock
//! acquisition and one WAL flush serve many appends. Writers that bypass this store (and its
//! lock) would break the guarantee; there must be none.
//!
//! # Notifications
//!
//! The batch that appended events sends `NOTIFY treehole_events, '<new head>'` before its
//! `COMMIT`; PostgreSQL delivers it only once the transaction has committed and is visible, so
//! a reader woken by it finds the events. Every store `LISTEN`s on its own connection and
//! raises its [`EventStore::watch`] head, so readers in *other* processes hear of a commit as
//! promptly as those of the writing one (whose writer also raises it directly). If that
//! connection is lost, the listener reconnects, listens again, and only then re-reads the head,
//! so nothing committed while it was away goes unannounced.
//!
//! # Storage
//!
//! `data` and `metadata` are `JSON`, not `JSONB`: the log of record keeps the very text it was
//! given (key order included), and `JSONB` refuses strings containing `\u0000`, which a client's
//! payload may carry. `occurred_at` is stored with millisecond precision, as the envelope's JSON
//! form has it. The database must use the UTF8 encoding.
//!
//! Connections show up in `pg_stat_activity` under [`WRITER_APPLICATION_NAME`],
//! [`READER_APPLICATION_NAME`] and [`LISTENER_APPLICATION_NAME`].

mod listener;
mod writer;

/// The write connection's settings and its state read, for the test that checks their plan.
#[doc(hidden)]
pub use writer::{
    READ_STATE as WRITER_STATE_READ, READ_TRUSTING as WRITER_TRUSTING_READ,
    SESSION_SETTINGS as WRITER_SESSION_SETTINGS,
};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commands::{Committed, EventStore, ExpectedVersion, IdempotencyKey, StoreError, StreamWrite};
use domain::{Envelope, Position, RawEnvelope, StreamId};
use sqlx::PgExecutor;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{instrument, warn};
use uuid::Uuid;

use super::write_stats::{Counters, WriteStats, advance};
use writer::{EncodedEvents, EncodedWrite, Request, Writer};

/// The channel on which commits announce the new head (the position, in decimal).
pub const CHANNEL: &str = "treehole_events";
/// `application_name` of the connection that writes.
pub const WRITER_APPLICATION_NAME: &str = "treehole-event-writer";
/// `application_name` of the pooled connections that read.
pub const READER_APPLICATION_NAME: &str = "treehole-event-reader";
/// `application_name` of the connection that listens on [`CHANNEL`].
pub const LISTENER_APPLICATION_NAME: &str = "treehole-event-listener";

/// The advisory lock key that serialises position allocation and commit ("treehole" in ASCII).
/// Public so that tests can hold it to make the writer wait.
pub const WRITE_LOCK: i64 = 0x7472_6565_686f_6c65;
/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pooled connections for reads.
const READ_CONNECTIONS: u32 = 4;
/// Appends queued for the writer before `append_many` callers wait for room.
const QUEUE_CAPACITY: usize = 1024;

const READ_STREAM: &str = "SELECT position, event_id, stream, version, type, schema, \
     occurred_at, data::text, metadata::text FROM events \
     WHERE stream = $1 AND version >= $2 ORDER BY version";
const READ_ALL: &str = "SELECT position, event_id, stream, version, type, schema, \
     occurred_at, data::text, metadata::text FROM events \
     WHERE position > $1 ORDER BY position LIMIT $2";

/// The PostgreSQL event store. Cheap to share behind an `Arc`; dropping it lets the writer
/// finish the queued appends and close, and stops the listener.
///
/// ```no_run
/// # async fn demo() -> Result<(), commands::StoreError> {
/// use std::sync::Arc;
/// let store: Arc<dyn commands::EventStore> = Arc::new(
///     infra::event_store::PostgresEventStore::connect("postgres://treehole@db/treehole").await?,
/// );
/// # Ok(()) }
/// ```
pub struct PostgresEventStore {
    requests: mpsc::Sender<Request>,
    reads: PgPool,
    head: watch::Receiver<Position>,
    stats: Arc<Counters>,
    /// Dropping it stops the listener task.
    _stop_listening: oneshot::Sender<()>,
}

impl PostgresEventStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, with
    /// libpq's query parameters such as `sslmode=require`), creates the tables if missing and
    /// starts the writer and listener tasks. Must be called inside a Tokio runtime.
    ///
    /// An unreachable server or a refused login is [`StoreError::Unavailable`], naming the
    /// server but never the password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Unavailable(format!("the PostgreSQL URL is malformed: {e}"))
        })?;
        Self::connect_with(options).await
    }

    /// [`Self::connect`] with options built in code.
    #[instrument(skip_all, fields(server = %server(&options)))]
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let server: Arc<str> = server(&options).into();
        let mut conn = writer::open_connection(&options, &server).await?;
        check_server(&mut conn).await?;
        crate::migrations::migrate_postgres(&mut conn)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let reads = PgPoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options.clone().application_name(READER_APPLICATION_NAME))
            .await
            .map_err(|e| unreachable(&server, e))?;
        // Listen before reading the head, so that no commit falls between the two unannounced.
        let listener = listener::Listener::new(&options, reads.clone(), &server);
        let listening = listener.listen().await?;
        let head = max_position(&reads).await?;

        let (head_tx, head_rx) = watch::channel(head);
        let head_tx = Arc::new(head_tx);
        let (requests, queue) = mpsc::channel(QUEUE_CAPACITY);
        let (stop_listening, stop) = oneshot::channel();
        let stats = Arc::new(Counters::default());
        let writer = Writer::new(
            options,
            server,
            conn,
            Arc::clone(&head_tx),
            Arc::clone(&stats),
        );
        tokio::spawn(writer.run(queue));
        tokio::spawn(listener.run(listening, head_tx, stop));
        Ok(Self {
            requests,
            reads,
            head: head_rx,
            stats,
            _stop_listening: stop_listening,
        })
    }

    /// Counters of this process's group commits since connecting.
    pub fn stats(&self) -> WriteStats {
        self.stats.snapshot()
    }
}

impl PostgresEventStore {
    /// The events after `after`, at most `limit`, with data and metadata read as `D` and `M`.
    async fn read_after<D, M>(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Envelope<D, M>>, StoreError>
    where
        D: serde::de::DeserializeOwned,
        M: serde::de::DeserializeOwned,
    {
        let rows = sqlx::query_as::<_, EventRow>(READ_ALL)
            .bind(saturate(after))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.reads)
            .await
            .map_err(|e| backend("cannot read the log", e))?;
        rows.into_iter().map(decode).collect()
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
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
        let rows = sqlx::query_as::<_, EventRow>(READ_STREAM)
            .bind(stream.as_str())
            .bind(saturate(from_version))
            .fetch_all(&self.reads)
            .await
            .map_err(|e| backend("cannot read the stream", e))?;
        rows.into_iter().map(decode).collect()
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

    async fn head(&self) -> Result<Position, StoreError> {
        max_position(&self.reads).await
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.head.clone()
    }
}

/// `host:port/database` (or the socket path), for messages and spans: never the password.
fn server(options: &PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or(options.get_username());
    match options.get_socket() {
        Some(socket) => format!("{}/{database}", socket.display()),
        None => format!("{}:{}/{database}", options.get_host(), options.get_port()),
    }
}

/// Refuses a database whose encoding cannot hold every JSON string, and warns when the server
/// would not make acknowledged commits durable.
async fn check_server(conn: &mut PgConnection) -> Result<(), StoreError> {
    let (encoding, fsync): (String, String) =
        sqlx::query_as("SELECT current_setting('server_encoding'), current_setting('fsync')")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| backend("cannot read the server settings", e))?;
    if encoding != "UTF8" {
        return Err(StoreError::Backend(format!(
            "the database's encoding is {encoding}; the event store needs UTF8"
        )));
    }
    if fsync != "on" {
        warn!("the PostgreSQL server runs with fsync off: acknowledged events may be lost");
    }
    Ok(())
}

/// Validates a call and lays its events out in columns, ready to bind as arrays.
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
            let mut events = EncodedEvents::with_capacity(write.events.len());
            for e in write.events {
                if !ids.insert(e.event_id) {
                    return Err(StoreError::Invalid(format!(
                        "event id {} appears twice",
                        e.event_id
                    )));
                }
                events.ids.push(e.event_id);
                events.types.push(e.event_type);
                events.schemas.push(i32::try_from(e.schema).map_err(|_| {
                    StoreError::Invalid(format!("schema {} is out of range", e.schema))
                })?);
                events.occurred_at.push(to_millis(e.occurred_at)?);
                events.data.push(to_json(&e.data)?);
                events.metadata.push(to_json(&e.metadata)?);
            }
            Ok(EncodedWrite {
                stream: write.stream,
                expected: write.expected,
                events,
            })
        })
        .collect()
}

/// The instant without its sub-millisecond part (rounded down, as the envelope's JSON has it).
fn to_millis(at: DateTime<Utc>) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(at.timestamp_millis())
        .ok_or_else(|| StoreError::Invalid(format!("{at} is out of range")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("cannot serialise an event: {e}")))
}

/// position, event_id, stream, version, type, schema, occurred_at, data, metadata.
type EventRow = (
    i64,
    Uuid,
    String,
    i64,
    String,
    i32,
    DateTime<Utc>,
    String,
    String,
);

/// A stored row as an envelope whose data and metadata are read as `D` and `M`: decoded
/// values, or the stored JSON text ([`RawEnvelope`]).
fn decode<D, M>(row: EventRow) -> Result<Envelope<D, M>, StoreError>
where
    D: serde::de::DeserializeOwned,
    M: serde::de::DeserializeOwned,
{
    let (position, event_id, stream, version, event_type, schema, occurred_at, data, metadata) =
        row;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Backend(format!("stored event {position} has a bad {what}: {e}"))
    };
    Ok(Envelope {
        position: to_u64(position)?,
        event_id,
        stream: StreamId::parse(stream).map_err(|e| corrupt("stream", &e))?,
        version: to_u64(version)?,
        event_type,
        schema: u32::try_from(schema).map_err(|e| corrupt("schema", &e))?,
        occurred_at,
        data: serde_json::from_str(&data).map_err(|e| corrupt("data", &e))?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", &e))?,
    })
}

async fn max_position<'e>(conn: impl PgExecutor<'e>) -> Result<Position, StoreError> {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
        .fetch_one(conn)
        .await
        .map_err(|e| backend("cannot read the head", e))?;
    to_u64(head)
}

/// The stored answer for `key`: `None` if unknown, `Some(Err(IdempotencyKeyReused))` if it was
/// used with another fingerprint.
async fn recorded_key<'e>(
    conn: impl PgExecutor<'e>,
    key: &IdempotencyKey,
) -> Result<Option<Result<Committed, StoreError>>, StoreError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT fingerprint, results::text FROM idempotency_keys WHERE key = $1")
            .bind(&key.key)
            .fetch_optional(conn)
            .await
            .map_err(|e| backend("cannot look up the idempotency key", e))?;
    let Some((fingerprint, results)) = row else {
        return Ok(None);
    };
    match recorded_answer(key, &fingerprint, &results) {
        Err(StoreError::Backend(unreadable)) => Err(StoreError::Backend(unreadable)),
        answer => Ok(Some(answer)),
    }
}

/// What a request with `key` is answered, `key.key` having been recorded with `fingerprint`
/// and `results` (JSON): the original results, or [`StoreError::IdempotencyKeyReused`].
fn recorded_answer(
    key: &IdempotencyKey,
    fingerprint: &str,
    results: &str,
) -> Result<Committed, StoreError> {
    if fingerprint != key.fingerprint {
        return Err(StoreError::IdempotencyKeyReused);
    }
    let results = serde_json::from_str(results).map_err(|e| {
        StoreError::Backend(format!("stored idempotency results are unreadable: {e}"))
    })?;
    Ok(Committed {
        results,
        replayed: true,
    })
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

/// Maps a driver error, calling lost connections, lock timeouts, serialisation failures and
/// resource shortages "unavailable" (worth retrying later) and everything else a backend failure.
fn backend(context: &str, e: sqlx::Error) -> StoreError {
    if is_transient(&e) {
        StoreError::Unavailable(format!("{context}: {e}"))
    } else {
        StoreError::Backend(format!("{context}: {e}"))
    }
}

fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Connection exceptions, insufficient resources, operator intervention (shutdown,
            // statement timeout), serialisation failure and deadlock, lock timeout.
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "55P03"
        }),
        _ => false,
    }
}

/// The connection itself is gone (as opposed to a statement that failed on a live one).
fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02")),
        _ => false,
    }
}

fn unreachable(server: &str, e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot connect to PostgreSQL at {server}: {e}"))
}
