//! Group commit: the one task per process that writes.
//!
//! `append_many` queues a [`Request`] and waits for its answer. The writer takes everything
//! queued (up to [`MAX_BATCH`]) into one transaction of a fixed number of round trips, however
//! many requests and streams it carries:
//!
//! ```text
//! BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(WRITE_LOCK)
//! SELECT <head>, <each stream's version>, <event ids stored>, <keys recorded>   -- READ_STATE
//!   (SELECT ... WHERE event_id = ANY / key = ANY, only if some were found)
//! WITH keys AS (INSERT INTO idempotency_keys SELECT ... FROM UNNEST(...))       -- INSERT
//!   INSERT INTO events SELECT ... FROM UNNEST($1::bigint[], $2::uuid[], ...)
//! NOTIFY treehole_events, '<head>'; COMMIT
//! ```
//!
//! That is the *checking* read. Most batches take a cheaper one ([`READ_TRUSTING`]): the head,
//! and the versions of only those streams the writer does not remember from its own commits.
//! Stored event ids and recorded idempotency keys are left to the unique indexes, which a
//! client's retry is the only way to meet. If the insert then fails on a unique index (a retry,
//! or a version another process wrote since the writer remembered it), or a request would be
//! refused on a remembered version, the transaction is rolled back, the batch's streams are
//! forgotten, and the batch is decided again after the checking read. Under `comments` the
//! checking read cost PostgreSQL 0.26 ms per group commit, under the write lock (BENCHMARKS.md,
//! "The PostgreSQL writer trusts its memory").
//!
//! Between the read and the insert the writer decides every request in memory ([`Plan`]), in
//! queue order: a recorded idempotency key answers from its record; a stored event id replays
//! the original or is refused as reused; a wrong expectation is a conflict; anything else is
//! numbered (positions from the head, versions from the stream's) and added to the one insert.
//! A refused request adds nothing, so its neighbours commit without it, and no savepoint is
//! needed. That is sound because everything the decisions read (positions, versions, event ids,
//! keys) is written only by writers holding the write lock, which this batch holds from before
//! the read until its `COMMIT`: of two `Exact(n)` appends to one stream exactly one wins.
//!
//! The read is one statement taken after the lock was granted, so it sees every batch committed
//! before (see the parent module for why that makes commit order equal position order). Each
//! stream's version is a correlated `MAX(version)` per stream, which PostgreSQL answers from the
//! end of the `(stream, version)` index, one entry per stream, however long the stream.
//!
//! The database can still refuse rows the writer let through: an idempotency key too long for
//! its index, say, or text PostgreSQL cannot store. Then the whole insert fails, the batch is
//! rolled back, and each of its requests is committed again in a transaction of its own, so the
//! refusal falls on the request that caused it alone. Nobody hears back before the `COMMIT` is
//! durable; if it fails, every request of the batch gets the error.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use commands::{AppendResult, Committed, ExpectedVersion, IdempotencyKey, StoreError};
use domain::{Position, StreamId};
use lru::LruCache;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, Executor};
use tokio::sync::{mpsc, watch};
use tracing::{debug, field, instrument, warn};
use uuid::Uuid;

use super::{
    CHANNEL, CONNECT_TIMEOUT, Counters, WRITE_LOCK, WRITER_APPLICATION_NAME, backend,
    is_connection_lost, recorded_answer, to_i64, to_u64, unreachable,
};
use crate::event_store::write_stats::{Reply, answer_committed, fail_all};

