//! Given/when/then for aggregate tests: *given* the events a stream holds, *when* a command is
//! decided, *then* these events are recorded, or this error refuses it.
//!
//! ```ignore
//! given::<Worker>([registered()])
//!     .when(&WorkerCommand::Revoke { by: admin() })
//!     .then([revoked()])
//!     .when(&WorkerCommand::Revoke { by: admin() })
//!     .then([]);
//! ```
//!
//! A test starts from events, not from commands, so that it states the history it needs and
//! does not depend on other decisions being right.
//!
//! Where the exact events are beside the point (one field among many, a name the rule
//! chose), `then_matches` checks them with a predicate. Where a test reads a value out of them
//! (the sessions a login evicted), `then_take` hands them back with the state after them. A
//! test about a sequence of decisions (a property test) goes on in a loop:
//! `g = g.when(&command).then(expected)`.

use std::fmt::Debug;

use crate::Aggregate;

/// An aggregate folded from the given events, with the services its decisions read.
pub(crate) struct Given<A: Aggregate> {
    state: A,
    services: A::Services,
}

/// The aggregate after `events`, deciding with default services.
pub(crate) fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A>
where
    A::Services: Default,
{
    given_with(A::Services::default(), events)
}

/// The aggregate after `events`, deciding with `services`.
pub(crate) fn given_with<A: Aggregate>(
    services: A::Services,
    events: impl IntoIterator<Item = A::Event>,
) -> Given<A> {
    let mut state = A::default();
    for event in events {
        state.evolve(&event);
    }
    Given { state, services }
}

impl<A: Aggregate> Given<A> {
    /// Decides `command` on the state so far.
    pub(crate) fn when(self, command: &A::Command) -> When<A> {
        let result = self.state.decide(command, &self.services);
        When {
            given: self,
            result,
        }
    }

    /// The state so far.
    pub(crate) fn state(&self) -> &A {
        &self.state
    }
}

/// A decision, to be checked.
pub(crate) struct When<A: Aggregate> {
    given: Given<A>,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> When<A>
where
    A::Event: PartialEq + Debug,
    A::Error: PartialEq + Debug,
{
    /// Asserts that exactly `expected` were decided, and goes on from the state after them.
    #[track_caller]
    pub(crate) fn then(self, expected: impl IntoIterator<Item = A::Event>) -> Given<A> {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match &self.result {
            Ok(events) => assert_eq!(events, &expected, "decided other events"),
            Err(e) => panic!("refused with {e:?}; expected {expected:?}"),
        }
        self.accept()
    }

    /// Asserts that the command was decided (not refused) and that its events pass `check`, and
    /// goes on from the state after them.
    #[track_caller]
    pub(crate) fn then_matches(self, check: impl FnOnce(&[A::Event]) -> bool) -> Given<A> {
        match &self.result {
            Ok(events) => assert!(check(events), "decided unexpected events {events:?}"),
            Err(e) => panic!("refused with {e:?}"),
        }
        self.accept()
    }

    /// The decided events, for a test to read, and the state after them; panics on a refusal.
    #[track_caller]
    pub(crate) fn then_take(self) -> (Given<A>, Vec<A::Event>) {
        let events = match &self.result {
            Ok(events) => events.clone(),
            Err(e) => panic!("refused with {e:?}"),
        };
        (self.accept(), events)
    }

    /// Asserts that the command was refused with `expected`, and goes on from the unchanged
    /// state.
    #[track_caller]
    pub(crate) fn then_error(self, expected: A::Error) -> Given<A> {
        match &self.result {
            Ok(events) => panic!("decided {events:?}; expected the refusal {expected:?}"),
            Err(e) => assert_eq!(e, &expected, "refused for another reason"),
        }
        self.given
    }

    /// Goes on from the state after the decided events; panics on a refusal.
    #[track_caller]
    fn accept(self) -> Given<A> {
        let Given {
            mut state,
            services,
        } = self.given;
        match self.result {
            Ok(events) => {
                for event in &events {
                    state.evolve(event);
                }
            }
            Err(e) => panic!("refused with {e:?}"),
        }
        Given { state, services }
    }
}
