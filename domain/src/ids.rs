//! Identifiers. Each entity id is a UUIDv7 newtype; a stream id names one aggregate instance.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! entity_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const fn new(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
            /// Parses an id as users send it, in its one canonical spelling only (see
            /// [`parse_canonical_uuid`]).
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                parse_canonical_uuid(raw).map(Self).ok_or(InvalidId)
            }
            /// The stream that holds this entity's events.
            pub fn stream(&self) -> StreamId {
                StreamId(format!(concat!($prefix, "-{}"), self.0))
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

/// An id that is not a UUID in its canonical spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an id: expected a lower-case hyphenated UUID such as 0190a5e2-7c1d-7b3e-9f10-2a4b6c8d0e1f"
)]
pub struct InvalidId;

/// A UUID in the one spelling `Display` writes: 36 characters, lower-case hex, hyphenated
/// 8-4-4-4-12. Upper case, braces, `urn:uuid:` and the unhyphenated form are refused, so one
/// entity has one URL (and one cache key, one log spelling).
pub fn parse_canonical_uuid(raw: &str) -> Option<Uuid> {
    let uuid = Uuid::try_parse(raw).ok()?;
    (uuid.hyphenated().to_string() == raw).then_some(uuid)
}

entity_id!(
    /// A registered user.
    UserId,
    "user"
);
entity_id!(
    /// A post, the aggregate that owns its comments.
    PostId,
    "post"
);
entity_id!(
    /// A comment; it lives inside its post's stream.
    CommentId,
    "comment"
);
entity_id!(
    /// A task published to a model; its stream holds its queueing, claims, result and webhook.
    TaskId,
    "task"
);
entity_id!(
    /// A worker credential: a process that claims and executes tasks of some models.
    WorkerId,
    "worker"
);
entity_id!(
    /// A login session; the token's secret half never leaves the client and the session row.
    SessionId,
    "session"
);
entity_id!(
    /// A sanction: one author barred from writing for a while, for one item. Sanctions live in
    /// one ledger stream (see `sanction`), so this id's own stream is never written.
    SanctionId,
    "sanction"
);

/// The name of one event stream: `<kind>-<key>`, ASCII, at most 200 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid stream id: {0}")]
pub struct InvalidStreamId(String);

impl StreamId {
    pub fn parse(s: impl Into<String>) -> Result<Self, InvalidStreamId> {
        let s = s.into();
        if Self::is_valid(&s) {
            Ok(Self(s))
        } else {
            Err(InvalidStreamId(s))
        }
    }

    /// Whether [`Self::parse`] accepts `s` (without taking or copying it).
    pub fn is_valid(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 200
            && s.bytes().all(|b| b.is_ascii_graphic())
            && s.split_once('-')
                .is_some_and(|(kind, key)| !kind.is_empty() && !key.is_empty())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `-`: `post`, `user`, ...
    pub fn kind(&self) -> &str {
        self.0.split_once('-').map_or("", |(k, _)| k)
    }

    /// The part after the first `-`: the entity id or digest the stream is named by.
    pub fn key(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, k)| k)
    }
}

impl TryFrom<String> for StreamId {
    type Error = InvalidStreamId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<StreamId> for String {
    fn from(s: StreamId) -> Self {
        s.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_kind_dash_key() {
        assert!(StreamId::parse("post-1").is_ok());
        assert_eq!(StreamId::parse("post-1").unwrap().kind(), "post");
        assert_eq!(StreamId::parse("email-ab-c").unwrap().key(), "ab-c");
        for bad in ["", "post", "-1", "post-", "po st-1", "post-ü"] {
            assert!(StreamId::parse(bad).is_err(), "{bad:?} accepted");
        }
        let id = PostId::new(Uuid::nil());
        assert_eq!(id.stream().as_str(), format!("post-{}", Uuid::nil()));
    }

    #[test]
    fn ids_have_one_spelling() {
        let canonical = "0190a5e2-7c1d-7b3e-9f10-2a4b6c8d0e1f";
        let id = PostId::parse(canonical).unwrap();
        assert_eq!(id.to_string(), canonical);
        for other in [
            "0190A5E2-7C1D-7B3E-9F10-2A4B6C8D0E1F",
            "0190a5e2-7c1d-7b3e-9f10-2a4b6c8d0e1F",
            "{0190a5e2-7c1d-7b3e-9f10-2a4b6c8d0e1f}",
            "urn:uuid:0190a5e2-7c1d-7b3e-9f10-2a4b6c8d0e1f",
            "0190a5e27c1d7b3e9f102a4b6c8d0e1f",
            " 0190a5e2-7c1d-7b3e-9f10-2a4b6c8d0e1f",
            "",
            "not-a-uuid",
        ] {
            assert_eq!(TaskId::parse(other), Err(InvalidId), "{other:?} accepted");
        }
    }
}
