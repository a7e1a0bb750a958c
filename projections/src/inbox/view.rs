//! How the inbox is read: by its owner only.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{CommentId, Position, PostId, UserId};
use serde::Serialize;

use crate::ports::{Page, ReadModelError};

/// One notification as its owner sees it. It names the commenter only as the comment does
/// (pseudonym or public name), never by id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationView {
    /// The inbox sequence number (the position of the comment notified): the SSE event id.
    pub seq: Position,
    #[serde(skip)]
    pub user_id: UserId,
    pub post_id: PostId,
    /// The comment notified (or moderated); `None` for a notice about a post.
    pub comment_id: Option<CommentId>,
    /// The commenter's pseudonym or public name (empty for a notice).
    pub name: String,
    /// The start of the comment (empty for a notice).
    pub excerpt: String,
    /// Why: `reply` (the comment answers yours), `followed` (you follow the post), or both;
    /// `moderation` for a notice.
    pub reasons: Vec<&'static str>,
    /// What moderation did to your item, or to you for it.
    pub notice: Option<NoticeView>,
    pub created_at: DateTime<Utc>,
}

/// A moderation notice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoticeView {
    /// `folded`, `unfolded`, `removed`, `restored` or `sanctioned`.
    pub act: String,
    pub reason: String,
    /// When a sanction ends (`None`: permanent, or not a sanction).
    pub ends_at: Option<DateTime<Utc>>,
}

/// A post the user follows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FollowView {
    pub post_id: PostId,
    /// Whether the user chose to follow (rather than by posting or commenting).
    pub explicit: bool,
    /// The position of the event that made the follow: the cursor of the list.
    #[serde(skip)]
    pub position: Position,
}

/// A post among the user's favourites.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FavouriteView {
    pub post_id: PostId,
    pub folder: Option<String>,
    /// The position of the event that set it: the list's order and cursor.
    #[serde(skip)]
    pub position: Position,
}

/// A folder of favourites in use, and how many posts it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FolderView {
    pub name: String,
    pub count: u64,
}

/// A user's inbox state: how far they have read, and how many are unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct InboxState {
    pub read_up_to: Position,
    /// Counted up to [`UNREAD_CAP`]: the cap means that many or more.
    pub unread: u64,
}

/// Where the unread count stops. Counting reads every unread notification, and a user
/// following busy posts can have very many; a client shows the cap as "999+".
pub const UNREAD_CAP: u64 = 1000;

#[async_trait]
pub trait InboxQueries: Send + Sync + 'static {
    /// The user's notifications, newest first, those before `page.cursor`.
    async fn notifications(
        &self,
        user: UserId,
        page: Page,
    ) -> Result<Vec<NotificationView>, ReadModelError>;
    async fn inbox_state(&self, user: UserId) -> Result<InboxState, ReadModelError>;
    /// The user's notifications with sequence numbers in `(after, up_to]`, oldest first, at
    /// most `limit`: what a resuming stream missed.
    async fn notifications_between(
        &self,
        user: UserId,
        after: Position,
        up_to: Position,
        limit: usize,
    ) -> Result<Vec<NotificationView>, ReadModelError>;
    /// Everyone's notifications with sequence numbers in `(after, up_to]`, in order: what one
    /// process hands its open streams after the projection moved.
    async fn notifications_since(
        &self,
        after: Position,
        up_to: Position,
        limit: usize,
    ) -> Result<Vec<NotificationView>, ReadModelError>;
    /// The highest sequence number the retention has dropped (0 if none).
    async fn pruned_up_to(&self) -> Result<Position, ReadModelError>;
    /// The posts the user follows, most recent first, those before `page.cursor`.
    async fn following(&self, user: UserId, page: Page) -> Result<Vec<FollowView>, ReadModelError>;
    /// Whether the user follows the post.
    async fn follows(&self, user: UserId, post: PostId) -> Result<bool, ReadModelError>;
    /// The user's favourites (of one folder, if given; `Some("")`: those in none), most
    /// recently set first, before `page.cursor`.
    async fn favourites(
        &self,
        user: UserId,
        folder: Option<&str>,
        page: Page,
    ) -> Result<Vec<FavouriteView>, ReadModelError>;
    /// The user's folders in use, by name.
    async fn folders(&self, user: UserId) -> Result<Vec<FolderView>, ReadModelError>;
}
