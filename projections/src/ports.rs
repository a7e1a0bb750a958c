//! The ports projections use: where events come from, where changes go, and how the API reads.

use async_trait::async_trait;
use domain::{CommentId, Envelope, Position, PostId, UserId};
use tokio::sync::watch;

use crate::Change;
use crate::views::{CommentView, PostView, SessionView, UserView};

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("read model store unavailable: {0}")]
    Unavailable(String),
    #[error("read model store failure: {0}")]
    Backend(String),
}

/// The log, as projectors read it: in position order, with a head notification.
#[async_trait]
pub trait EventSource: Send + Sync + 'static {
    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Envelope>, ReadModelError>;
    fn watch(&self) -> watch::Receiver<Position>;
}

/// Where projections write. `apply` commits the changes and the new checkpoint atomically.
#[async_trait]
pub trait ReadModelStore: Send + Sync + 'static {
    /// The position the projection has applied up to (0 if it never ran).
    async fn checkpoint(&self, projection: &str, version: u32) -> Result<Position, ReadModelError>;
    /// Applies the changes and moves the checkpoint to `position`, in one transaction.
    async fn apply(
        &self,
        projection: &str,
        version: u32,
        changes: &[Change],
        position: Position,
    ) -> Result<(), ReadModelError>;
    /// Every row of a projection's tables as text lines in a stable order, for comparing a
    /// live model with a rebuild.
    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError>;
}

/// A page request on a list ordered by position: items strictly beyond `cursor`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub cursor: Option<Position>,
    pub limit: usize,
}

/// What the API reads. Implemented on the same stores the projections write.
#[async_trait]
pub trait ForumQueries: Send + Sync + 'static {
    /// Live posts, newest first; `cursor` is the position of the last post already seen.
    async fn feed(&self, page: Page) -> Result<Vec<PostView>, ReadModelError>;
    async fn post(&self, id: PostId) -> Result<Option<PostView>, ReadModelError>;
    /// A post's live comments, oldest first.
    async fn comments(&self, post: PostId, page: Page) -> Result<Vec<CommentView>, ReadModelError>;
    async fn comment(&self, id: CommentId) -> Result<Option<CommentView>, ReadModelError>;
    async fn user(&self, id: UserId) -> Result<Option<UserView>, ReadModelError>;
    /// A session by token hash, if it exists and has not ended (expiry is the caller's check).
    async fn session(&self, token_hash: &str) -> Result<Option<SessionView>, ReadModelError>;
}
