//! The e-mail verification aggregate: one stream per normalised address.
//!
//! A code is valid for a fixed time and for at most [`MAX_FAILED_ATTEMPTS`] wrong guesses; a new
//! code replaces the old one. The code itself is never stored, only a keyed hash the caller
//! computes, so the log cannot be used to register in someone else's name.
//!
//! Every guess is judged by this aggregate and a wrong one is a fact: `decide` answers a wrong
//! guess with a [`VerificationEvent::VerificationFailed`] event, which the caller appends under
//! the stream's expected version like any other. Two concurrent guesses therefore cannot both
//! be judged against the same count of failures: one of the appends conflicts, and its guess
//! is judged again against the newer state. So at most [`MAX_FAILED_ATTEMPTS`] guesses per
//! code are ever answered "wrong", however many arrive at once, and none after the code is
//! used.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};

pub const MAX_FAILED_ATTEMPTS: u32 = 5;
pub const CODE_TTL_SECONDS: i64 = 300;

#[derive(Debug, Clone)]
pub enum VerificationCommand {
    Issue {
        code_hash: String,
        at: DateTime<Utc>,
    },
    /// Judges a guess without using the code up (to learn whether registering is worth the
    /// password hash): a wrong guess is recorded, a right one changes nothing.
    Check {
        code_hash: String,
        at: DateTime<Utc>,
    },
    /// Uses the code up (appended in one batch with the registration it allows); a wrong guess
    /// is recorded instead.
    Consume {
        code_hash: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "type", content = "data")]
pub enum VerificationEvent {
    VerificationCodeIssued {
        code_hash: String,
        expires_at: DateTime<Utc>,
    },
    VerificationFailed,
    VerificationCodeConsumed,
}

