//! The event envelope of ARCHITECTURE.md §2: how every event is stored and exported.
//!
//! Its JSON form is a public contract for analysts; fields are only ever added.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::StreamId;

/// A global position in the log: strictly increasing in commit order, starting at 1.
pub type Position = u64;

/// A stored event as readers see it. `D` and `M` are the data and the metadata: decoded by
/// default, or kept as the stored JSON text ([`RawEnvelope`]) by readers that pass them on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<D = Value, M = Metadata> {
    pub position: Position,
    pub event_id: Uuid,
    pub stream: StreamId,
    pub version: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema: u32,
    #[serde(with = "millis")]
    pub occurred_at: DateTime<Utc>,
    pub data: D,
    pub metadata: M,
}

/// An envelope whose data and metadata are the stored JSON text, unparsed: what the Kafka
/// relay publishes. Its JSON form is the same as the decoded envelope's.
pub type RawEnvelope = Envelope<Box<RawValue>, Box<RawValue>>;

impl Envelope {
    /// The JSON fields of the contract, in their documented order.
    pub const FIELDS: [&'static str; 9] = [
        "position",
        "event_id",
        "stream",
        "version",
        "type",
        "schema",
        "occurred_at",
        "data",
        "metadata",
    ];
}

/// Who caused an event and in answer to what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The acting user id, if any. Private: exports pseudonymise it (§6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// An event about to be appended: everything but the position and version, which the store
/// assigns.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema: u32,
    pub occurred_at: DateTime<Utc>,
    pub data: Value,
    pub metadata: Metadata,
    /// The typed event `data` encodes, when this was made from one.
    pub typed: Typed,
}

impl NewEvent {
    /// Wraps a typed domain event (and keeps it, see [`Typed`]).
    pub fn from_domain<E: crate::DomainEvent>(
        event: &E,
        event_id: Uuid,
        occurred_at: DateTime<Utc>,
        metadata: Metadata,
    ) -> Self {
        let (event_type, data) = event.encode();
        Self {
            event_id,
            event_type: event_type.to_owned(),
            schema: event.schema(),
            occurred_at,
            data,
            metadata,
            typed: Typed(Some(std::sync::Arc::new(event.clone().into_event()))),
        }
    }
}

/// The typed event a [`NewEvent`] was made from, if it was: a process that appends an event
/// hands it to its own projectors as it is, instead of decoding `data` again (decoding gives
/// the same event: tested for every event type). Not part of what an event is: the stores
/// ignore it, and two `NewEvent`s compare equal whatever they carry here.
#[derive(Clone, Default)]
pub struct Typed(pub Option<std::sync::Arc<crate::Event>>);

impl Typed {
    /// The event, taken out of its `Arc` when nothing else holds it.
    pub fn take(self) -> Option<crate::Event> {
        self.0
            .map(|e| std::sync::Arc::try_unwrap(e).unwrap_or_else(|shared| (*shared).clone()))
    }
}

impl PartialEq for Typed {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Typed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Typed(..)"
        } else {
            "Typed(None)"
        })
    }
}

/// RFC 3339 with exactly millisecond precision and a `Z`, as the contract shows.
mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_json_has_the_contract_fields() {
        let env = Envelope {
            position: 1042,
            event_id: Uuid::now_v7(),
            stream: StreamId::parse("post-0190").unwrap(),
            version: 7,
            event_type: "CommentAdded".into(),
            schema: 1,
            occurred_at: DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc),
            data: serde_json::json!({"a": 1}),
            metadata: Metadata {
                correlation_id: Some("c".into()),
                ..Metadata::default()
            },
        };
        let json = serde_json::to_value(&env).unwrap();
        for key in Envelope::FIELDS {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["occurred_at"], "2026-11-23T10:00:00.123Z");
        assert_eq!(json["stream"], "post-0190");
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back.position, 1042);
    }
}
