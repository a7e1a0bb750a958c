//! What the `users` projection writes: accounts and sessions.

use chrono::{DateTime, Utc};
use domain::{SessionId, UserId};

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
    },
    EndSession {
        session_id: SessionId,
    },
    /// The user unregistered: their account row and every session go.
    DeleteUser {
        user_id: UserId,
    },
}
