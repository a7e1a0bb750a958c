//! The Session aggregate: one login. The token's secret is never stored, only its SHA-256.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::ids::{SessionId, UserId};

#[derive(Debug, Clone)]
pub enum SessionCommand {
    Start {
        session_id: SessionId,
        user_id: UserId,
        token_hash: String,
        expires_at: DateTime<Utc>,
    },
    /// Logout. Only the session's own user may end it.
    End { by: UserId },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum SessionEvent {
    SessionStarted {
        session_id: SessionId,
        user_id: UserId,
        token_hash: String,
        expires_at: DateTime<Utc>,
    },
    SessionEnded {
        session_id: SessionId,
        user_id: UserId,
    },
}

impl DomainEvent for SessionEvent {
    const TYPES: &'static [&'static str] = &["SessionStarted", "SessionEnded"];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session already exists")]
    AlreadyStarted,
    #[error("no such session")]
    NotFound,
    #[error("the session has already ended")]
    AlreadyEnded,
}

#[derive(Debug, Clone, Default)]
pub struct Session {
    id: Option<SessionId>,
    user_id: Option<UserId>,
    ended: bool,
}

impl Aggregate for Session {
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = ();

    fn decide(&self, command: &SessionCommand, _: &()) -> Result<Vec<SessionEvent>, SessionError> {
        match command {
            SessionCommand::Start {
                session_id,
                user_id,
                token_hash,
                expires_at,
            } => {
                if self.id.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                Ok(vec![SessionEvent::SessionStarted {
                    session_id: *session_id,
                    user_id: *user_id,
                    token_hash: token_hash.clone(),
                    expires_at: *expires_at,
                }])
            }
            SessionCommand::End { by } => {
                let (Some(session_id), Some(user_id)) = (self.id, self.user_id) else {
                    return Err(SessionError::NotFound);
                };
                if user_id != *by {
                    return Err(SessionError::NotFound);
                }
                if self.ended {
                    return Err(SessionError::AlreadyEnded);
                }
                Ok(vec![SessionEvent::SessionEnded {
                    session_id,
                    user_id,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::SessionStarted {
                session_id,
                user_id,
                ..
            } => {
                self.id = Some(*session_id);
                self.user_id = Some(*user_id);
            }
            SessionEvent::SessionEnded { .. } => self.ended = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn a_session_ends_once_and_only_by_its_user() {
        let user = UserId::new(Uuid::from_u128(1));
        let mut s = Session::default();
        assert_eq!(
            s.decide(&SessionCommand::End { by: user }, &()),
            Err(SessionError::NotFound)
        );
        let start = SessionCommand::Start {
            session_id: SessionId::new(Uuid::from_u128(2)),
            user_id: user,
            token_hash: "h".into(),
            expires_at: DateTime::from_timestamp(0, 0).unwrap(),
        };
        for e in s.decide(&start, &()).unwrap() {
            s.evolve(&e);
        }
        let other = UserId::new(Uuid::from_u128(3));
        assert_eq!(
            s.decide(&SessionCommand::End { by: other }, &()),
            Err(SessionError::NotFound)
        );
        for e in s.decide(&SessionCommand::End { by: user }, &()).unwrap() {
            s.evolve(&e);
        }
        assert_eq!(
            s.decide(&SessionCommand::End { by: user }, &()),
            Err(SessionError::AlreadyEnded)
        );
    }
}
