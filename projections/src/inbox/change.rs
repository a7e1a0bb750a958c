//! What the `inbox` projection writes: who follows which post, and each user's notifications.
//! Private rows: they hold user ids beside post ids (a follow of one's own anonymous post
//! says who wrote it), so only their owner reads them, and a user who unregisters takes them
//! along ([`InboxChange::ForgetUser`]).

use chrono::{DateTime, Utc};
use domain::{CommentId, Position, PostId, UserId};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub enum InboxChange {
    /// The user follows the post because they posted or commented, unless they made an
    /// explicit choice about it already.
    AutoFollow {
        post_id: PostId,
        user_id: UserId,
        position: Position,
    },
    /// The user's explicit choice, which overrides any earlier one.
    SetFollow {
        post_id: PostId,
        user_id: UserId,
        following: bool,
        position: Position,
    },
    /// The named author of a post or comment (public on the item): whom a reply to it
    /// addresses.
    NamedAuthor {
        item: Uuid,
        post_id: PostId,
        user_id: UserId,
    },
    /// A comment's notifications, one per person: the author it answers (`addressee` when
    /// anonymous, else the named author of `answers`) gets a "reply", every follower a
    /// "followed", merged into one row for a person who is both; nobody's for the commenter.
    /// `seq` (the comment's position) orders each inbox.
    Notify {
        seq: Position,
        post_id: PostId,
        comment_id: CommentId,
        commenter: Option<UserId>,
        addressee: Option<UserId>,
        /// The item the comment answers: the comment replied to, else the post.
        answers: Uuid,
        /// The commenter's pseudonym or public name, as the comment shows it.
        name: String,
        excerpt: String,
        at: DateTime<Utc>,
    },
    /// A moderation notice to an item's author: their item was folded, unfolded, removed or
    /// restored, or they were sanctioned for it. The author is `author` (an anonymous one, read
    /// from the event) or else the named author of `item`; nobody else is told. `seq` is the
    /// event's position.
    Notice {
        seq: Position,
        post_id: PostId,
        comment_id: Option<CommentId>,
        item: Uuid,
        author: Option<UserId>,
        /// `folded`, `unfolded`, `removed`, `restored` or `sanctioned`.
        notice: String,
        reason: String,
        /// The end of a sanction (`None`: permanent, or not a sanction).
        ends_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// Notifications of comments from before `before` are dropped (the retention).
    Prune {
        before: DateTime<Utc>,
    },
    /// A deleted comment's notifications are withdrawn.
    Retract {
        comment_id: CommentId,
    },
    /// A deleted post's notifications, follows and favourites go.
    ForgetPost {
        post_id: PostId,
    },
    MarkRead {
        user_id: UserId,
        up_to: Position,
    },
    /// A post among the user's favourites, in a folder or none; `position` orders the list.
    SetFavourite {
        user_id: UserId,
        post_id: PostId,
        folder: Option<String>,
        position: Position,
    },
    RemoveFavourite {
        user_id: UserId,
        post_id: PostId,
    },
    /// The user unregistered: their follows, notifications, favourites and read mark go.
    ForgetUser {
        user_id: UserId,
    },
}
