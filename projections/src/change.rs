//! The vocabulary projections use to describe read-model writes, independent of any database.
//!
//! Public rows never carry the author of anonymous content (ARCHITECTURE.md §6): the changes
//! below have no author id field at all for posts and comments.

use chrono::{DateTime, Utc};
use domain::{CommentId, Position, PostId, SessionId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    // users
    InsertUser {
        user_id: UserId,
        username: String,
        email: String,
        registered_at: DateTime<Utc>,
    },
    SetAdmin {
        user_id: UserId,
    },
    InsertSession {
        session_id: SessionId,
        user_id: UserId,
        token_hash: String,
        expires_at: DateTime<Utc>,
    },
    EndSession {
        session_id: SessionId,
    },
    // feed
    InsertPost {
        post_id: PostId,
        position: Position,
        author_name: String,
        anonymous: bool,
        title: Option<String>,
        body: String,
        tags: Vec<String>,
        created_at: DateTime<Utc>,
    },
    DeletePost {
        post_id: PostId,
    },
    CountComment {
        post_id: PostId,
        delta: i64,
        at: DateTime<Utc>,
    },
    // comments
    InsertComment {
        comment_id: CommentId,
        post_id: PostId,
        position: Position,
        author_name: String,
        anonymous: bool,
        is_host: bool,
        body: String,
        reply_to: Option<CommentId>,
        created_at: DateTime<Utc>,
    },
    DeleteComment {
        comment_id: CommentId,
    },
    DeleteCommentsOf {
        post_id: PostId,
    },
}
