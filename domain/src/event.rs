//! Every event type of the system, for readers of the whole log (projectors, exports).

use serde_json::Value;

use crate::aggregate::{DecodeError, DomainEvent};
use crate::envelope::Envelope;
use crate::model::ModelEvent;
use crate::post::PostEvent;
use crate::reservation::ReservationEvent;
use crate::sanction::SanctionEvent;
use crate::session::SessionEvent;
use crate::task::TaskEvent;
use crate::user::UserEvent;
use crate::verification::VerificationEvent;
use crate::worker::WorkerEvent;

/// A decoded event of any aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    User(UserEvent),
    Session(SessionEvent),
    Reservation(ReservationEvent),
    Verification(VerificationEvent),
    Post(PostEvent),
    Model(ModelEvent),
    Task(TaskEvent),
    Worker(WorkerEvent),
    Sanction(SanctionEvent),
}

impl Event {
    /// Decodes an envelope's payload (upcasting old schemas) by its type name.
    pub fn decode(envelope: &Envelope) -> Result<Event, DecodeError> {
        let (t, s, d) = (
            envelope.event_type.as_str(),
            envelope.schema,
            &envelope.data,
        );
        if UserEvent::TYPES.contains(&t) {
            UserEvent::decode(t, s, d).map(Event::User)
        } else if SessionEvent::TYPES.contains(&t) {
            SessionEvent::decode(t, s, d).map(Event::Session)
        } else if ReservationEvent::TYPES.contains(&t) {
            ReservationEvent::decode(t, s, d).map(Event::Reservation)
        } else if VerificationEvent::TYPES.contains(&t) {
            VerificationEvent::decode(t, s, d).map(Event::Verification)
        } else if PostEvent::TYPES.contains(&t) {
            PostEvent::decode(t, s, d).map(Event::Post)
        } else if ModelEvent::TYPES.contains(&t) {
            ModelEvent::decode(t, s, d).map(Event::Model)
        } else if TaskEvent::TYPES.contains(&t) {
            TaskEvent::decode(t, s, d).map(Event::Task)
        } else if WorkerEvent::TYPES.contains(&t) {
            WorkerEvent::decode(t, s, d).map(Event::Worker)
        } else if SanctionEvent::TYPES.contains(&t) {
            SanctionEvent::decode(t, s, d).map(Event::Sanction)
        } else {
            Err(DecodeError {
                event_type: t.to_owned(),
                schema: s,
                reason: "unknown event type".into(),
            })
        }
    }

    /// The type name, current schema number and payload, as an envelope stores them.
    pub fn encode(&self) -> (&'static str, u32, Value) {
        fn parts<E: DomainEvent>(event: &E) -> (&'static str, u32, Value) {
            let (event_type, data) = event.encode();
            (event_type, event.schema(), data)
        }
        match self {
            Event::User(e) => parts(e),
            Event::Session(e) => parts(e),
            Event::Reservation(e) => parts(e),
            Event::Verification(e) => parts(e),
            Event::Post(e) => parts(e),
            Event::Model(e) => parts(e),
            Event::Task(e) => parts(e),
            Event::Worker(e) => parts(e),
            Event::Sanction(e) => parts(e),
        }
    }

    /// Every event type name of the system.
    pub fn types() -> impl Iterator<Item = &'static str> {
        [
            UserEvent::TYPES,
            SessionEvent::TYPES,
            ReservationEvent::TYPES,
            VerificationEvent::TYPES,
            PostEvent::TYPES,
            ModelEvent::TYPES,
            TaskEvent::TYPES,
            WorkerEvent::TYPES,
            SanctionEvent::TYPES,
        ]
        .into_iter()
        .flatten()
        .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_unique_across_aggregates() {
        let mut all: Vec<&str> = Event::types().collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    /// The variant names serde reads and writes as `type`, as its error for an unknown type
    /// lists them (`` expected `A` or `B` ``, `` expected one of `A`, `B`, `C` ``).
    fn serde_names<E: DomainEvent>() -> Vec<String> {
        let Err(refused) = E::decode("NoSuchEvent", 1, &Value::Null) else {
            panic!("an unknown type decoded");
        };
        let (_, listed) = refused
            .reason
            .split_once("expected ")
            .unwrap_or_else(|| panic!("{}", refused.reason));
        listed
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn derived_type_names_are_the_names_serde_writes() {
        fn check<E: DomainEvent>() {
            assert_eq!(
                serde_names::<E>(),
                E::TYPES,
                "{}",
                std::any::type_name::<E>()
            );
        }
        check::<UserEvent>();
        check::<SessionEvent>();
        check::<ReservationEvent>();
        check::<VerificationEvent>();
        check::<PostEvent>();
        check::<ModelEvent>();
        check::<TaskEvent>();
        check::<WorkerEvent>();
        check::<SanctionEvent>();
    }
}
