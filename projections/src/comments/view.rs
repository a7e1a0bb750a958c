//! How comments are read: a comment as queries return it, and the comments' query port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{CommentId, Position, PostId};
use serde::Serialize;

use crate::ports::{Page, ReadModelError};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommentView {
    pub comment_id: CommentId,
    pub post_id: PostId,
    pub position: Position,
    pub author_name: String,
    pub anonymous: bool,
    pub is_host: bool,
    pub body: String,
    pub reply_to: Option<CommentId>,
    pub likes: i64,
    pub dislikes: i64,
    /// The reason code a folded comment was folded for; `None` when not folded.
    pub folded: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What the API reads of comments.
#[async_trait]
pub trait CommentQueries: Send + Sync + 'static {
    /// A post's live comments, oldest first.
    async fn comments(&self, post: PostId, page: Page) -> Result<Vec<CommentView>, ReadModelError>;
    /// A live post's comments page, or `None` when the post is not live (not in the feed):
    /// what a comment page answers. A store may read both in one trip (the SQLite readers do).
    async fn comments_of_live_post(
        &self,
        post: PostId,
        page: Page,
    ) -> Result<Option<Vec<CommentView>>, ReadModelError>;
    async fn comment(&self, id: CommentId) -> Result<Option<CommentView>, ReadModelError>;
}
