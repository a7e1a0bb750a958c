//! The shape every aggregate shares.

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
///         at: chrono::Utc::now(),
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
/// split and join that pair so the envelope can store the type and the payload apart.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Every type name this enum produces; names are a public contract and never change.
    const TYPES: &'static [&'static str];

    /// The current schema number of this event's payload.
    fn schema(&self) -> u32 {
        1
    }

    /// Turns a payload of an older schema into the current shape. The default knows only
    /// schema 1; an event whose payload changes adds a match arm here.
    fn upcast(event_type: &str, schema: u32, data: Value) -> Result<Value, DecodeError> {
        if schema == 1 {
            Ok(data)
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
        let data = Self::upcast(event_type, schema, data.clone())?;
        let tagged = serde_json::json!({ "type": event_type, "data": data });
        serde_json::from_value(tagged).map_err(|e| DecodeError {
            event_type: event_type.to_owned(),
            schema,
            reason: e.to_string(),
        })
    }
}