/// The most requests committed in one transaction. The statements of a batch do not grow in
/// number with it, only in the length of their arrays; the bound keeps one batch's statements
/// (and the wait of the requests queued behind it) moderate.
const MAX_BATCH: usize = 256;
/// Set on the write connection. `lock_timeout` bounds the wait for another process's batch to
/// release the write lock. A `synchronous_commit` of `off` would acknowledge commits before
/// they are flushed, so it is raised to `on`; stronger settings (waiting for synchronous
/// standbys) are kept.
///
/// Plans: every statement of the writer is point lookups and inserts by index, and each is
/// planned once per connection (`plan_cache_mode = force_generic_plan`) with sequential scans
/// ruled out (`enable_seqscan = off`). A generic plan is made on the table as it is then: a
/// store that started nearly empty once kept a sequential scan of `events` and paid it in
/// every group commit, under the write lock (5.7 ms per commit after 20 000 events). Planning
/// every execution instead (`force_custom_plan`, until the nineteenth session) cost
/// PostgreSQL about 0.3 ms per group commit (BENCHMARKS.md, "Plans made once").
#[doc(hidden)]
pub const SESSION_SETTINGS: &str = "SET lock_timeout = '10s'; \
     SET plan_cache_mode = force_generic_plan; \
     SET enable_seqscan = off; \
     SELECT set_config('synchronous_commit', 'on', false) \
     WHERE current_setting('synchronous_commit') = 'off'";

/// Everything a batch's decisions need, read in one statement under the write lock: the last
/// position committed, the version of each stream in `$1` (in that order, 0 for a new stream),
/// which event ids of `$2` are stored already, and which keys of `$3` are recorded.
#[doc(hidden)]
pub const READ_STATE: &str = "SELECT \
     (SELECT COALESCE(MAX(position), 0) FROM events), \
     ARRAY(SELECT COALESCE((SELECT MAX(e.version) FROM events e WHERE e.stream = s.stream), 0) \
           FROM UNNEST($1::text[]) WITH ORDINALITY AS s(stream, n) ORDER BY s.n), \
     ARRAY(SELECT event_id FROM events WHERE event_id = ANY($2::uuid[])), \
     ARRAY(SELECT key FROM idempotency_keys WHERE key = ANY($3::text[]))";

/// What a batch that trusts the writer's memory reads under the write lock: the last position
/// committed and the version of each stream in `$1` that the writer does not remember (in that
/// order, 0 for a new stream). Stored event ids and recorded keys are left to the unique
/// indexes: an insert that meets one fails, and the batch is decided again after
/// [`READ_STATE`].
#[doc(hidden)]
pub const READ_TRUSTING: &str = "SELECT \
     (SELECT COALESCE(MAX(position), 0) FROM events), \
     ARRAY(SELECT COALESCE((SELECT MAX(e.version) FROM events e WHERE e.stream = s.stream), 0) \
           FROM UNNEST($1::text[]) WITH ORDINALITY AS s(stream, n) ORDER BY s.n)";

/// Streams whose version the writer remembers (some megabytes at most).
const VERSION_CACHE: std::num::NonZeroUsize =
    std::num::NonZeroUsize::new(65_536).expect("not zero");

/// Where stored event ids are: asked only when [`READ_STATE`] found some.
const READ_STORED_IDS: &str =
    "SELECT event_id, position, stream, version FROM events WHERE event_id = ANY($1)";

/// What recorded keys answer: asked only when [`READ_STATE`] found some.
const READ_RECORDED_KEYS: &str =
    "SELECT key, fingerprint, results::text FROM idempotency_keys WHERE key = ANY($1)";

/// Every event and idempotency key a batch accepted, in one statement. (A data-modifying `WITH`
/// runs to completion whether or not the outer statement reads it.)
const INSERT: &str = "WITH keys AS ( \
         INSERT INTO idempotency_keys (key, fingerprint, results) \
         SELECT k.key, k.fingerprint, k.results::json \
         FROM UNNEST($10::text[], $11::text[], $12::text[]) AS k(key, fingerprint, results) \
     ) \
     INSERT INTO events \
         (position, event_id, stream, version, type, schema, occurred_at, data, metadata) \
     SELECT e.position, e.event_id, e.stream, e.version, e.type, e.schema, e.occurred_at, \
            e.data::json, e.metadata::json \
     FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::int[], \
                 $7::timestamptz[], $8::text[], $9::text[]) \
          AS e(position, event_id, stream, version, type, schema, occurred_at, data, metadata)";

