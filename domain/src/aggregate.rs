//! The shape every aggregate shares.

use std::borrow::Cow;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// An aggregate decides and evolves; it never does anything else.
///
/// ```
/// use domain::{Aggregate, post::{Post, PostCommand, PostServices}, ids::{PostId, UserId}};
/// use domain::values::{PostBody, Actor};
/// let author = Actor { user_id: UserId::new(uuid::Uuid::now_v7()), username: "ann".into(), is_admin: false };
/// let services = PostServices::default();
/// let events = Post::default()
///     .decide(&PostCommand::Publish {
///         post_id: PostId::new(uuid::Uuid::now_v7()),
///         author,
///         token: domain::AuthorToken::new("t"),
///         title: None,
///         body: PostBody::parse("hello").unwrap(),
///         tags: vec![],
///         anonymous: true,
///         poll: None,
///     }, &services)
///     .unwrap();
/// let mut post = Post::default();
/// for e in &events { post.evolve(e); }
/// assert!(post.exists());
/// ```
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// What callers ask of the aggregate (imperative: `AddComment`).
    type Command;
    /// What happened (past tense: `CommentAdded`).
    type Event: DomainEvent;
    /// Why a command was refused: a user error, never a technical one.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Configuration the decisions depend on (e.g. the pseudonym scheme).
    type Services: Send + Sync;

    /// Decides what a command changes, given the current state.
    fn decide(
        &self,
        command: &Self::Command,
        services: &Self::Services,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state. Must accept every event `decide` ever produced.
    fn evolve(&mut self, event: &Self::Event);
}

/// A stored event payload could not be turned back into a typed event.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode event {event_type} (schema {schema}): {reason}")]
pub struct DecodeError {
    pub event_type: String,
    pub schema: u32,
    pub reason: String,
}

/// An event enum of one aggregate, with its stable wire names and schema numbers.
///
/// Implementations are serde enums tagged as `{"type": ..., "data": ...}`; `encode` and `decode`
/// split and join that pair so the envelope can store the type and the payload apart. They
/// derive `strum::VariantNames` too, which lists the variants' names: the type names serde
/// writes, since no event variant is renamed (a test in `event.rs` holds the two lists equal).
pub trait DomainEvent:
    Serialize + DeserializeOwned + strum::VariantNames + Clone + Send + Sync + 'static
{
    /// Every type name this enum produces, derived from its variants; names are a public
    /// contract and never change.
    const TYPES: &'static [&'static str] = <Self as strum::VariantNames>::VARIANTS;

    /// The current schema number of this event's payload.
    fn schema(&self) -> u32 {
        1
    }

    /// This event as one of the whole log's ([`crate::Event`]).
    fn into_event(self) -> crate::Event;

    /// Turns a payload of an older schema into the current shape. The default knows only
    /// schema 1; an event whose payload changes adds a match arm here.
    /// The payload is borrowed when it is already current, so decoding copies nothing.
    fn upcast<'a>(
        event_type: &str,
        schema: u32,
        data: &'a Value,
    ) -> Result<Cow<'a, Value>, DecodeError> {
        if schema == 1 {
            Ok(Cow::Borrowed(data))
        } else {
            Err(DecodeError {
                event_type: event_type.to_owned(),
                schema,
                reason: "unknown schema".into(),
            })
        }
    }

    /// The type name and payload of this event.
    fn encode(&self) -> (&'static str, Value) {
        let value = serde_json::to_value(self).expect("events serialise to JSON");
        let Value::Object(mut map) = value else {
            unreachable!("tagged enums serialise to objects")
        };
        let name = map
            .get("type")
            .and_then(Value::as_str)
            .and_then(|t| Self::TYPES.iter().find(|n| **n == t))
            .copied()
            .expect("every variant is listed in TYPES");
        let data = map.remove("data").unwrap_or(Value::Null);
        (name, data)
    }

    /// Rebuilds an event from its stored type, schema and payload, upcasting old schemas.
    fn decode(event_type: &str, schema: u32, data: &Value) -> Result<Self, DecodeError> {
        let error = |e: serde_json::Error| DecodeError {
            event_type: event_type.to_owned(),
            schema,
            reason: e.to_string(),
        };
        let data = Self::upcast(event_type, schema, data)?;
        Self::deserialize(Tagged::new(event_type, &data)).map_err(error)
    }
}

/// An adjacently tagged event (`{"type": ..., "data": ...}`) presented to serde without
/// building it: the type name first, so the enum's visitor needs no buffering, then the payload
/// read in place.
struct Tagged<'a> {
    event_type: &'a str,
    data: &'a Value,
    /// 0: the type's key is next; 1: its value; 2: the payload's key; 3: its value; 4: done.
    next: u8,
}

impl<'a> Tagged<'a> {
    fn new(event_type: &'a str, data: &'a Value) -> Self {
        Self {
            event_type,
            data,
            next: 0,
        }
    }
}

impl<'de> serde::Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> serde::de::MapAccess<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        use serde::de::value::BorrowedStrDeserializer;
        let key = match self.next {
            0 => "type",
            2 => "data",
            _ => return Ok(None),
        };
        self.next += 1;
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::value::BorrowedStrDeserializer;
        let at = self.next;
        self.next += 1;
        match at {
            1 => seed.deserialize(BorrowedStrDeserializer::new(self.event_type)),
            3 => seed.deserialize(self.data),
            _ => Err(serde::de::Error::custom("a tagged event has two fields")),
        }
    }
}
