//! treehole's write model as pure code.
//!
//! Every aggregate is two functions (see [`Aggregate`]): `decide` turns a command into events or a
//! typed refusal, `evolve` folds one event into the state. Nothing here performs I/O, reads a
//! clock or draws random numbers: time, ids and configuration arrive as arguments, which keeps
//! replays deterministic and property tests cheap.

pub mod aggregate;
pub mod envelope;
pub mod event;
pub mod export;
pub mod ids;
pub mod keyed_hash;
pub mod model;
pub mod moderation;
pub mod personal;
pub mod post;
pub mod pseudonym;
pub mod reservation;
pub mod sanction;
pub mod session;
pub mod stored;
pub mod task;
#[cfg(test)]
mod testing;
pub mod user;
pub mod values;
pub mod verification;
pub mod worker;

pub use aggregate::{Aggregate, DecodeError, DomainEvent};
pub use envelope::{Envelope, Metadata, NewEvent, Position, RawEnvelope, Typed};
pub use event::Event;
pub use ids::{CommentId, PostId, SanctionId, SessionId, StreamId, TaskId, UserId, WorkerId};
pub use personal::{AuthorToken, ItemHandle, KeyRef, Personal};
pub use stored::{InvalidStoredEvent, StoredEvent, StoredEvents};
