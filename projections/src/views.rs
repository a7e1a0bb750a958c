//! What queries return: public rows of the read models.

use chrono::{DateTime, Utc};
use domain::{CommentId, Position, PostId, SessionId, UserId};
use serde::Serialize;

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
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
}

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
    pub created_at: DateTime<Utc>,
}

/// A private view: the account behind a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserView {
    pub user_id: UserId,
    pub username: String,
    pub email: String,
    pub is_admin: bool,
    pub registered_at: DateTime<Utc>,
}

/// One of a user's live sessions, as "my data" lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub session_id: SessionId,
    pub expires_at: DateTime<Utc>,
}

/// A live session found by its token hash.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub session_id: SessionId,
    pub user: UserView,
    pub expires_at: DateTime<Utc>,
}
