//! The ports projections use: where events come from, where changes go, and how the API reads.

use std::sync::Arc;

use async_trait::async_trait;
use domain::{Envelope, Event, Position};
use tokio::sync::watch;

use crate::Change;

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("read model store unavailable: {0}")]
    Unavailable(String),
    #[error("read model store failure: {0}")]
    Backend(String),
    /// The backend gave up on the work for a reason that goes away when it is tried again: a
    /// deadlock victim or a serialisation failure (SQLSTATE 40P01, 40001).
    #[error("read model store conflict, worth retrying: {0}")]
    Transient(String),
    /// The generation written to is no longer the live one (a rebuild replaced it).
    #[error("generation {generation} of projection {projection} has been replaced")]
    Superseded { projection: String, generation: u32 },
    #[error("no such projection: {0}")]
    UnknownProjection(String),
    /// The generation's checkpoint is not where the batch starts: another projector applied
    /// events first. Nothing was written; re-read the checkpoint and go on from there.
    #[error("generation {generation} of projection {projection} is at position {position} already")]
    Moved {
        projection: String,
        generation: u32,
        position: Position,
    },
}

/// One physical build of a projection's tables. Queries read the live generation; a rebuild
/// fills a new one beside it and then promotes it in one atomic switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    pub number: u32,
    /// The projection code version that built it.
    pub version: u32,
    /// The checkpoint: the last position applied to it.
    pub position: Position,
}

/// The answer to a promotion request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotion {
    /// The generation is live now; the ones it replaced are gone.
    Done,
    /// The live generation is further ahead; catch up to `live_position` and ask again.
    Behind { live_position: Position },
}

/// An event read from the log, decoded once and shared (behind an `Arc`) by every projector
/// that reads it: a source hands the same record to all of them, instead of each cloning the
/// envelope and decoding its JSON again.
#[derive(Debug)]
pub struct Decoded {
    pub envelope: Envelope,
    /// The domain event, or why the envelope does not decode (a poison event).
    pub event: Result<Event, String>,
}

impl Decoded {
    pub fn new(envelope: Envelope) -> Arc<Self> {
        let event = Event::decode(&envelope).map_err(|e| e.to_string());
        Arc::new(Self { envelope, event })
    }

    /// An envelope with the event it holds, already typed (an append of this process: see
    /// [`domain::Typed`]); `event` must be what decoding `envelope` gives.
    pub fn with_event(envelope: Envelope, event: Event) -> Arc<Self> {
        Arc::new(Self {
            envelope,
            event: Ok(event),
        })
    }

    pub fn position(&self) -> Position {
        self.envelope.position
    }
}

/// The log, as projectors read it: in position order, with a head notification.
#[async_trait]
pub trait EventSource: Send + Sync + 'static {
    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Arc<Decoded>>, ReadModelError>;
    fn watch(&self) -> watch::Receiver<Position>;
}

/// Where projections write. `apply` commits the changes and the new checkpoint atomically.
#[async_trait]
pub trait ReadModelStore: Send + Sync + 'static {
    /// The generation queries read, if the projection was ever built.
    async fn live(&self, projection: &str) -> Result<Option<Generation>, ReadModelError>;
    /// Creates the empty tables of a new, not yet live generation built by code `version`
    /// (dropping any unfinished generation of an earlier rebuild).
    async fn create_generation(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<Generation, ReadModelError>;
    /// Applies the changes of the events after `from` up to `to` to a generation and moves its
    /// checkpoint to `to`, in one transaction. [`ReadModelError::Superseded`] if the generation
    /// has been replaced, [`ReadModelError::Moved`] if its checkpoint is not `from` (so two
    /// projectors can never apply one event twice).
    async fn apply(
        &self,
        projection: &str,
        generation: u32,
        changes: &[Change],
        from: Position,
        to: Position,
    ) -> Result<(), ReadModelError>;
    /// Makes `generation` live in one atomic switch, unless it is behind the live one.
    async fn promote(&self, projection: &str, generation: u32)
    -> Result<Promotion, ReadModelError>;
    /// Every row of the live generation's tables as text lines in a stable order, for
    /// comparing a live model with a rebuild.
    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError>;
    /// The least time between the starts of two batches of one live projector into this
    /// store, beside the projection's own [`crate::Projection::pace`]: zero where a batch
    /// costs little beyond its changes (SQLite in process); longer where each one costs
    /// round trips and a commit (a database server), so that under load the projectors write
    /// fewer, larger transactions. Only a projector that keeps up waits; one behind reads on.
    fn pace(&self, projection: &str) -> std::time::Duration {
        let _ = projection;
        std::time::Duration::ZERO
    }
    /// How long the projection's last applied batch held a writer that every projection of
    /// this store takes turns on (SQLite's one read-write connection), not counting the wait
    /// for its turn; `None` where projections do not wait for each other. The projector sizes
    /// its next batch by it ([`crate::runner::TURN`]).
    fn held(&self, projection: &str) -> Option<std::time::Duration> {
        let _ = projection;
        None
    }
}

/// A page request on a list ordered by position: items strictly beyond `cursor`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub cursor: Option<Position>,
    pub limit: usize,
}

/// What the API reads of the forum: the feed's, the comments' and the users' query ports
/// together (each defined beside its projection). Implemented on the same stores the
/// projections write.
pub trait ForumQueries:
    crate::feed::FeedQueries
    + crate::comments::CommentQueries
    + crate::users::UserQueries
    + crate::inbox::InboxQueries
    + crate::moderation::ModerationQueries
{
}

impl<T> ForumQueries for T where
    T: crate::feed::FeedQueries
        + crate::comments::CommentQueries
        + crate::users::UserQueries
        + crate::inbox::InboxQueries
        + crate::moderation::ModerationQueries
{
}