/// One `append_many` call, validated and laid out for binding.
pub(super) struct Request {
    pub writes: Vec<EncodedWrite>,
    pub idempotency: Option<IdempotencyKey>,
    pub reply: Reply,
}

pub(super) struct EncodedWrite {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: EncodedEvents,
}

/// The events of one write, a column each.
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
    /// The versions of recently written streams, as this writer committed them. Another
    /// process may have appended since; an insert at a version taken then fails on the
    /// `(stream, version)` index, and the batch is decided again on versions read.
    versions: LruCache<String, u64>,
}

/// How a batch reads the state its decisions need.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Streams' versions from the writer's memory where it has them; stored event ids and
    /// recorded keys left to the unique indexes ([`READ_TRUSTING`]).
    Trusting,
    /// Everything read from the tables ([`READ_STATE`]).
    Checking,
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
            versions: LruCache::new(VERSION_CACHE),
        }
    }

    /// Commits batches until the store is dropped and the queue is drained.
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let batch = std::mem::take(&mut batch);
            if let Err((batch, failure)) = self.commit(batch).await {
                self.commit_one_by_one(batch, &failure).await;
            }
        }
        if let Some(conn) = self.conn.take()
            && let Err(e) = conn.close().await
        {
            warn!(error = %e, "closing the event store's write connection failed");
        }
        debug!("event store writer stopped");
    }

    /// After the database refused a batch's rows: each request in a transaction of its own, so
    /// that the one the database refuses fails alone. A transient failure (the connection, the
    /// lock) would hit each of them alike, so it fails them all at once instead.
    async fn commit_one_by_one(&mut self, batch: Vec<Request>, failure: &StoreError) {
        if batch.len() == 1 || matches!(failure, StoreError::Unavailable(_)) {
            fail_all(batch.into_iter().map(|r| r.reply), failure);
            return;
        }
        debug!(batch = batch.len(), error = %failure, "committing a refused batch one by one");
        for request in batch {
            if let Err((alone, failure)) = self.commit(vec![request]).await {
                fail_all(alone.into_iter().map(|r| r.reply), &failure);
            }
        }
    }

    /// Commits `batch` and answers each request; on failure, hands the batch back unanswered.
    #[instrument(
        name = "group_commit",
        level = "debug",
        skip_all, fields(batch = batch.len(), events = field::Empty, head = field::Empty))]
    async fn commit(&mut self, batch: Vec<Request>) -> Result<(), (Vec<Request>, StoreError)> {
        match self.apply_all(&batch).await {
            Ok(outcomes) => {
                let replies = batch.into_iter().map(|r| r.reply).collect();
                answer_committed(&self.stats, &self.head, replies, outcomes);
                Ok(())
            }
            Err(failure) => {
                self.abandon().await;
                // Whether the failed COMMIT left anything is unknown: read it all again.
                self.versions.clear();
                warn!(error = %failure, "group commit failed");
                Err((batch, failure))
            }
        }
    }

    /// Runs the whole batch in one transaction. The outer error aborts the batch; the inner
    /// results are each request's own answer.
    ///
    /// First trusting the writer's memory of versions and the unique indexes; if that meets a
    /// stored event id, a recorded key or a version written by another process (the insert
    /// fails), or refuses a request on a remembered version, the transaction is rolled back
    /// and the batch decided again on what the tables hold.
    async fn apply_all(
        &mut self,
        batch: &[Request],
    ) -> Result<Vec<Result<Committed, StoreError>>, StoreError> {
        if let Some(outcomes) = self.attempt(batch, Reading::Trusting).await? {
            return Ok(outcomes);
        }
        self.abandon().await;
        debug!(
            batch = batch.len(),
            "group commit decided again on the stored state"
        );
        for write in batch.iter().flat_map(|r| &r.writes) {
            self.versions.pop(write.stream.as_str());
        }
        self.attempt(batch, Reading::Checking)
            .await?
            .ok_or_else(|| StoreError::Backend("a checked batch asked to be checked".into()))
    }

    /// One transaction for the batch; `None` (not committed) when a trusting attempt must be
    /// redone on the stored state.
    async fn attempt(
        &mut self,
        batch: &[Request],
        reading: Reading,
    ) -> Result<Option<Vec<Result<Committed, StoreError>>>, StoreError> {
        let trusting = reading == Reading::Trusting;
        self.begin().await?;
        let mut plan = self.read_state(batch, reading).await?;
        let outcomes: Vec<_> = batch.iter().map(|r| plan.decide(r)).collect();
        if trusting
            && outcomes
                .iter()
                .any(|o| matches!(o, Err(StoreError::Conflict { .. })))
        {
            return Ok(None);
        }
        let finish = if plan.rows.positions.is_empty() {
            "COMMIT".to_owned()
        } else {
            match self.insert(&plan).await {
                Err(e) if trusting && is_unique_violation(&e) => return Ok(None),
                Err(e) => return Err(backend("cannot append events", e)),
                Ok(inserted) => check_inserted(inserted, &plan)?,
            }
            // Delivered to listeners only once the transaction has committed.
            format!("NOTIFY {CHANNEL}, '{}'; COMMIT", plan.next - 1)
        };
        self.conn()?
            .execute(finish.as_str())
            .await
            .map_err(|e| backend("cannot commit", e))?;
        for (stream, version) in plan.versions {
            self.versions.put(stream, version);
        }
        Ok(Some(outcomes))
    }

    /// Begins the batch's transaction and takes the write lock. A connection found dead is
    /// replaced once: nothing was done yet.
    async fn begin(&mut self) -> Result<(), StoreError> {
        let reused = self.conn.is_some();
        let locked = match lock(self.connected().await?).await {
            Err(e) if reused && is_connection_lost(&e) => {
                debug!(error = %e, "the write connection was lost; reconnecting");
                self.conn = None;
                lock(self.connected().await?).await
            }
            other => other,
        };
        locked.map_err(|e| backend("cannot take the write lock", e))
    }

    /// Reads, under the lock, what the batch's decisions depend on.
    async fn read_state<'a>(
        &mut self,
        batch: &'a [Request],
        reading: Reading,
    ) -> Result<Plan<'a>, StoreError> {
        if reading == Reading::Trusting {
            return self.read_trusting(batch).await;
        }
        let mut streams: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut ids: Vec<Uuid> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        for request in batch {
            for write in &request.writes {
                if seen.insert(write.stream.as_str()) {
                    streams.push(write.stream.as_str());
                }
                ids.extend(&write.events.ids);
            }
            keys.extend(request.idempotency.as_ref().map(|k| k.key.as_str()));
        }
        let (head, versions, stored_ids, recorded_keys): (i64, Vec<i64>, Vec<Uuid>, Vec<String>) =
            sqlx::query_as(READ_STATE)
                .bind(&streams)
                .bind(&ids)
                .bind(&keys)
                .fetch_one(self.conn()?)
                .await
                .map_err(|e| backend("cannot read the streams' versions", e))?;
        let mut plan = Plan::new(to_u64(head)? + 1);
        for (stream, version) in streams.into_iter().zip(versions) {
            plan.versions.insert(stream.to_owned(), to_u64(version)?);
        }
        if !stored_ids.is_empty() {
            let rows: Vec<(Uuid, i64, String, i64)> = sqlx::query_as(READ_STORED_IDS)
                .bind(&stored_ids)
                .fetch_all(self.conn()?)
                .await
                .map_err(|e| backend("cannot look up event ids", e))?;
            for (id, position, stream, version) in rows {
                plan.stored
                    .insert(id, (to_u64(position)?, stream, to_u64(version)?));
            }
        }
        if !recorded_keys.is_empty() {
            let rows: Vec<(String, String, String)> = sqlx::query_as(READ_RECORDED_KEYS)
                .bind(&recorded_keys)
                .fetch_all(self.conn()?)
                .await
                .map_err(|e| backend("cannot look up idempotency keys", e))?;
            for (key, fingerprint, results) in rows {
                plan.keys.insert(key, (fingerprint, results));
            }
        }
        Ok(plan)
    }

    /// The last position, and the versions of the batch's streams: remembered, or read.
    async fn read_trusting<'a>(&mut self, batch: &'a [Request]) -> Result<Plan<'a>, StoreError> {
        let mut remembered: HashMap<String, u64> = HashMap::new();
        let mut unknown: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for write in batch.iter().flat_map(|r| &r.writes) {
            let stream = write.stream.as_str();
            if !seen.insert(stream) {
                continue;
            }
            match self.versions.get(stream) {
                Some(&version) => {
                    remembered.insert(stream.to_owned(), version);
                }
                None => unknown.push(stream),
            }
        }
        let (head, versions): (i64, Vec<i64>) = sqlx::query_as(READ_TRUSTING)
            .bind(&unknown)
            .fetch_one(self.conn()?)
            .await
            .map_err(|e| backend("cannot read the streams' versions", e))?;
        let mut plan = Plan::new(to_u64(head)? + 1);
        plan.versions = remembered;
        for (stream, version) in unknown.into_iter().zip(versions) {
            plan.versions.insert(stream.to_owned(), to_u64(version)?);
        }
        Ok(plan)
    }

    /// Inserts every accepted event and key of the batch; answers the events inserted.
    async fn insert(&mut self, plan: &Plan<'_>) -> Result<u64, sqlx::Error> {
        let (rows, keys) = (&plan.rows, &plan.new_keys);
        let inserted = sqlx::query(INSERT)
            .bind(&rows.positions)
            .bind(&rows.ids)
            .bind(&rows.streams)
            .bind(&rows.versions)
            .bind(&rows.types)
            .bind(&rows.schemas)
            .bind(&rows.occurred_at)
            .bind(&rows.data)
            .bind(&rows.metadata)
            .bind(&keys.keys)
            .bind(&keys.fingerprints)
            .bind(&keys.results)
            .execute(self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?)
            .await?
            .rows_affected();
        Ok(inserted)
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
}

