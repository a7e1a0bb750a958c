//! What the `users` projection writes: accounts and sessions.

use chrono::{DateTime, NaiveDate, Utc};
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
}
