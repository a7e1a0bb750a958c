//! Group commit: the one task per process that writes.
//!
//! `append_many` queues a [`Request`] and waits for its answer. The writer takes everything
//! queued (up to [`MAX_BATCH`]) into one transaction, so the advisory lock, the `NOTIFY` and the
//! WAL flush at `COMMIT` are shared by all of them; while it waits on the flush, the next batch
//! queues up. Each request runs inside its own savepoint, so one that is refused (a version
//! conflict, a reused key) is rolled back alone and the others still commit. Nobody hears back
//! before the `COMMIT` is durable; if it fails, every request of the batch gets the error.
//!
//! A batch transaction is, statement by statement:
//!
//! ```text
//! BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(WRITE_LOCK);
//!   SELECT COALESCE(MAX(position), 0) FROM events           -- a snapshot taken under the lock
//! SAVEPOINT request                                          -- then, per request:
//!   WITH current AS (SELECT MAX(version) ...) INSERT ...      -- per write: the version check
//!        SELECT ... FROM UNNEST($4, ...) WHERE <expected>     -- and all its events at once
//!   (ROLLBACK TO SAVEPOINT request, if refused)
//! RELEASE SAVEPOINT request; SAVEPOINT request               -- between requests
//! NOTIFY treehole_events, '<head>'; COMMIT
//! ```
//!
//! The writer numbers events itself, from the maximum read under the lock (see the parent
//! module for why that makes commit order equal position order). Versions are checked against
//! the stream inside the transaction, after the requests before it in the same batch, and no
//! other process writes while the lock is held, so of two `Exact(n)` appends to one stream
//! exactly one wins.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use commands::{AppendResult, Committed, ExpectedVersion, IdempotencyKey, StoreError};
use domain::{Position, StreamId};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Error as SqlxError, Executor, Row};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, field, instrument, warn};
use uuid::Uuid;

use super::{
    CHANNEL, CONNECT_TIMEOUT, Counters, WRITE_LOCK, WRITER_APPLICATION_NAME, backend,
    is_connection_lost, recorded_key, to_i64, to_u64, unreachable,
};
use crate::event_store::write_stats::{answer_committed, fail_all};

/// The most requests committed in one transaction. Each request's savepoint becomes a
/// subtransaction; past 64 of them in one transaction PostgreSQL's per-backend subtransaction
/// cache overflows, which slows down every other session's snapshots while it runs.
const MAX_BATCH: usize = 64;
/// Set on the write connection. `lock_timeout` bounds the wait for another process's batch to
/// release the write lock. A `synchronous_commit` of `off` would acknowledge commits before
/// they are flushed, so it is raised to `on`; stronger settings (waiting for synchronous
/// standbys) are kept.
const SESSION_SETTINGS: &str = "SET lock_timeout = '10s'; \
     SELECT set_config('synchronous_commit', 'on', false) \
     WHERE current_setting('synchronous_commit') = 'off'";

/// Checks a write's expectation and inserts its events in one round trip. `$3` is the version
/// the stream must be at (NULL for `Any`, 0 for `NoStream`); if it is not, nothing is inserted
/// and the caller reports a conflict. Returns the version the stream was at.
const WRITE: &str = "WITH current AS ( \
         SELECT COALESCE(MAX(version), 0) AS version FROM events WHERE stream = $2 \
     ), inserted AS ( \
         INSERT INTO events \
             (position, event_id, stream, version, type, schema, occurred_at, data, metadata) \
         SELECT $1 + e.n, e.event_id, $2, current.version + e.n, e.type, e.schema, \
                e.occurred_at, e.data::json, e.metadata::json \
         FROM current, \
              UNNEST($4::uuid[], $5::text[], $6::int[], $7::timestamptz[], $8::text[], \
                     $9::text[]) WITH ORDINALITY AS e(event_id, type, schema, occurred_at, \
                                                      data, metadata, n) \
         WHERE $3::bigint IS NULL OR current.version = $3 \
         RETURNING 1 \
     ) \
     SELECT version, (SELECT count(*) FROM inserted) FROM current";

