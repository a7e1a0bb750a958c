//! How the feed is read: a post as queries return it, and the feed's query port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{Position, PostId};
use serde::Serialize;

use crate::ports::{Page, ReadModelError};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostView {
    pub post_id: PostId,
    pub position: Position,
    pub author_name: String,
    pub anonymous: bool,
    pub title: Option<String>,
    pub body: String,
    pub tags: Vec<String>,
    pub comment_count: i64,
    pub likes: i64,
    pub dislikes: i64,
    pub poll: Option<PollView>,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
}

/// A post's poll: its options and the votes each has. Voters are never shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollView {
    pub options: Vec<String>,
    pub counts: Vec<i64>,
}

/// What the API reads of the feed. Implemented on the same stores the projection writes.
#[async_trait]
pub trait FeedQueries: Send + Sync + 'static {
    /// Live posts, newest first; `cursor` is the position of the last post already seen.
    async fn feed(&self, page: Page) -> Result<Vec<PostView>, ReadModelError>;
    async fn post(&self, id: PostId) -> Result<Option<PostView>, ReadModelError>;
}
