//! What the `users` projection writes: accounts and sessions.

use chrono::{DateTime, NaiveDate, Utc};
use domain::{CommentId, PostId, SanctionId, SessionId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub enum UserChange {
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
        /// The device label, in clear (this model is private to its user).
        device: Option<String>,
        created_at: DateTime<Utc>,
    },
    /// The session was used on `day`: its last-seen day moves forward to it.
    SeeSession {
        session_id: SessionId,
        day: NaiveDate,
    },
    EndSession {
        session_id: SessionId,
    },
    /// The user unregistered: their account row and every session go.
    DeleteUser {
        user_id: UserId,
    },
    SetModerator {
        user_id: UserId,
        moderator: bool,
    },
    /// A sanction of a user, with its terms (both sealed in the log, read here).
    InsertSanction {
        sanction_id: SanctionId,
        user_id: UserId,
        post_id: PostId,
        comment_id: Option<CommentId>,
        reason: String,
        step: i64,
        starts_at: DateTime<Utc>,
        /// `None`: permanent.
        ends_at: Option<DateTime<Utc>>,
        imposed_at: DateTime<Utc>,
    },
    AppealSanction {
        sanction_id: SanctionId,
        text: Option<String>,
        at: DateTime<Utc>,
    },
    DecideAppeal {
        sanction_id: SanctionId,
        upheld: bool,
        at: DateTime<Utc>,
    },
}