/// Whether the insert met a unique index: a stored event id, a recorded key or a stored version.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

fn check_inserted(inserted: u64, plan: &Plan<'_>) -> Result<(), StoreError> {
    let planned = plan.rows.positions.len() as u64;
    if inserted == planned {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "{inserted} of {planned} events were inserted"
        )))
    }
}

/// `BEGIN` and the write lock in one round trip. The state is read by the *next* statement,
/// which under `READ COMMITTED` takes its snapshot after the lock was granted and so includes
/// every batch committed before.
async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let sql =
        format!("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK})");
    conn.execute(sql.as_str()).await.map(drop)
}

/// A batch's decisions, made in memory from the state read under the write lock, and the rows
/// they accepted, a column each, borrowed from the requests.
struct Plan<'a> {
    /// The position the next accepted event gets.
    next: Position,
    /// Each stream's version: as stored, then as the accepted requests leave it.
    versions: HashMap<String, u64>,
    /// Event ids stored before or accepted in this batch: position, stream, version.
    stored: HashMap<Uuid, (Position, String, u64)>,
    /// Keys recorded before or accepted in this batch: fingerprint and results (JSON).
    keys: HashMap<String, (String, String)>,
    rows: Rows<'a>,
    new_keys: KeyRows<'a>,
}

#[derive(Default)]
struct Rows<'a> {
    positions: Vec<i64>,
    ids: Vec<Uuid>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    types: Vec<&'a str>,
    schemas: Vec<i32>,
    occurred_at: Vec<DateTime<Utc>>,
    data: Vec<&'a str>,
    metadata: Vec<&'a str>,
}

