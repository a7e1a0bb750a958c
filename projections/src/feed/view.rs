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
    /// Distinct commenters, counted once per mode (named, anonymous) per user.
    pub commenters: i64,
    pub likes: i64,
    pub dislikes: i64,
    /// Users who chose to follow the post (authors and commenters follow it too, unseen).
    pub followers: i64,
    pub poll: Option<PollView>,
    /// The reason code a folded post was folded for; `None` when not folded.
    pub folded: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
}

/// A post's poll: its options and the votes each has. Voters are never shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollView {
    pub options: Vec<String>,
    pub counts: Vec<i64>,
}

/// How the hot list ranks posts, from what the events recorded and nothing else (no clock, no
/// job: a rebuild gives the same order). A post's points are
/// `commenter * distinct commenters + like * likes - dislike * dislikes + follower *
/// explicit followers`, and its score is
/// `points * seconds_per_point + created_unix`: every `seconds_per_point` seconds of age
/// weigh as much as one point, so new posts start high and old ones sink. Only the `window`
/// newest posts are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HotFormula {
    pub commenter: i64,
    pub like: i64,
    pub dislike: i64,
    pub follower: i64,
    pub seconds_per_point: i64,
    pub window: usize,
}

impl Default for HotFormula {
    fn default() -> Self {
        Self {
            commenter: 1,
            like: 3,
            dislike: 1,
            follower: 2,
            seconds_per_point: 1800,
            window: 1000,
        }
    }
}

impl HotFormula {
    /// The score of a post (what the hot list orders by, highest first; ties newest first).
    pub fn score(
        &self,
        commenters: i64,
        likes: i64,
        dislikes: i64,
        followers: i64,
        created_unix: i64,
    ) -> i64 {
        let points = self.commenter * commenters + self.like * likes - self.dislike * dislikes
            + self.follower * followers;
        points.saturating_mul(self.seconds_per_point.max(1)) + created_unix
    }
}

/// What the API reads of the feed. Implemented on the same stores the projection writes.
#[async_trait]
pub trait FeedQueries: Send + Sync + 'static {
    /// Live posts, newest first; `cursor` is the position of the last post already seen.
    async fn feed(&self, page: Page) -> Result<Vec<PostView>, ReadModelError>;
    async fn post(&self, id: PostId) -> Result<Option<PostView>, ReadModelError>;
    /// The values of those of `handles` that mark `post` (see `FeedChange::Mark`).
    async fn marks(
        &self,
        post: PostId,
        handles: &[String],
    ) -> Result<Vec<(String, i64)>, ReadModelError>;
    /// The hot list: the `formula.window` newest live posts, best score first.
    async fn hot(
        &self,
        formula: &HotFormula,
        limit: usize,
    ) -> Result<Vec<PostView>, ReadModelError>;
}
