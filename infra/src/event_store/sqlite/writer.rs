//! Group commit: the one task that writes.
//!
//! `append_many` queues a [`Request`] and waits for its answer. The writer takes everything
//! queued (up to [`MAX_BATCH`]) into one `BEGIN IMMEDIATE` transaction, so the cost of the
//! fsync at `COMMIT` is shared by all of them; while it waits on that fsync, the next batch
//! queues up. Each request runs inside its own savepoint, so one that is refused (a version
//! conflict, a reused key) is rolled back alone and the others still commit. Nobody hears back
//! before the `COMMIT` is durable; if it fails, every request of the batch gets the error.
//!
//! Versions are checked against the stream inside the transaction, after the requests before
//! it in the same batch, so of two `Exact(n)` appends to one stream exactly one wins. Being the
//! only writer also makes the autoincremented positions follow commit order.

use std::sync::Arc;

use commands::{AppendResult, Committed, ExpectedVersion, IdempotencyKey, StoreError};
use domain::{Position, StreamId};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Error as SqlxError};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, field, instrument, warn};

use super::{backend, recorded_key, to_i64, to_u64};
pub(super) use crate::event_store::write_stats::Counters;
pub use crate::event_store::write_stats::WriteStats;
use crate::event_store::write_stats::{answer_committed, fail_all};

/// The most requests committed in one transaction; bounds the latency of the first one.
const MAX_BATCH: usize = 256;

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
        Self { conn, head, stats }
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
        let outcomes = self.apply_all(&batch).await;
        let replies = batch.into_iter().map(|r| r.reply);
        match outcomes {
            Ok(outcomes) => answer_committed(&self.stats, &self.head, replies.collect(), outcomes),
            Err(failure) => {
                self.roll_back().await;
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
        let results = serde_json::to_string(results)
            .map_err(|e| StoreError::Backend(format!("cannot serialise results: {e}")))?;
        sqlx::query("INSERT INTO idempotency_keys (key, fingerprint, results) VALUES (?, ?, ?)")
            .bind(&key.key)
            .bind(&key.fingerprint)
            .bind(results)
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