impl DomainEvent for VerificationEvent {
    fn into_event(self) -> crate::Event {
        crate::Event::Verification(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerificationError {
    #[error("no verification code was requested for this e-mail address")]
    NoCode,
    #[error("the verification code has expired; request a new one")]
    Expired,
    /// The answer to a wrong guess once its `VerificationFailed` event is recorded (`decide`
    /// answers a wrong guess with that event, not with this error).
    #[error("the verification code is wrong")]
    WrongCode,
    #[error("too many wrong codes; request a new one")]
    TooManyAttempts,
    #[error("the verification code has already been used")]
    AlreadyUsed,
}

#[derive(Debug, Clone)]
struct Code {
    hash: String,
    expires_at: DateTime<Utc>,
    failures: u32,
    consumed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Verification {
    current: Option<Code>,
}

/// A guess that may be judged at all.
enum Guess {
    Right,
    Wrong,
}

impl Verification {
    /// Refuses a guess that may not be judged (no code, used, burnt or expired), else says
    /// whether it is right.
    fn judge(&self, code_hash: &str, at: DateTime<Utc>) -> Result<Guess, VerificationError> {
        let code = self.current.as_ref().ok_or(VerificationError::NoCode)?;
        if code.consumed {
            Err(VerificationError::AlreadyUsed)
        } else if code.failures >= MAX_FAILED_ATTEMPTS {
            Err(VerificationError::TooManyAttempts)
        } else if at >= code.expires_at {
            Err(VerificationError::Expired)
        } else if code.hash != code_hash {
            Ok(Guess::Wrong)
        } else {
            Ok(Guess::Right)
        }
    }
}

impl Aggregate for Verification {
    type Command = VerificationCommand;
    type Event = VerificationEvent;
    type Error = VerificationError;
    type Services = ();

    fn decide(
        &self,
        command: &VerificationCommand,
        _: &(),
    ) -> Result<Vec<VerificationEvent>, VerificationError> {
        match command {
            VerificationCommand::Issue { code_hash, at } => {
                Ok(vec![VerificationEvent::VerificationCodeIssued {
                    code_hash: code_hash.clone(),
                    expires_at: *at + Duration::seconds(CODE_TTL_SECONDS),
                }])
            }
            VerificationCommand::Check { code_hash, at } => {
                Ok(match self.judge(code_hash, *at)? {
                    Guess::Right => vec![],
                    Guess::Wrong => vec![VerificationEvent::VerificationFailed],
                })
            }
            VerificationCommand::Consume { code_hash, at } => {
                Ok(match self.judge(code_hash, *at)? {
                    Guess::Right => vec![VerificationEvent::VerificationCodeConsumed],
                    Guess::Wrong => vec![VerificationEvent::VerificationFailed],
                })
            }
        }
    }

    fn evolve(&mut self, event: &VerificationEvent) {
        match event {
            VerificationEvent::VerificationCodeIssued {
                code_hash,
                expires_at,
            } => {
                self.current = Some(Code {
                    hash: code_hash.clone(),
                    expires_at: *expires_at,
                    failures: 0,
                    consumed: false,
                });
            }
            VerificationEvent::VerificationFailed => {
                if let Some(c) = &mut self.current {
                    c.failures += 1;
                }
            }
            VerificationEvent::VerificationCodeConsumed => {
                if let Some(c) = &mut self.current {
                    c.consumed = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn check(hash: &str, at: i64) -> VerificationCommand {
        VerificationCommand::Check {
            code_hash: hash.into(),
            at: t(at),
        }
    }

    fn issue(hash: &str, at: i64) -> VerificationCommand {
        VerificationCommand::Issue {
            code_hash: hash.into(),
            at: t(at),
        }
    }

    fn consume(hash: &str, at: i64) -> VerificationCommand {
        VerificationCommand::Consume {
            code_hash: hash.into(),
            at: t(at),
        }
    }

    /// The code `hash`, issued at `at`.
    fn issued(hash: &str, at: i64) -> VerificationEvent {
        VerificationEvent::VerificationCodeIssued {
            code_hash: hash.into(),
            expires_at: t(at + CODE_TTL_SECONDS),
        }
    }

    const FAILED: VerificationEvent = VerificationEvent::VerificationFailed;
    const CONSUMED: VerificationEvent = VerificationEvent::VerificationCodeConsumed;

    #[test]
    fn a_code_is_good_for_five_minutes_and_once() {
        given::<Verification>([])
            .when(&consume("h", 0))
            .then_error(VerificationError::NoCode)
            .when(&check("h", 0))
            .then_error(VerificationError::NoCode)
            .when(&issue("h", 0))
            .then([issued("h", 0)]);
        let mut used = given::<Verification>([issued("h", 0)])
            .when(&consume("h", 300))
            .then_error(VerificationError::Expired)
            // A check uses nothing up.
            .when(&check("h", 299))
            .then([])
            .when(&consume("h", 299))
            .then([CONSUMED]);
        for judge in [check("h", 1), consume("h", 1), check("x", 1)] {
            used = used.when(&judge).then_error(VerificationError::AlreadyUsed);
        }
    }

    #[test]
    fn every_wrong_guess_is_a_recorded_failure_and_five_burn_the_code() {
        let mut g = given::<Verification>([issued("h", 0)]);
        for i in 0..MAX_FAILED_ATTEMPTS {
            let guess = if i % 2 == 0 {
                check("x", 1)
            } else {
                consume("x", 1)
            };
            g = g.when(&guess).then([FAILED]);
        }
        for judge in [check("h", 1), consume("h", 1), check("x", 1)] {
            g = g
                .when(&judge)
                .then_error(VerificationError::TooManyAttempts);
        }
        // A new code replaces the burnt one.
        g.when(&issue("h2", 10))
            .then([issued("h2", 10)])
            .when(&consume("h", 11))
            .then([FAILED])
            .when(&consume("h2", 11))
            .then([CONSUMED]);
    }

    #[test]
    fn an_expired_code_judges_no_guess() {
        given::<Verification>([issued("h", 0)])
            .when(&check("x", 300))
            .then_error(VerificationError::Expired)
            .when(&consume("x", 301))
            .then_error(VerificationError::Expired);
    }
}
