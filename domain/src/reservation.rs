//! Reservations make e-mail addresses and usernames unique in the write model.
//!
//! Each normalised e-mail and username has its own stream; registering appends an
//! `IdentityReserved` event to both with the expectation "no stream yet", atomically with the
//! user's own stream. Two concurrent registrations of one name cannot both succeed, whatever the
//! read models say. Stream keys are SHA-256 hashes so the log's stream ids carry no address.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::ids::{StreamId, UserId};
use crate::values::{Email, Username};

fn hashed(kind: &str, key: &str) -> StreamId {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    StreamId::parse(format!("{kind}-{digest}")).expect("hex keys are valid stream ids")
}

/// The reservation stream of an e-mail address.
pub fn email_stream(email: &Email) -> StreamId {
    hashed("email", email.as_str())
}

/// The reservation stream of a username (case-insensitive).
pub fn username_stream(username: &Username) -> StreamId {
    hashed("username", &username.normalized())
}

/// The reservation stream a login name points at, e-mail address or username, taken as typed.
///
/// The same stream as [`email_stream`] or [`username_stream`] for every value that parses today,
/// and also for a name that an older, looser `parse` let register and today's refuses (a
/// mixed-script username, say): those accounts must still sign in. It only finds reservations
/// that exist; it never creates a value.
pub fn login_stream(login: &str) -> StreamId {
    let key = login.trim().to_lowercase();
    let kind = if key.contains('@') {
        "email"
    } else {
        "username"
    };
    hashed(kind, &key)
}

#[derive(Debug, Clone)]
pub enum ReservationCommand {
    Reserve { owner: UserId },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ReservationEvent {
    IdentityReserved { owner: UserId },
}

impl DomainEvent for ReservationEvent {
    const TYPES: &'static [&'static str] = &["IdentityReserved"];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservationError {
    #[error("already taken")]
    Taken,
}

#[derive(Debug, Clone, Default)]
pub struct Reservation {
    pub owner: Option<UserId>,
}

impl Aggregate for Reservation {
    type Command = ReservationCommand;
    type Event = ReservationEvent;
    type Error = ReservationError;
    type Services = ();

    fn decide(
        &self,
        command: &ReservationCommand,
        _: &(),
    ) -> Result<Vec<ReservationEvent>, ReservationError> {
        match command {
            ReservationCommand::Reserve { owner } => match self.owner {
                Some(_) => Err(ReservationError::Taken),
                None => Ok(vec![ReservationEvent::IdentityReserved { owner: *owner }]),
            },
        }
    }

    fn evolve(&mut self, event: &ReservationEvent) {
        match event {
            ReservationEvent::IdentityReserved { owner } => self.owner = Some(*owner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_normalised_and_hide_the_key() {
        let a = email_stream(&Email::parse("Ann@X.org").unwrap());
        let b = email_stream(&Email::parse("ann@x.org").unwrap());
        assert_eq!(a, b);
        assert!(!a.as_str().contains("ann"));
        let u = username_stream(
            &Username::parse("小明").unwrap_or_else(|_| Username::parse("小明同学").unwrap()),
        );
        assert_eq!(u.kind(), "username");
        assert_eq!(
            username_stream(&Username::parse("Ann").unwrap()),
            username_stream(&Username::parse("aNN").unwrap())
        );
    }

    #[test]
    fn login_streams_are_the_reserved_streams() {
        let email = Email::parse(" Ann@X.org").unwrap();
        assert_eq!(login_stream(" Ann@X.org "), email_stream(&email));
        let name = Username::parse("\u{5C0F}\u{660E}_Ming").unwrap();
        assert_eq!(
            login_stream("\u{5C0F}\u{660E}_ming"),
            username_stream(&name)
        );
        // A mixed-script name an older parse let register is still found by its key.
        assert!(Username::parse("b\u{043E}ss").is_err());
        assert_eq!(
            login_stream("B\u{043E}SS"),
            hashed("username", "b\u{043E}ss")
        );
    }
}
