//! Reservations make e-mail addresses and usernames unique in the write model.
//!
//! Each normalised e-mail and username has its own stream; registering appends an
//! `IdentityReserved` event to both with the expectation "no stream yet", atomically with the
//! user's own stream. Two concurrent registrations of one name cannot both succeed, whatever the
//! read models say.
//!
//! Stream keys are keyed hashes (HMAC-SHA256 under the server's secret), so the log's stream ids
//! carry no address, and a dictionary of campus addresses cannot be run against them without the
//! secret. The owner is sealed with the owner's data key under an opaque handle: once the user
//! unregisters (the key is destroyed) nobody can tell whose the reservation was. Stores written
//! before keyed names used unkeyed SHA-256 ([`legacy_stream`]); registration and login still
//! honour those reservations.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::aggregate::{Aggregate, DecodeError, DomainEvent};
use crate::ids::{StreamId, UserId};
use crate::keyed_hash::keyed_hash;
use crate::personal::{OPEN, Personal};
use crate::values::{Email, Username};

fn keyed(secret: &[u8], kind: &str, key: &str) -> StreamId {
    let digest = hex::encode(keyed_hash(secret, &[kind.as_bytes(), b":", key.as_bytes()]));
    StreamId::parse(format!("{kind}-{digest}")).expect("hex keys are valid stream ids")
}

fn hashed(kind: &str, key: &str) -> StreamId {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    StreamId::parse(format!("{kind}-{digest}")).expect("hex keys are valid stream ids")
}

/// The unkeyed reservation stream an older store used for the same name (`stream` as made by
/// [`email_stream`], [`username_stream`] or [`login_stream`] from `login`).
pub fn legacy_stream(login: &str) -> StreamId {
    let key = login.trim().to_lowercase();
    if key.contains('@') {
        hashed("email", &key)
    } else {
        hashed("username", &key)
    }
}

/// The reservation stream of an e-mail address.
pub fn email_stream(secret: &[u8], email: &Email) -> StreamId {
    keyed(secret, "email", email.as_str())
}

/// The reservation stream of a username (case-insensitive).
pub fn username_stream(secret: &[u8], username: &Username) -> StreamId {
    keyed(secret, "username", &username.normalized())
}

/// The reservation stream a login name points at, e-mail address or username, taken as typed.
///
/// The same stream as [`email_stream`] or [`username_stream`] for every value that parses today,
/// and also for a name that an older, looser `parse` let register and today's refuses (a
/// mixed-script username, say): those accounts must still sign in. It only finds reservations
/// that exist; it never creates a value.
pub fn login_stream(secret: &[u8], login: &str) -> StreamId {
    let key = login.trim().to_lowercase();
    let kind = if key.contains('@') {
        "email"
    } else {
        "username"
    };
    keyed(secret, kind, &key)
}

#[derive(Debug, Clone)]
pub enum ReservationCommand {
    Reserve {
        owner: Personal<UserId>,
    },
    /// The owner unregistered; the name is free again.
    Release,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "type", content = "data")]
pub enum ReservationEvent {
    /// Schema 2: the owner is sealed (schema 1 had it in clear).
    IdentityReserved {
        owner: Personal<UserId>,
    },
    IdentityReleased {},
}

impl DomainEvent for ReservationEvent {
    fn into_event(self) -> crate::Event {
        crate::Event::Reservation(self)
    }

    fn schema(&self) -> u32 {
        match self {
            ReservationEvent::IdentityReserved { .. } => 2,
            ReservationEvent::IdentityReleased {} => 1,
        }
    }

