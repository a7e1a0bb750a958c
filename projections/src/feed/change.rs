//! What the `feed` projection writes: one row per live post. Public rows never carry the
//! author of anonymous content (ARCHITECTURE.md §6): a post's `author_id` is `None` when it is
//! anonymous.

use chrono::{DateTime, Utc};
use domain::{Position, PostId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub enum FeedChange {
    InsertPost {
        post_id: PostId,
        position: Position,
        /// The author of a *named* post (private column, for [`FeedChange::ForgetPostAuthor`]);
        /// always `None` for anonymous posts.
        author_id: Option<UserId>,
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
    /// The named posts of a user who unregistered show [`crate::DELETED_USER`].
    ForgetPostAuthor {
        user_id: UserId,
    },
    /// Adds `delta` to a post's comment count and `commenters` to its count of distinct
    /// commenters; `active_at`, if given, becomes its last activity.
    CountComment {
        post_id: PostId,
        delta: i64,
        commenters: i64,
        active_at: Option<DateTime<Utc>>,
    },
    /// A post's poll opens, every option at 0 votes.
    OpenPoll {
        post_id: PostId,
        options: Vec<String>,
    },
    /// A poll's counts, one per option, as the vote after which they stand gives them.
    SetPollCounts {
        post_id: PostId,
        counts: Vec<i64>,
    },
    /// One user's mark on a post, known only by its handle (a vote's handle and option, a
    /// reaction's handle and value; `None`: no reaction any more). What a signed-in reader is
    /// shown as their own; the handle tells nobody else anything.
    Mark {
        handle: String,
        post_id: PostId,
        value: Option<i64>,
    },
    /// A post's count of explicit followers, as the event after which it stands gives it.
    SetFollowers {
        post_id: PostId,
        followers: i64,
    },
    /// A post folded by moderation (`reason` the code), or unfolded (`None`): collapsed in the
    /// feed, out of the hot list.
    Fold {
        post_id: PostId,
        reason: Option<String>,
    },
    /// A post removed by moderation (hidden from every list and from its own page), or
    /// restored.
    Remove {
        post_id: PostId,
        removed: bool,
    },
    /// A post's reaction counts, as the event after which they stand gives them.
    SetReactions {
        post_id: PostId,
        likes: i64,
        dislikes: i64,
    },
}
