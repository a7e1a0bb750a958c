//! How accounts and sessions are read (privately: by their owner, admins, and the session
//! check), and the users' query port.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::{SessionId, UserId};
use serde::Serialize;

use crate::ports::ReadModelError;

/// A private view: the account behind a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserView {
    pub user_id: UserId,
    pub username: String,
    pub email: String,
    pub is_admin: bool,
    pub registered_at: DateTime<Utc>,
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
}
