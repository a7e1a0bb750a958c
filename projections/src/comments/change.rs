//! What the `comments` projection writes: one row per live comment. A comment's `author_id`
//! is `None` when it is anonymous (ARCHITECTURE.md §6).

use chrono::{DateTime, Utc};
use domain::{CommentId, Position, PostId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub enum CommentChange {
    InsertComment {
        comment_id: CommentId,
        post_id: PostId,
        position: Position,
        /// The author of a *named* comment (private column); always `None` when anonymous.
        author_id: Option<UserId>,
        author_name: String,
        anonymous: bool,
        is_host: bool,
        body: String,
        reply_to: Option<CommentId>,
        created_at: DateTime<Utc>,
    },
    DeleteComment {
        post_id: PostId,
        comment_id: CommentId,
    },
    /// A comment's reaction counts, as the event after which they stand gives them.
    SetReactions {
        comment_id: CommentId,
        likes: i64,
        dislikes: i64,
    },
    DeleteCommentsOf {
        post_id: PostId,
    },
    /// A comment folded by moderation (`reason` the code), or unfolded (`None`).
    Fold {
        post_id: PostId,
        comment_id: CommentId,
        reason: Option<String>,
    },
    /// A comment removed by moderation (hidden), or restored.
    Remove {
        post_id: PostId,
        comment_id: CommentId,
        removed: bool,
    },
    /// The named comments of a user who unregistered show [`crate::DELETED_USER`].
    ForgetCommentAuthor {
        user_id: UserId,
    },
}