#[derive(Default)]
struct KeyRows<'a> {
    keys: Vec<&'a str>,
    fingerprints: Vec<&'a str>,
    results: Vec<String>,
}

/// Where the event ids of a refused request were found.
enum Stored {
    Nowhere,
    /// Some of them, or all but not as this request would have written them.
    Elsewhere,
    /// All of them, as this request would have written them: the original results.
    AsRequested(Vec<AppendResult>),
}

impl<'a> Plan<'a> {
    fn new(next: Position) -> Self {
        Self {
            next,
            versions: HashMap::new(),
            stored: HashMap::new(),
            keys: HashMap::new(),
            rows: Rows::default(),
            new_keys: KeyRows::default(),
        }
    }

    /// Answers one request as if the batch's earlier ones had committed before it, and adds
    /// its rows to the batch if it is accepted.
    fn decide(&mut self, request: &'a Request) -> Result<Committed, StoreError> {
        if let Some(key) = &request.idempotency
            && let Some((fingerprint, results)) = self.keys.get(&key.key)
        {
            return recorded_answer(key, fingerprint, results);
        }
        let found: HashMap<Uuid, (Position, String, u64)> = request
            .writes
            .iter()
            .flat_map(|w| &w.events.ids)
            .filter_map(|id| self.stored.get(id).map(|at| (*id, at.clone())))
            .collect();
        if !found.is_empty() {
            return match compare(&request.writes, &found) {
                Stored::AsRequested(results) => Ok(Committed {
                    results,
                    replayed: true,
                }),
                Stored::Elsewhere | Stored::Nowhere => Err(StoreError::EventIdReused),
            };
        }
        self.check_expectations(&request.writes)?;
        let results = self.accept(&request.writes)?;
        if let Some(key) = &request.idempotency {
            self.record_key(key, &results)?;
        }
        Ok(Committed {
            results,
            replayed: false,
        })
    }

