//! The Session aggregate: one login, on one device. The token's secret is never stored, only
//! its SHA-256.
//!
//! How many sessions a user may hold at once is not decided here but by the User aggregate
//! ([`crate::user::UserCommand::OpenSession`]), whose stream is written in the same atomic
//! append as the session's own.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::ids::{SessionId, UserId};
use crate::personal::{KeyRef, Personal};
use crate::values::DeviceLabel;

#[derive(Debug, Clone)]
pub enum SessionCommand {
    Start {
        session_id: SessionId,
        user_id: UserId,
        token_hash: String,
        expires_at: DateTime<Utc>,
        device: Option<DeviceLabel>,
    },
    /// Ends a live session: a logout, an end from another of the user's sessions, or an
    /// eviction. Only the session's own user may end it; to anyone else it does not exist, and
    /// neither does a session that expired before `at`.
    End { by: UserId, at: DateTime<Utc> },
    /// Notes that the session was used on `day` (UTC). Records at most one event per session
    /// and day, and nothing for an ended session.
    Seen { day: NaiveDate },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "type", content = "data")]
pub enum SessionEvent {
    SessionStarted {
        session_id: SessionId,
        user_id: UserId,
        token_hash: String,
        expires_at: DateTime<Utc>,
        /// The device label the user gave, sealed under their key (absent in logs written
        /// before labels, and when none was given).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<Personal<String>>,
    },
    SessionEnded {
        session_id: SessionId,
        user_id: UserId,
    },
    /// The session was used on `day`. Recorded by a background flush, never by the request
    /// itself, so that neither its position nor its metadata sits beside what that request
    /// wrote (an anonymous post must not be tied to a session by its neighbour in the log).
    SessionSeen {
        session_id: SessionId,
        day: NaiveDate,
    },
}

