//! Registration: e-mail verification codes and the atomic multi-stream registration write.
//!
//! Registering touches four streams in one atomic batch: the e-mail's verification stream
//! (the code is consumed), the e-mail and username reservation streams (expected: no stream)
//! and the new user's stream. So a name is never half-taken and a code never used twice.

use domain::keyed_hash::keyed_hash;
use domain::reservation::{self, Reservation, ReservationCommand, ReservationError};
use domain::user::{User, UserCommand, UserEvent};
use domain::values::{Email, Password, Username, VerificationCode};
use domain::verification::{
    Verification, VerificationCommand, VerificationError, VerificationEvent,
};
use domain::{Aggregate, Personal, Position, StreamId, UserId};
use rand::Rng;
use tracing::instrument;
use uuid::Uuid;

use crate::event_store::{StoreError, StreamWrite};
use crate::handler::{CommandContext, CommandError, CommandHandler, LoadError, to_new_event};
use crate::keys::{KeyError, Keys};
use crate::mail::{MailError, Mailer};
use crate::password::Passwords;

/// The stream of an e-mail address's verification codes.
pub fn verification_stream(secret: &[u8], email: &Email) -> StreamId {
    let s = reservation::email_stream(secret, email);
    StreamId::parse(format!("verification-{}", &s.as_str()["email-".len()..])).expect("valid")
}

/// The keyed hash under which a code is stored: HMAC-SHA256(secret, email ":" code).
pub fn code_hash(secret: &[u8], email: &Email, code: &VerificationCode) -> String {
    hex::encode(keyed_hash(
        secret,
        &[email.as_str().as_bytes(), b":", code.as_str().as_bytes()],
    ))
}

/// A fresh uniformly random six-digit code.
pub fn new_code() -> VerificationCode {
    let n: u32 = rand::thread_rng().gen_range(0..1_000_000);
    VerificationCode::parse(&format!("{n:06}")).expect("six digits")
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(transparent)]
    Verification(VerificationError),
    #[error("this e-mail address is already registered")]
    EmailTaken,
    #[error("this username is already taken")]
    UsernameTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("too much contention; try again")]
    Contention,
    #[error(transparent)]
    Keys(#[from] KeyError),
}

pub struct Registered {
    pub user_id: UserId,
    pub username: String,
    pub position: Position,
    pub replayed: bool,
}