    /// The first write whose expectation does not hold, counting the request's own earlier
    /// writes to the same stream, is a conflict.
    fn check_expectations(&self, writes: &[EncodedWrite]) -> Result<(), StoreError> {
        let mut own: HashMap<&str, u64> = HashMap::new();
        for write in writes {
            let stream = write.stream.as_str();
            let current = match own.get(stream) {
                Some(version) => *version,
                None => self.version(stream),
            };
            if !write.expected.admits(current) {
                return Err(StoreError::Conflict {
                    stream: write.stream.clone(),
                    expected: write.expected,
                    actual: current,
                });
            }
            own.insert(stream, current + write.events.len());
        }
        Ok(())
    }

    /// Numbers the writes' events after the batch's earlier ones and adds them to the rows.
    fn accept(&mut self, writes: &'a [EncodedWrite]) -> Result<Vec<AppendResult>, StoreError> {
        // Checked before anything is added, so that the columns stay aligned. Versions need no
        // check: positions have no holes, so no version exceeds the last position.
        let count: u64 = writes.iter().map(|w| w.events.len()).sum();
        to_i64(self.next + count)?;
        let mut results = Vec::with_capacity(writes.len());
        for write in writes.iter().filter(|w| w.events.len() > 0) {
            let stream = write.stream.as_str();
            let (first_version, first_position) = (self.version(stream) + 1, self.next);
            let events = &write.events;
            for (i, id) in events.ids.iter().enumerate() {
                let (position, version) = (first_position + i as u64, first_version + i as u64);
                self.stored
                    .insert(*id, (position, stream.to_owned(), version));
                self.rows.positions.push(position as i64);
                self.rows.versions.push(version as i64);
                self.rows.streams.push(stream);
            }
            let rows = &mut self.rows;
            rows.ids.extend(&events.ids);
            rows.types.extend(events.types.iter().map(String::as_str));
            rows.schemas.extend(&events.schemas);
            rows.occurred_at.extend(&events.occurred_at);
            rows.data.extend(events.data.iter().map(String::as_str));
            rows.metadata
                .extend(events.metadata.iter().map(String::as_str));
            let count = events.len();
            self.next += count;
            self.versions
                .insert(stream.to_owned(), first_version + count - 1);
            results.push(AppendResult {
                stream: write.stream.clone(),
                first_version,
                last_version: first_version + count - 1,
                first_position,
                last_position: first_position + count - 1,
            });
        }
        Ok(results)
    }