/// One `append_many` call, validated and laid out for binding.
pub(super) struct Request {
    pub writes: Vec<EncodedWrite>,
    pub idempotency: Option<IdempotencyKey>,
    pub reply: oneshot::Sender<Result<Committed, StoreError>>,
}

pub(super) struct EncodedWrite {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: EncodedEvents,
}

/// The events of one write, a column each, bound as arrays to one `INSERT`.
pub(super) struct EncodedEvents {
    pub ids: Vec<Uuid>,
    pub types: Vec<String>,
    pub schemas: Vec<i32>,
    pub occurred_at: Vec<DateTime<Utc>>,
    pub data: Vec<String>,
    pub metadata: Vec<String>,
}

impl EncodedEvents {
    pub(super) fn with_capacity(n: usize) -> Self {
        Self {
            ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            schemas: Vec::with_capacity(n),
            occurred_at: Vec::with_capacity(n),
            data: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
        }
    }

    fn len(&self) -> u64 {
        self.ids.len() as u64
    }
}

/// Opens the writer's connection, with [`SESSION_SETTINGS`].
pub(super) async fn open_connection(
    options: &PgConnectOptions,
    server: &str,
) -> Result<PgConnection, StoreError> {
    let options = options.clone().application_name(WRITER_APPLICATION_NAME);
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "cannot connect to PostgreSQL at {server}: no answer within {CONNECT_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| unreachable(server, e))?;
    conn.execute(SESSION_SETTINGS)
        .await
        .map_err(|e| backend("cannot configure the write connection", e))?;
    Ok(conn)
}