/// Why [`mail_code`] did not deliver a working code, and what it left behind.
#[derive(Debug, thiserror::Error)]
pub enum MailCodeError {
    /// The mailer refused or failed. Nothing was recorded: an earlier code still stands.
    #[error(transparent)]
    NotSent(#[from] MailError),
    /// The e-mail went out but its code could not be recorded, so that code does not work and
    /// an earlier code still stands.
    #[error("the code was mailed but not recorded: {0}")]
    NotRecorded(CommandError<VerificationError>),
}

/// Mails a new code to `email`, then records it: `POST /auth/codes`.
///
/// Mail first, record second, so that a send that fails leaves nothing in the log: no event for
/// an e-mail nobody received, and an earlier code that did arrive is not replaced by one that did
/// not. The other order would need a compensating event and would still invalidate the earlier
/// code. If recording fails after the send, the mailed code never works (it unlocks nothing) and
/// the caller says so. The five minutes run from `ctx.at`, the request's time, as before; the
/// per-IP and per-address rate limits are taken by the caller before this runs, so a failing
/// send still counts against them.
#[instrument(skip_all, fields(position))]
pub async fn mail_code(
    handler: &CommandHandler,
    mailer: &dyn Mailer,
    secret: &[u8],
    email: &Email,
    ctx: &CommandContext,
) -> Result<Position, MailCodeError> {
    let code = new_code();
    mailer.send_code(email, &code).await?;
    let position = record_code(handler, secret, email, &code, ctx)
        .await
        .map_err(MailCodeError::NotRecorded)?;
    tracing::Span::current().record("position", position);
    Ok(position)
}

/// Issues a new code for `email` and returns it unsent, for callers that hand the code over by
/// other means than mail (tests that need a backdated code).
#[instrument(skip_all)]
pub async fn issue_code(
    handler: &CommandHandler,
    secret: &[u8],
    email: &Email,
    ctx: &CommandContext,
) -> Result<(VerificationCode, Position), CommandError<VerificationError>> {
    let code = new_code();
    let position = record_code(handler, secret, email, &code, ctx).await?;
    Ok((code, position))
}

/// Makes `code` the e-mail's current code, replacing any earlier one.
async fn record_code(
    handler: &CommandHandler,
    secret: &[u8],
    email: &Email,
    code: &VerificationCode,
    ctx: &CommandContext,
) -> Result<Position, CommandError<VerificationError>> {
    let cmd = VerificationCommand::Issue {
        code_hash: code_hash(secret, email, code),
        at: ctx.at,
    };
    let outcome = handler
        .execute::<Verification>(&verification_stream(secret, email), &cmd, &(), ctx)
        .await?;
    Ok(outcome.position)
}

/// The parsed registration request.
pub struct Registration {
    pub email: Email,
    pub username: Username,
    pub password: Password,
    pub code: VerificationCode,
}

/// Registers a user if the code is right and the e-mail and username are free.
#[instrument(skip_all, fields(position))]
pub async fn register(
    handler: &CommandHandler,
    passwords: &Passwords,
    secret: &[u8],
    keys: &Keys,
    request: Registration,
    ctx: &CommandContext,
) -> Result<Registered, RegistrationError> {
    if let Some(done) = handler.replay_if_seen::<UserEvent>(ctx).await? {
        return registered_from(done);
    }
    match register_new(handler, passwords, secret, keys, request, ctx).await {
        // A concurrent copy of this request (same idempotency key) may have won: it used the
        // code and took the names, and its answer, not that refusal, is this request's answer.
        Err(
            refused @ (RegistrationError::Verification(_)
            | RegistrationError::EmailTaken
            | RegistrationError::UsernameTaken),
        ) => match handler.replay_if_seen::<UserEvent>(ctx).await? {
            Some(done) => registered_from(done),
            None => Err(refused),
        },
        other => other,
    }
}

async fn register_new(
    handler: &CommandHandler,
    passwords: &Passwords,
    secret: &[u8],
    keys: &Keys,
    request: Registration,
    ctx: &CommandContext,
) -> Result<Registered, RegistrationError> {
    let verification = verification_stream(secret, &request.email);
    let code_hash = code_hash(secret, &request.email, &request.code);
    check_code(handler, &verification, &code_hash, ctx).await?;
    let password_hash = passwords.hash(request.password.expose().to_owned()).await;
    let email_stream = reservation::email_stream(secret, &request.email);
    let username_stream = reservation::username_stream(secret, &request.username);
    // Names a store reserved before reservation streams were keyed stay taken.
    let legacy_email = reservation::legacy_stream(request.email.as_str());
    let legacy_name = reservation::legacy_stream(&request.username.normalized());
    let user_id = UserId::new(Uuid::now_v7());
    keys.create(user_id).await?;
    let reserve_email = ReservationCommand::Reserve {
        owner: Personal::new(
            keys.reservation_handle(user_id, &email_stream).await?,
            user_id,
        ),
    };
    let reserve_name = ReservationCommand::Reserve {
        owner: Personal::new(
            keys.reservation_handle(user_id, &username_stream).await?,
            user_id,
        ),
    };
    let consume = VerificationCommand::Consume {
        code_hash,
        at: ctx.at,
    };

    for attempt in 0..handler.retry_policy().max_attempts {
        let code = handler.load::<Verification>(&verification).await?;
        let consumed = code
            .state
            .decide(&consume, &())
            .map_err(RegistrationError::Verification)?;
        let verification_write = StreamWrite {
            stream: verification.clone(),
            expected: code.expected(),
            events: consumed.iter().map(|e| to_new_event(e, ctx)).collect(),
        };
        if consumed.contains(&VerificationEvent::VerificationFailed) {
            // A new code was issued since the check: the guess was judged against it, and is
            // recorded like any wrong guess before it is answered.
            match handler
                .store()
                .append_many(vec![verification_write], None)
                .await
            {
                Ok(_) => {
                    return Err(RegistrationError::Verification(
                        VerificationError::WrongCode,
                    ));
                }
                Err(StoreError::Conflict { .. }) => {
                    handler.retry_policy().backoff(attempt).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let old_email = handler.load::<Reservation>(&legacy_email).await?;
        if old_email.state.taken {
            return Err(RegistrationError::EmailTaken);
        }
        let old_name = handler.load::<Reservation>(&legacy_name).await?;
        if old_name.state.taken {
            return Err(RegistrationError::UsernameTaken);
        }
        let email = handler.load::<Reservation>(&email_stream).await?;
        let email_events = email
            .state
            .decide(&reserve_email, &())
            .map_err(|_: ReservationError| RegistrationError::EmailTaken)?;
        let name = handler.load::<Reservation>(&username_stream).await?;
        let name_events = name
            .state
            .decide(&reserve_name, &())
            .map_err(|_: ReservationError| RegistrationError::UsernameTaken)?;
        let register = UserCommand::Register {
            user_id,
            email: request.email.clone(),
            username: request.username.clone(),
            password_hash: password_hash.clone(),
        };
        let user_events = User::default()
            .decide(&register, &())
            .expect("a new user stream accepts Register");

        let writes = vec![
            verification_write,
            StreamWrite {
                stream: email_stream.clone(),
                expected: email.expected(),
                events: email_events.iter().map(|e| to_new_event(e, ctx)).collect(),
            },
            StreamWrite {
                stream: username_stream.clone(),
                expected: name.expected(),
                events: name_events.iter().map(|e| to_new_event(e, ctx)).collect(),
            },
            StreamWrite {
                stream: user_id.stream(),
                expected: crate::ExpectedVersion::NoStream,
                events: user_events.iter().map(|e| to_new_event(e, ctx)).collect(),
            },
            // Guards: an unkeyed reservation of either name, made meanwhile by an older
            // process, is a conflict.
            StreamWrite {
                stream: legacy_email.clone(),
                expected: old_email.expected(),
                events: vec![],
            },
            StreamWrite {
                stream: legacy_name.clone(),
                expected: old_name.expected(),
                events: vec![],
            },
        ];
        match handler
            .store()
            .append_many(writes, ctx.idempotency.clone())
            .await
        {
            Ok(committed) if committed.replayed => {
                return registered_from(handler.replay::<UserEvent>(&committed).await?);
            }
            Ok(committed) => {
                let position = committed.last_position();
                tracing::Span::current().record("position", position);
                return Ok(Registered {
                    user_id,
                    username: request.username.as_str().to_owned(),
                    position,
                    replayed: false,
                });
            }
            Err(StoreError::Conflict { .. }) => handler.retry_policy().backoff(attempt).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RegistrationError::Contention)
}

/// Judges the code before the password hash is paid for. The check runs through the handler
/// (queued per stream in this process, appended under the expected version), so concurrent
/// guesses are judged one after another against the recorded failures, and a wrong one is
/// answered only once its failure is recorded.
pub(crate) async fn check_code(
    handler: &CommandHandler,
    stream: &StreamId,
    code_hash: &str,
    ctx: &CommandContext,
) -> Result<(), RegistrationError> {
    let check = VerificationCommand::Check {
        code_hash: code_hash.to_owned(),
        at: ctx.at,
    };
    // The registration's idempotency key belongs to the registration's own batch.
    let judged = CommandContext {
        idempotency: None,
        ..ctx.clone()
    };
    let outcome = handler
        .execute::<Verification>(stream, &check, &(), &judged)
        .await
        .map_err(|e| match e {
            CommandError::Rejected(v) => RegistrationError::Verification(v),
            CommandError::Store(s) => RegistrationError::Store(s),
            CommandError::Decode(d) => RegistrationError::Load(LoadError::Decode(d)),
            CommandError::Contention(_) => RegistrationError::Contention,
        })?;
    if outcome.events.is_empty() {
        Ok(())
    } else {
        Err(RegistrationError::Verification(
            VerificationError::WrongCode,
        ))
    }
}

fn registered_from(outcome: crate::Outcome<UserEvent>) -> Result<Registered, RegistrationError> {
    outcome
        .events
        .iter()
        .find_map(|r| match &r.event {
            UserEvent::UserRegistered {
                user_id, username, ..
            } => Some(Registered {
                user_id: *user_id,
                username: username.get().cloned().unwrap_or_default(),
                position: outcome.position,
                replayed: true,
            }),
            UserEvent::AdminGranted { .. }
            | UserEvent::UserUnregistered { .. }
            | UserEvent::NotificationsRead { .. }
            | UserEvent::FavouriteSet { .. }
            | UserEvent::FavouriteRemoved { .. }
            | UserEvent::ModeratorGranted { .. }
            | UserEvent::ModeratorRevoked { .. }
            | UserEvent::SessionOpened { .. }
            | UserEvent::SessionClosed { .. } => None,
        })
        .ok_or_else(|| {
            RegistrationError::Store(StoreError::Backend(
                "replayed batch has no registration".into(),
            ))
        })
}