    fn record_key(
        &mut self,
        key: &'a IdempotencyKey,
        results: &[AppendResult],
    ) -> Result<(), StoreError> {
        let results = serde_json::to_string(results)
            .map_err(|e| StoreError::Backend(format!("cannot serialise results: {e}")))?;
        self.new_keys.keys.push(&key.key);
        self.new_keys.fingerprints.push(&key.fingerprint);
        self.new_keys.results.push(results.clone());
        self.keys
            .insert(key.key.clone(), (key.fingerprint.clone(), results));
        Ok(())
    }

    /// The stream's version as stored, after the batch's accepted requests.
    fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
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

#[cfg(test)]
mod tests {
    //! The batch's decisions, without a database: what one request's answer does to the next.

    use tokio::sync::oneshot;

    use super::*;

    fn stream(name: &str) -> StreamId {
        StreamId::parse(format!("test-{name}")).expect("a valid stream id")
    }

    fn events(ids: &[Uuid]) -> EncodedEvents {
        let mut events = EncodedEvents::with_capacity(ids.len());
        for id in ids {
            events.ids.push(*id);
            events.types.push("Tested".into());
            events.schemas.push(1);
            events.occurred_at.push(DateTime::UNIX_EPOCH);
            events.data.push("{}".into());
            events.metadata.push("{}".into());
        }
        events
    }

    fn new_ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    fn request(writes: &[(&str, ExpectedVersion, &[Uuid])], key: Option<(&str, &str)>) -> Request {
        let (reply, _) = oneshot::channel();
        Request {
            writes: writes
                .iter()
                .map(|(name, expected, ids)| EncodedWrite {
                    stream: stream(name),
                    expected: *expected,
                    events: events(ids),
                })
                .collect(),
            idempotency: key.map(|(key, fingerprint)| IdempotencyKey {
                key: key.into(),
                fingerprint: fingerprint.into(),
            }),
            reply,
        }
    }

    /// A plan whose log ends at position 10, with stream `a` at version 3.
    fn plan<'a>() -> Plan<'a> {
        let mut plan = Plan::new(11);
        plan.versions.insert(stream("a").to_string(), 3);
        plan
    }