pub(super) struct Writer {
    options: PgConnectOptions,
    server: Arc<str>,
    /// `None` after a failure left it unusable; reopened for the next batch.
    conn: Option<PgConnection>,
    head: Arc<watch::Sender<Position>>,
    stats: Arc<Counters>,
    /// The position the next event of the current batch gets.
    next: Position,
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
        options: PgConnectOptions,
        server: Arc<str>,
        conn: PgConnection,
        head: Arc<watch::Sender<Position>>,
        stats: Arc<Counters>,
    ) -> Self {
        Self {
            options,
            server,
            conn: Some(conn),
            head,
            stats,
            next: 0,
        }
    }

    /// Commits batches until the store is dropped and the queue is drained.
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.commit(std::mem::take(&mut batch)).await;
        }
        if let Some(conn) = self.conn.take()
            && let Err(e) = conn.close().await
        {
            warn!(error = %e, "closing the event store's write connection failed");
        }
        debug!("event store writer stopped");
    }

    #[instrument(
        name = "group_commit",
        level = "debug",
        skip_all, fields(batch = batch.len(), events = field::Empty, head = field::Empty))]
    async fn commit(&mut self, batch: Vec<Request>) {
        let outcomes = self.apply_all(&batch).await;
        let replies = batch.into_iter().map(|r| r.reply);
        match outcomes {
            Ok(outcomes) => answer_committed(&self.stats, &self.head, replies.collect(), outcomes),
            Err(failure) => {
                self.abandon().await;
                warn!(error = %failure, "group commit failed");
                fail_all(replies, &failure);
            }
        }
    }

    /// Runs the whole batch in one transaction. The outer error aborts the batch; the inner
    /// results are each request's own answer.
    async fn apply_all(
        &mut self,
        batch: &[Request],
    ) -> Result<Vec<Result<Committed, StoreError>>, StoreError> {
        let before = self.begin().await?;
        self.next = before + 1;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut savepoint = "SAVEPOINT request";
        for request in batch {
            self.exec(savepoint, "cannot open a savepoint").await?;
            savepoint = "RELEASE SAVEPOINT request; SAVEPOINT request";
            outcomes.push(self.apply(request).await?);
        }
        let head = self.next - 1;
        let finish = if head > before {
            // Delivered to listeners only once the transaction has committed.
            format!("NOTIFY {CHANNEL}, '{head}'; COMMIT")
        } else {
            "COMMIT".to_owned()
        };
        self.conn()?
            .execute(finish.as_str())
            .await
            .map_err(|e| backend("cannot commit", e))?;
        Ok(outcomes)
    }

    /// Begins the batch's transaction, takes the write lock and returns the last position
    /// committed by anyone. A connection found dead is replaced once: nothing was done yet.
    async fn begin(&mut self) -> Result<Position, StoreError> {
        let reused = self.conn.is_some();
        let head = match lock_and_read_head(self.connected().await?).await {
            Err(e) if reused && is_connection_lost(&e) => {
                debug!(error = %e, "the write connection was lost; reconnecting");
                self.conn = None;
                lock_and_read_head(self.connected().await?).await
            }
            other => other,
        };
        to_u64(head.map_err(|e| backend("cannot take the write lock", e))?)
    }

    /// The write connection, reopened if a failure dropped it (only between batches).
    async fn connected(&mut self) -> Result<&mut PgConnection, StoreError> {
        if self.conn.is_none() {
            self.conn = Some(open_connection(&self.options, &self.server).await?);
        }
        self.conn()
    }

    /// The write connection of the batch under way.
    fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("the write connection was lost".into()))
    }

    /// Ends a failed batch; a connection that cannot even roll back is dropped.
    async fn abandon(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if let Err(e) = conn.execute("ROLLBACK").await {
            debug!(error = %e, "rollback after a failed batch; dropping the connection");
            self.conn = None;
        }
    }

    /// One request inside its savepoint: kept if it succeeds, rolled back alone if refused.
    async fn apply(
        &mut self,
        request: &Request,
    ) -> Result<Result<Committed, StoreError>, StoreError> {
        let first = self.next;
        let mut outcome = self.attempt(request).await;
        if outcome.is_err() {
            self.exec(
                "ROLLBACK TO SAVEPOINT request",
                "cannot roll back a savepoint",
            )
            .await?;
            // Its positions were never committed: the next request takes them.
            self.next = first;
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
        Ok(outcome)
    }

    async fn attempt(&mut self, request: &Request) -> Result<Committed, StoreError> {
        if let Some(key) = &request.idempotency
            && let Some(answer) = recorded_key(self.conn()?, key).await?
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
        let required = match write.expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(version) => Some(to_i64(version)?),
        };
        let first_position = self.next;
        let events = &write.events;
        let (current, inserted): (i64, i64) = sqlx::query_as(WRITE)
            .bind(to_i64(first_position - 1)?)
            .bind(write.stream.as_str())
            .bind(required)
            .bind(&events.ids)
            .bind(&events.types)
            .bind(&events.schemas)
            .bind(&events.occurred_at)
            .bind(&events.data)
            .bind(&events.metadata)
            .fetch_one(self.conn()?)
            .await
            .map_err(|e| {
                if is_duplicate_event_id(&e) {
                    StoreError::EventIdReused
                } else {
                    backend("cannot append events", e)
                }
            })?;
        let current = to_u64(current)?;
        if !write.expected.admits(current) {
            return Err(StoreError::Conflict {
                stream: write.stream.clone(),
                expected: write.expected,
                actual: current,
            });
        }
        let count = events.len();
        if to_u64(inserted)? != count {
            return Err(StoreError::Backend(format!(
                "{inserted} of {count} events were inserted into {}",
                write.stream
            )));
        }
        if count == 0 {
            return Ok(None);
        }
        self.next += count;
        Ok(Some(AppendResult {
            stream: write.stream.clone(),
            first_version: current + 1,
            last_version: current + count,
            first_position,
            last_position: first_position + count - 1,
        }))
    }

    async fn record_key(
        &mut self,
        key: &IdempotencyKey,
        results: &[AppendResult],
    ) -> Result<(), StoreError> {
        let results = serde_json::to_string(results)
            .map_err(|e| StoreError::Backend(format!("cannot serialise results: {e}")))?;
        sqlx::query(
            "INSERT INTO idempotency_keys (key, fingerprint, results) VALUES ($1, $2, $3::json)",
        )
        .bind(&key.key)
        .bind(&key.fingerprint)
        .bind(results)
        .execute(self.conn()?)
        .await
        .map_err(|e| backend("cannot record the idempotency key", e))?;
        Ok(())
    }

    /// Looks for the event ids of a refused request: were they committed before?
    async fn stored(&mut self, writes: &[EncodedWrite]) -> Result<Stored, StoreError> {
        let ids: Vec<Uuid> = writes
            .iter()
            .flat_map(|w| w.events.ids.iter().copied())
            .collect();
        let rows: Vec<(Uuid, i64, String, i64)> = sqlx::query_as(
            "SELECT event_id, position, stream, version FROM events WHERE event_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(self.conn()?)
        .await
        .map_err(|e| backend("cannot look up event ids", e))?;
        let mut found = HashMap::with_capacity(rows.len());
        for (id, position, stream, version) in rows {
            found.insert(id, (to_u64(position)?, stream, to_u64(version)?));
        }
        Ok(compare(writes, &found))
    }

    async fn exec(&mut self, sql: &'static str, context: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute(sql)
            .await
            .map(drop)
            .map_err(|e| backend(context, e))
    }
}

