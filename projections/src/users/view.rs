//! How accounts and sessions are read (privately: by their owner, admins, and the session
//! check), and the users' query port.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::{CommentId, PostId, SanctionId, SessionId, UserId};
use serde::Serialize;

use crate::ports::ReadModelError;

/// A private view: the account behind a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserView {
    pub user_id: UserId,
    pub username: String,
    pub email: String,
    pub is_admin: bool,
    pub is_moderator: bool,
    pub registered_at: DateTime<Utc>,
    /// The user's sanctions that were not overturned (the write check's input).
    pub sanctions: Vec<SanctionTerm>,
}

impl UserView {
    /// When the sanction in force at `now` ends, if one is: `Some(None)` for a permanent one.
    /// Sanctions follow each other without gaps, so the end is the latest one's.
    pub fn sanctioned_until(&self, now: DateTime<Utc>) -> Option<Option<DateTime<Utc>>> {
        let in_force = |t: &&SanctionTerm| t.starts_at <= now && t.ends_at.is_none_or(|e| now < e);
        self.sanctions.iter().find(in_force)?;
        if self.sanctions.iter().any(|t| t.ends_at.is_none()) {
            return Some(None);
        }
        Some(self.sanctions.iter().filter_map(|t| t.ends_at).max())
    }
}

/// When one sanction binds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SanctionTerm {
    pub starts_at: DateTime<Utc>,
    /// `None`: permanent.
    pub ends_at: Option<DateTime<Utc>>,
}

/// A sanction as its subject sees it, and as moderators see an appeal: never whose it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SanctionView {
    pub sanction_id: SanctionId,
    pub post_id: PostId,
    pub comment_id: Option<CommentId>,
    pub reason: String,
    pub step: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub imposed_at: DateTime<Utc>,
    pub appealed_at: Option<DateTime<Utc>>,
    pub appeal: Option<String>,
    /// `Some(true)` upheld, `Some(false)` overturned, `None` undecided.
    pub upheld: Option<bool>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// One of a user's sessions that has not ended (it may have expired), as their own session
/// list and "my data" show them.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub session_id: SessionId,
    pub expires_at: DateTime<Utc>,
    pub device: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The last day (UTC) the session was used, as far as recorded: its first day, or a later
    /// `SessionSeen`.
    pub last_seen: NaiveDate,
}

/// A live session found by its token hash.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub session_id: SessionId,
    pub user: UserView,
    pub expires_at: DateTime<Utc>,
    /// As in [`SessionSummary::last_seen`].
    pub last_seen: NaiveDate,
}

/// What the API reads of accounts and sessions.
#[async_trait]
pub trait UserQueries: Send + Sync + 'static {
    async fn user(&self, id: UserId) -> Result<Option<UserView>, ReadModelError>;
    /// A session by token hash, if it exists and has not ended (expiry is the caller's check).
    async fn session(&self, token_hash: &str) -> Result<Option<SessionView>, ReadModelError>;
    /// A user's sessions that have not ended (expired ones too: expiry is the caller's
    /// check), newest first.
    async fn sessions_of(&self, user: UserId) -> Result<Vec<SessionSummary>, ReadModelError>;
    /// A user's sanctions, newest first.
    async fn sanctions_of(&self, user: UserId) -> Result<Vec<SanctionView>, ReadModelError>;
    /// Appealed sanctions, undecided first, oldest appeal first.
    async fn appeals(&self, limit: usize) -> Result<Vec<SanctionView>, ReadModelError>;
}