    fn conflict_actual(answer: Result<Committed, StoreError>) -> u64 {
        match answer {
            Err(StoreError::Conflict { actual, .. }) => actual,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn a_refused_request_leaves_its_positions_to_the_next() {
        let batch = [
            request(&[("a", ExpectedVersion::Exact(2), &new_ids(1))], None),
            request(&[("a", ExpectedVersion::Exact(3), &new_ids(2))], None),
            request(&[("b", ExpectedVersion::NoStream, &new_ids(1))], None),
        ];
        let mut plan = plan();
        assert_eq!(conflict_actual(plan.decide(&batch[0])), 3);
        let second = plan.decide(&batch[1]).unwrap();
        let third = plan.decide(&batch[2]).unwrap();
        assert_eq!(
            (
                second.results[0].first_position,
                second.results[0].first_version
            ),
            (11, 4)
        );
        assert_eq!(
            (
                third.results[0].first_position,
                third.results[0].first_version
            ),
            (13, 1)
        );
        assert_eq!(plan.rows.positions, [11, 12, 13]);
        assert_eq!(plan.rows.versions, [4, 5, 1]);
        assert_eq!(plan.rows.ids.len(), plan.rows.data.len());
        assert_eq!(plan.next, 14);
    }

    #[test]
    fn expectations_count_the_batch_s_earlier_requests_and_the_request_s_own_writes() {
        let batch = [
            request(&[("a", ExpectedVersion::Exact(3), &new_ids(1))], None),
            request(&[("a", ExpectedVersion::Exact(3), &new_ids(1))], None),
            request(
                &[
                    ("a", ExpectedVersion::Exact(4), &new_ids(2)),
                    ("a", ExpectedVersion::Exact(6), &new_ids(1)),
                ],
                None,
            ),
            request(&[("a", ExpectedVersion::NoStream, &new_ids(1))], None),
        ];
        let mut plan = plan();
        plan.decide(&batch[0]).unwrap();
        assert_eq!(conflict_actual(plan.decide(&batch[1])), 4);
        let third = plan.decide(&batch[2]).unwrap();
        assert_eq!(third.results[1].first_version, 7);
        assert_eq!(conflict_actual(plan.decide(&batch[3])), 7);
        assert_eq!(plan.rows.versions, [4, 5, 6, 7]);
    }

    #[test]
    fn a_request_with_one_conflicting_write_adds_none_of_its_rows() {
        let batch = [
            request(
                &[
                    ("b", ExpectedVersion::NoStream, &new_ids(2)),
                    ("a", ExpectedVersion::Exact(9), &new_ids(1)),
                ],
                Some(("k", "fp")),
            ),
            request(&[("b", ExpectedVersion::NoStream, &new_ids(1))], None),
        ];
        let mut plan = plan();
        assert_eq!(conflict_actual(plan.decide(&batch[0])), 3);
        assert!(plan.rows.positions.is_empty() && plan.new_keys.keys.is_empty());
        let second = plan.decide(&batch[1]).unwrap();
        assert_eq!(second.results[0].first_position, 11);
    }

    #[test]
    fn a_key_accepted_earlier_in_the_batch_answers_the_later_requests() {
        let batch = [
            request(
                &[("b", ExpectedVersion::Any, &new_ids(1))],
                Some(("k", "fp")),
            ),
            request(
                &[("b", ExpectedVersion::Any, &new_ids(1))],
                Some(("k", "fp")),
            ),
            request(
                &[("b", ExpectedVersion::Any, &new_ids(1))],
                Some(("k", "other")),
            ),
        ];
        let mut plan = plan();
        let first = plan.decide(&batch[0]).unwrap();
        let again = plan.decide(&batch[1]).unwrap();
        assert!(again.replayed && !first.replayed);
        assert_eq!(again.results, first.results);
        assert!(matches!(
            plan.decide(&batch[2]),
            Err(StoreError::IdempotencyKeyReused)
        ));
        assert_eq!(plan.rows.positions, [11]);
        assert_eq!(plan.new_keys.keys, ["k"]);
    }

    #[test]
    fn event_ids_accepted_earlier_in_the_batch_replay_or_are_refused() {
        let ids = new_ids(2);
        let batch = [
            request(&[("b", ExpectedVersion::NoStream, &ids)], None),
            request(&[("b", ExpectedVersion::NoStream, &ids)], None),
            request(
                &[("b", ExpectedVersion::Any, &[ids[1], Uuid::new_v4()])],
                None,
            ),
        ];
        let mut plan = plan();
        let first = plan.decide(&batch[0]).unwrap();
        let again = plan.decide(&batch[1]).unwrap();
        assert!(again.replayed);
        assert_eq!(again.results, first.results);
        assert!(matches!(
            plan.decide(&batch[2]),
            Err(StoreError::EventIdReused)
        ));
        assert_eq!(plan.rows.positions, [11, 12]);
    }
}