/// `BEGIN`, the write lock, and `MAX(position)` in one round trip. In a multi-statement query
/// each statement takes its own snapshot under `READ COMMITTED`, so the maximum is read after
/// the lock was granted and includes every batch committed before.
async fn lock_and_read_head(conn: &mut PgConnection) -> Result<i64, SqlxError> {
    let sql = format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; \
         SELECT pg_advisory_xact_lock({WRITE_LOCK}); \
         SELECT COALESCE(MAX(position), 0) FROM events"
    );
    let rows = conn.fetch_all(sql.as_str()).await?;
    // The lock's row (a void), then the maximum's.
    match rows.last() {
        Some(row) => row.try_get(0),
        None => Err(SqlxError::RowNotFound),
    }
}

/// Whether the stored events (`found`: event id to position, stream and version) are exactly
/// what `writes` would have written, in order.
fn compare(writes: &[EncodedWrite], found: &HashMap<Uuid, (Position, String, u64)>) -> Stored {
    let missing = writes
        .iter()
        .flat_map(|w| &w.events.ids)
        .filter(|id| !found.contains_key(id))
        .count();
    if found.is_empty() {
        return Stored::Nowhere;
    }
    if missing > 0 {
        return Stored::Elsewhere;
    }
    let mut results = Vec::with_capacity(writes.len());
    let mut previous_position = 0;
    for write in writes.iter().filter(|w| w.events.len() > 0) {
        let rows: Vec<&(Position, String, u64)> =
            write.events.ids.iter().map(|id| &found[id]).collect();
        let (first_position, _, first_version) = rows[0];
        for (i, (position, stream, version)) in rows.iter().enumerate() {
            if stream != write.stream.as_str()
                || *version != first_version + i as u64
                || *position <= previous_position
            {
                return Stored::Elsewhere;
            }
            previous_position = *position;
        }
        results.push(AppendResult {
            stream: write.stream.clone(),
            first_version: *first_version,
            last_version: first_version + write.events.len() - 1,
            first_position: *first_position,
            last_position: previous_position,
        });
    }
    Stored::AsRequested(results)
}

/// The insert failed because the event id is stored already (not because of the version).
fn is_duplicate_event_id(e: &SqlxError) -> bool {
    matches!(e, SqlxError::Database(db)
        if db.is_unique_violation() && db.constraint() == Some("events_event_id_key"))
}