    fn upcast<'a>(
        event_type: &str,
        schema: u32,
        data: &'a Value,
    ) -> Result<std::borrow::Cow<'a, Value>, DecodeError> {
        match (event_type, schema) {
            ("IdentityReserved", 1) => {
                let owner = data["owner"].clone();
                Ok(std::borrow::Cow::Owned(serde_json::json!({
                    "owner": { OPEN: { "key": owner, "value": owner } }
                })))
            }
            ("IdentityReserved", 2) | (_, 1) => Ok(std::borrow::Cow::Borrowed(data)),
            _ => Err(DecodeError {
                event_type: event_type.to_owned(),
                schema,
                reason: "unknown schema".into(),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservationError {
    #[error("already taken")]
    Taken,
    #[error("not reserved")]
    NotReserved,
}

#[derive(Debug, Clone, Default)]
pub struct Reservation {
    /// Whether the name is held.
    pub taken: bool,
    /// Who holds it, while that can be read (not after the owner's key was destroyed).
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
            ReservationCommand::Reserve { owner } if !self.taken => {
                Ok(vec![ReservationEvent::IdentityReserved {
                    owner: owner.clone(),
                }])
            }
            ReservationCommand::Reserve { .. } => Err(ReservationError::Taken),
            ReservationCommand::Release if self.taken => {
                Ok(vec![ReservationEvent::IdentityReleased {}])
            }
            ReservationCommand::Release => Err(ReservationError::NotReserved),
        }
    }

    fn evolve(&mut self, event: &ReservationEvent) {
        match event {
            ReservationEvent::IdentityReserved { owner } => {
                self.taken = true;
                self.owner = owner.get().copied();
            }
            ReservationEvent::IdentityReleased {} => {
                self.taken = false;
                self.owner = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::personal::KeyRef;
    use crate::testing::given;

    const SECRET: &[u8] = b"test secret";

    #[test]
    fn streams_are_normalised_keyed_and_hide_the_key() {
        let a = email_stream(SECRET, &Email::parse("Ann@X.org").unwrap());
        let b = email_stream(SECRET, &Email::parse("ann@x.org").unwrap());
        assert_eq!(a, b);
        assert!(!a.as_str().contains("ann"));
        assert_ne!(
            a,
            email_stream(b"another", &Email::parse("ann@x.org").unwrap())
        );
        assert_ne!(a, legacy_stream("ann@x.org"));
        assert_eq!(legacy_stream(" Ann@X.org"), hashed("email", "ann@x.org"));
        assert_eq!(
            username_stream(SECRET, &Username::parse("Ann").unwrap()),
            username_stream(SECRET, &Username::parse("aNN").unwrap())
        );
    }

    #[test]
    fn login_streams_are_the_reserved_streams() {
        let email = Email::parse(" Ann@X.org").unwrap();
        assert_eq!(
            login_stream(SECRET, " Ann@X.org "),
            email_stream(SECRET, &email)
        );
        let name = Username::parse("\u{5C0F}\u{660E}_Ming").unwrap();
        assert_eq!(
            login_stream(SECRET, "\u{5C0F}\u{660E}_ming"),
            username_stream(SECRET, &name)
        );
        // A mixed-script name an older parse let register is still found by its key.
        assert!(Username::parse("b\u{043E}ss").is_err());
        assert_eq!(
            login_stream(SECRET, "B\u{043E}SS"),
            keyed(SECRET, "username", "b\u{043E}ss")
        );
    }

    #[test]
    fn a_released_name_can_be_reserved_again_and_old_owners_upcast() {
        let owner = UserId::new(uuid::Uuid::from_u128(3));
        let sealed = Personal::new(KeyRef::handle("h"), owner);
        let reserve = ReservationCommand::Reserve {
            owner: sealed.clone(),
        };
        let reserved = ReservationEvent::IdentityReserved { owner: sealed };
        given::<Reservation>([])
            .when(&ReservationCommand::Release)
            .then_error(ReservationError::NotReserved)
            .when(&reserve)
            .then([reserved.clone()]);
        let g = given::<Reservation>([reserved.clone()])
            .when(&reserve)
            .then_error(ReservationError::Taken);
        assert_eq!(g.state().owner, Some(owner));
        let g = g
            .when(&ReservationCommand::Release)
            .then([ReservationEvent::IdentityReleased {}]);
        assert_eq!(g.state().owner, None);
        given::<Reservation>([reserved.clone(), ReservationEvent::IdentityReleased {}])
            .when(&reserve)
            .then([reserved]);
        let old =
            ReservationEvent::decode("IdentityReserved", 1, &serde_json::json!({"owner": owner}))
                .unwrap();
        assert_eq!(given::<Reservation>([old]).state().owner, Some(owner));
    }
}
