//! Every event type of the system, for readers of the whole log (projectors, exports).

use crate::aggregate::{DecodeError, DomainEvent};
use crate::envelope::Envelope;
use crate::post::PostEvent;
use crate::reservation::ReservationEvent;
use crate::session::SessionEvent;
use crate::user::UserEvent;
use crate::verification::VerificationEvent;

/// A decoded event of any aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    User(UserEvent),
    Session(SessionEvent),
    Reservation(ReservationEvent),
    Verification(VerificationEvent),
    Post(PostEvent),
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
        } else {
            Err(DecodeError {
                event_type: t.to_owned(),
                schema: s,
                reason: "unknown event type".into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_unique_across_aggregates() {
        let mut all: Vec<&str> = [
            UserEvent::TYPES,
            SessionEvent::TYPES,
            ReservationEvent::TYPES,
            VerificationEvent::TYPES,
            PostEvent::TYPES,
        ]
        .concat();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