impl DomainEvent for SessionEvent {
    fn into_event(self) -> crate::Event {
        crate::Event::Session(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session already exists")]
    AlreadyStarted,
    #[error("no such session")]
    NotFound,
    #[error("the session has already ended")]
    AlreadyEnded,
    #[error("the session has expired")]
    Expired,
}

#[derive(Debug, Clone, Default)]
pub struct Session {
    pub id: Option<SessionId>,
    pub user_id: Option<UserId>,
    pub expires_at: Option<DateTime<Utc>>,
    pub ended: bool,
    /// The last day a [`SessionEvent::SessionSeen`] recorded.
    pub last_seen: Option<NaiveDate>,
}

impl Session {
    /// Whether this is a session of `user` that has neither ended nor expired at `at`.
    pub fn is_live_for(&self, user: UserId, at: DateTime<Utc>) -> bool {
        self.user_id == Some(user) && !self.ended && self.expires_at.is_some_and(|e| e > at)
    }
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
                device,
            } => {
                if self.id.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                Ok(vec![SessionEvent::SessionStarted {
                    session_id: *session_id,
                    user_id: *user_id,
                    token_hash: token_hash.clone(),
                    expires_at: *expires_at,
                    device: device
                        .as_ref()
                        .map(|d| Personal::new(KeyRef::user(*user_id), d.as_str().to_owned())),
                }])
            }
            SessionCommand::End { by, at } => {
                let (Some(session_id), Some(user_id)) = (self.id, self.user_id) else {
                    return Err(SessionError::NotFound);
                };
                if user_id != *by {
                    return Err(SessionError::NotFound);
                }
                if self.ended {
                    return Err(SessionError::AlreadyEnded);
                }
                if self.expires_at.is_some_and(|e| e <= *at) {
                    return Err(SessionError::Expired);
                }
                Ok(vec![SessionEvent::SessionEnded {
                    session_id,
                    user_id,
                }])
            }
            SessionCommand::Seen { day } => {
                let session_id = self.id.ok_or(SessionError::NotFound)?;
                if self.ended || self.last_seen.is_some_and(|d| d >= *day) {
                    return Ok(vec![]);
                }
                Ok(vec![SessionEvent::SessionSeen {
                    session_id,
                    day: *day,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::SessionStarted {
                session_id,
                user_id,
                expires_at,
                ..
            } => {
                self.id = Some(*session_id);
                self.user_id = Some(*user_id);
                self.expires_at = Some(*expires_at);
            }
            SessionEvent::SessionEnded { .. } => self.ended = true,
            SessionEvent::SessionSeen { day, .. } => {
                self.last_seen = self.last_seen.max(Some(*day));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;
    use uuid::Uuid;

    fn user(n: u128) -> UserId {
        UserId::new(Uuid::from_u128(n))
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn id() -> SessionId {
        SessionId::new(Uuid::from_u128(2))
    }

    fn started(owner: UserId, expires_at: DateTime<Utc>) -> SessionEvent {
        SessionEvent::SessionStarted {
            session_id: id(),
            user_id: owner,
            token_hash: "h".into(),
            expires_at,
            device: None,
        }
    }

    fn ended() -> SessionEvent {
        SessionEvent::SessionEnded {
            session_id: id(),
            user_id: user(1),
        }
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn seen_on(d: u32) -> SessionEvent {
        SessionEvent::SessionSeen {
            session_id: id(),
            day: day(d),
        }
    }

    #[test]
    fn a_session_ends_once_and_only_by_its_user() {
        let end = |by, secs| SessionCommand::End { by, at: at(secs) };
        given::<Session>([])
            .when(&end(user(1), 0))
            .then_error(SessionError::NotFound);
        let live = given::<Session>([started(user(1), at(100))])
            .when(&end(user(3), 0))
            // Someone else's session does not exist for them.
            .then_error(SessionError::NotFound)
            .when(&end(user(1), 100))
            .then_error(SessionError::Expired);
        assert!(live.state().is_live_for(user(1), at(99)));
        assert!(!live.state().is_live_for(user(1), at(100)));
        let gone = live.when(&end(user(1), 99)).then([ended()]);
        assert!(!gone.state().is_live_for(user(1), at(0)));
        given::<Session>([started(user(1), at(100)), ended()])
            .when(&end(user(1), 0))
            .then_error(SessionError::AlreadyEnded);
    }

    #[test]
    fn a_session_is_seen_at_most_once_a_day_and_not_after_its_end() {
        let seen = |d| SessionCommand::Seen { day: day(d) };
        given::<Session>([])
            .when(&seen(1))
            .then_error(SessionError::NotFound);
        given::<Session>([started(user(1), at(100))])
            .when(&seen(2))
            .then([seen_on(2)]);
        given::<Session>([started(user(1), at(100)), seen_on(2)])
            // The same day again, then an earlier day.
            .when(&seen(2))
            .then([])
            .when(&seen(1))
            .then([])
            .when(&seen(3))
            .then([seen_on(3)]);
        given::<Session>([started(user(1), at(100)), ended()])
            .when(&seen(3))
            .then([]);
    }

    #[test]
    fn a_device_label_is_sealed_under_its_users_key() {
        let start = SessionCommand::Start {
            session_id: id(),
            user_id: user(1),
            token_hash: "h".into(),
            expires_at: at(100),
            device: Some(DeviceLabel::parse(" Ann's phone ").unwrap()),
        };
        given::<Session>([])
            .when(&start)
            .then([SessionEvent::SessionStarted {
                session_id: id(),
                user_id: user(1),
                token_hash: "h".into(),
                expires_at: at(100),
                device: Some(Personal::new(KeyRef::user(user(1)), "Ann's phone".into())),
            }])
            .when(&start)
            .then_error(SessionError::AlreadyStarted);
        // A log written before labels decodes without one.
        let old = serde_json::json!({"session_id": Uuid::from_u128(2), "user_id": Uuid::from_u128(1),
            "token_hash": "h", "expires_at": "2026-01-01T00:00:00Z"});
        let event = SessionEvent::decode("SessionStarted", 1, &old).unwrap();
        assert!(matches!(
            event,
            SessionEvent::SessionStarted { device: None, .. }
        ));
    }
}
