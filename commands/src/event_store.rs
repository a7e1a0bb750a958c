//! The `EventStore` port: the log of record (ARCHITECTURE.md §3).
//!
//! Every backend runs through the same contract suite (`infra/tests/contract`). The rules:
//! - `append_many` commits all writes of one call atomically or none; a wrong expectation is a
//!   [`StoreError::Conflict`], never a partial write. Acknowledged means durable.
//! - Appending events whose ids are already stored returns the original result.
//! - A batch carrying an [`IdempotencyKey`] that was seen before returns the original result
//!   (flagged as a replay) and appends nothing.
//! - `position` is global and strictly increasing in commit order; `version` per stream counts
//!   1, 2, 3, ... without holes. A reader tailing `read_all` never skips a committed event.
//!
//! Details every backend shares (fixed by the contract suite):
//! - A call without any event is `Invalid`; a `StreamWrite` without events writes nothing and
//!   gets no result, but its expectation still guards the whole batch.
//! - Several writes to one stream in one call apply in order. `Exact(0)` is `Invalid` (use
//!   `NoStream`), and so is an event id repeated within one call.
//! - Re-sending stored event ids is a replay even if the expectation no longer holds: that is the
//!   retry of a caller whose acknowledgement was lost.
//! - A caller that stops waiting after submitting may still have its write committed.
//! - `watch` is notified of this process's own commits; PostgreSQL also notifies every other
//!   process (LISTEN/NOTIFY), SQLite does not, so readers of a shared SQLite file in other
//!   processes look again now and then (the projection runner does).

use async_trait::async_trait;
use domain::{Envelope, NewEvent, Position, RawEnvelope, StoredEvents, StreamId};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What the writer believes about a stream before appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last version must be exactly this (at least 1).
    Exact(u64),
}

impl ExpectedVersion {
    /// The expectation that matches a stream whose last version is `version` (0 = no stream).
    pub fn from_version(version: u64) -> Self {
        if version == 0 {
            Self::NoStream
        } else {
            Self::Exact(version)
        }
    }

    pub fn admits(&self, current: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current == 0,
            Self::Exact(v) => *v == current,
        }
    }
}

/// Events for one stream within an atomic batch.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamWrite {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// A client-chosen key that makes a whole batch idempotent, with a fingerprint of the request
/// it was first used for, so that reusing a key for a different request is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: String,
}

/// Where one stream write landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    pub stream: StreamId,
    /// Versions and positions of the first and last event written (equal for one event).
    pub first_version: u64,
    pub last_version: u64,
    pub first_position: Position,
    pub last_position: Position,
}

/// The result of a whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// One result per `StreamWrite`, in order (writes without events are omitted).
    pub results: Vec<AppendResult>,
    /// True when nothing was appended because the batch (its event ids or its idempotency key)
    /// had been committed before; `results` are then the original ones.
    pub replayed: bool,
}

impl Committed {
    /// The position of the batch's last event.
    pub fn last_position(&self) -> Position {
        self.results
            .iter()
            .map(|r| r.last_position)
            .max()
            .unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("version conflict on stream {stream}: expected {expected:?}, found version {actual}")]
    Conflict {
        stream: StreamId,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("the idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("some of these event ids are already stored, in a different batch")]
    EventIdReused,
    #[error("invalid append: {0}")]
    Invalid(String),
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("event store failure: {0}")]
    Backend(String),
}

/// The log of record. Implemented in `infra` (SQLite, PostgreSQL).
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends the writes atomically (see the module docs for the rules).
    async fn append_many(
        &self,
        writes: Vec<StreamWrite>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Committed, StoreError>;

    /// The original result of a batch committed with this idempotency key, if any.
    /// [`StoreError::IdempotencyKeyReused`] if the key was used for a different request.
    async fn find_idempotent(&self, key: &IdempotencyKey) -> Result<Option<Committed>, StoreError>;

    /// Events of one stream with `version >= from_version`, in version order.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<Envelope>, StoreError>;

    /// Up to `limit` events with `position > after`, in position order, none skipped.
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<Envelope>, StoreError>;

    /// [`Self::read_all`] with each event's data and metadata left as the stored JSON text,
    /// unparsed, for readers that pass them on (the Kafka relay). Serialises as `read_all`'s
    /// envelopes do.
    async fn read_all_raw(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RawEnvelope>, StoreError>;

    /// [`Self::read_all_raw`] as one [`StoredEvents`] page: every field as stored, nothing
    /// decoded or allocated per event, for readers that write the envelopes' JSON straight
    /// from it (the Kafka relay). The default builds the page from `read_all_raw`; stores
    /// read it from their rows, and wrappers pass it through as they pass `read_all_raw`.
    async fn read_all_stored(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<StoredEvents, StoreError> {
        let raw = self.read_all_raw(after, limit).await?;
        Ok(StoredEvents::from(raw.as_slice()))
    }

    /// The position up to which `read_all` is complete; changes are announced on [`Self::watch`].
    async fn head(&self) -> Result<Position, StoreError>;

    /// A receiver that is notified whenever the head advances (no polling needed).
    fn watch(&self) -> watch::Receiver<Position>;

    /// Appends to a single stream.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Committed, StoreError> {
        let write = StreamWrite {
            stream: stream.clone(),
            expected,
            events,
        };
        self.append_many(vec![write], None).await
    }
}
