//! The e-mail verification aggregate: one stream per normalised address.
//!
//! A code is valid for a fixed time and for at most [`MAX_FAILED_ATTEMPTS`] wrong guesses; a new
//! code replaces the old one. The code itself is never stored, only a keyed hash the caller
//! computes, so the log cannot be used to register in someone else's name.

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
    /// Uses the code up. Refused with a typed error if it is wrong, expired or exhausted; the
    /// caller records a wrong guess with [`VerificationCommand::RecordFailure`].
    Consume {
        code_hash: String,
        at: DateTime<Utc>,
    },
    RecordFailure,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    const TYPES: &'static [&'static str] = &[
        "VerificationCodeIssued",
        "VerificationFailed",
        "VerificationCodeConsumed",
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerificationError {
    #[error("no verification code was requested for this e-mail address")]
    NoCode,
    #[error("the verification code has expired; request a new one")]
    Expired,
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
            VerificationCommand::Consume { code_hash, at } => {
                let code = self.current.as_ref().ok_or(VerificationError::NoCode)?;
                if code.consumed {
                    Err(VerificationError::AlreadyUsed)
                } else if code.failures >= MAX_FAILED_ATTEMPTS {
                    Err(VerificationError::TooManyAttempts)
                } else if *at >= code.expires_at {
                    Err(VerificationError::Expired)
                } else if code.hash != *code_hash {
                    Err(VerificationError::WrongCode)
                } else {
                    Ok(vec![VerificationEvent::VerificationCodeConsumed])
                }
            }
            VerificationCommand::RecordFailure => match &self.current {
                Some(_) => Ok(vec![VerificationEvent::VerificationFailed]),
                None => Err(VerificationError::NoCode),
            },
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

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn run(v: &mut Verification, c: VerificationCommand) -> Result<(), VerificationError> {
        for e in v.decide(&c, &())? {
            v.evolve(&e);
        }
        Ok(())
    }

    fn consume(hash: &str, at: i64) -> VerificationCommand {
        VerificationCommand::Consume {
            code_hash: hash.into(),
            at: t(at),
        }
    }

    #[test]
    fn a_code_is_good_for_five_minutes_and_once() {
        let mut v = Verification::default();
        assert_eq!(run(&mut v, consume("h", 0)), Err(VerificationError::NoCode));
        run(
            &mut v,
            VerificationCommand::Issue {
                code_hash: "h".into(),
                at: t(0),
            },
        )
        .unwrap();
        assert_eq!(
            run(&mut v.clone(), consume("h", 300)),
            Err(VerificationError::Expired)
        );
        run(&mut v, consume("h", 299)).unwrap();
        assert_eq!(
            run(&mut v, consume("h", 1)),
            Err(VerificationError::AlreadyUsed)
        );
    }

    #[test]
    fn five_wrong_guesses_burn_the_code_until_a_new_one_is_issued() {
        let mut v = Verification::default();
        run(
            &mut v,
            VerificationCommand::Issue {
                code_hash: "h".into(),
                at: t(0),
            },
        )
        .unwrap();
        for _ in 0..MAX_FAILED_ATTEMPTS {
            assert_eq!(
                run(&mut v, consume("x", 1)),
                Err(VerificationError::WrongCode)
            );
            run(&mut v, VerificationCommand::RecordFailure).unwrap();
        }
        assert_eq!(
            run(&mut v, consume("h", 1)),
            Err(VerificationError::TooManyAttempts)
        );
        run(
            &mut v,
            VerificationCommand::Issue {
                code_hash: "h2".into(),
                at: t(10),
            },
        )
        .unwrap();
        run(&mut v, consume("h2", 11)).unwrap();
    }
}
