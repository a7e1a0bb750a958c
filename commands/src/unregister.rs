//! Unregistering: `DELETE /me`. The user proves the password and a fresh e-mail code; one
//! atomic write consumes the code, records `UserUnregistered` and releases the e-mail address
//! and the username; then the user's data key is destroyed, so their e-mail address, username,
//! password hash and the authorship of their anonymous content can never be read again.
//!
//! The e-mail address and the username may be registered again afterwards, by anyone: the new
//! account shares nothing with the old one.

use domain::reservation::{self, Reservation, ReservationCommand};
use domain::user::{User, UserCommand, UserError};
use domain::values::{Email, Password, Username, VerificationCode};
use domain::verification::{Verification, VerificationCommand, VerificationError};
use domain::{Aggregate, Position, StreamId, UserId};
use tracing::instrument;

use crate::event_store::{ExpectedVersion, StoreError, StreamWrite};
use crate::handler::{CommandContext, CommandHandler, LoadError, to_new_event};
use crate::keys::{KeyError, Keys};
use crate::password::Passwords;
use crate::registration::{RegistrationError, check_code, code_hash, verification_stream};

#[derive(Debug, thiserror::Error)]
pub enum UnregisterError {
    #[error("the password is wrong")]
    WrongPassword,
    #[error(transparent)]
    Verification(VerificationError),
    #[error("the account is already unregistered")]
    AlreadyUnregistered,
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("too much contention; try again")]
    Contention,
}

/// What the caller proves.
pub struct Unregistration {
    pub password: Password,
    pub code: VerificationCode,
}

/// Unregisters `user_id` and destroys their data key; the position of the commit.
#[instrument(skip_all, fields(position))]
pub async fn unregister(
    handler: &CommandHandler,
    passwords: &Passwords,
    secret: &[u8],
    keys: &Keys,
    user_id: UserId,
    request: Unregistration,
    ctx: &CommandContext,
) -> Result<Position, UnregisterError> {
    let user = handler.load::<User>(&user_id.stream()).await?;
    if user.state.unregistered {
        return Err(UnregisterError::AlreadyUnregistered);
    }
    if user.state.id.is_none() {
        return Err(UnregisterError::NotFound);
    }
    let hash = Some(user.state.password_hash.clone()).filter(|h| !h.is_empty());
    if !passwords
        .verify(request.password.expose().to_owned(), hash)
        .await
    {
        return Err(UnregisterError::WrongPassword);
    }
    let email = Email::parse(&user.state.email).map_err(|_| UnregisterError::NotFound)?;
    let verification = verification_stream(secret, &email);
    let code_hash = code_hash(secret, &email, &request.code);
    check_code(handler, &verification, &code_hash, ctx)
        .await
        .map_err(|e| match e {
            RegistrationError::Verification(v) => UnregisterError::Verification(v),
            RegistrationError::Store(s) => UnregisterError::Store(s),
            RegistrationError::Load(l) => UnregisterError::Load(l),
            _ => UnregisterError::Contention,
        })?;
    let mut names: Vec<StreamId> = vec![
        reservation::email_stream(secret, &email),
        reservation::legacy_stream(email.as_str()),
    ];
    if let Ok(name) = Username::parse(&user.state.username) {
        names.push(reservation::username_stream(secret, &name));
        names.push(reservation::legacy_stream(&name.normalized()));
    } else {
        // A name an older, looser rule let register: its streams by the name as typed.
        names.push(reservation::login_stream(secret, &user.state.username));
        names.push(reservation::legacy_stream(&user.state.username));
    }
    let consume = VerificationCommand::Consume {
        code_hash,
        at: ctx.at,
    };

    for attempt in 0..handler.retry_policy().max_attempts {
        let user = handler.load::<User>(&user_id.stream()).await?;
        let gone = user
            .state
            .decide(&UserCommand::Unregister, &())
            .map_err(|e| match e {
                UserError::Unregistered => UnregisterError::AlreadyUnregistered,
                _ => UnregisterError::NotFound,
            })?;
        let code = handler.load::<Verification>(&verification).await?;
        let consumed = code
            .state
            .decide(&consume, &())
            .map_err(UnregisterError::Verification)?;
        if consumed.iter().any(|e| {
            matches!(
                e,
                domain::verification::VerificationEvent::VerificationFailed
            )
        }) {
            return Err(UnregisterError::Verification(VerificationError::WrongCode));
        }
        let mut writes = vec![
            StreamWrite {
                stream: verification.clone(),
                expected: code.expected(),
                events: consumed.iter().map(|e| to_new_event(e, ctx)).collect(),
            },
            StreamWrite {
                stream: user_id.stream(),
                expected: user.expected(),
                events: gone.iter().map(|e| to_new_event(e, ctx)).collect(),
            },
        ];
        for stream in &names {
            let held = handler.load::<Reservation>(stream).await?;
            if held.state.taken && held.state.owner == Some(user_id) {
                let released = held
                    .state
                    .decide(&ReservationCommand::Release, &())
                    .expect("a taken name can be released");
                writes.push(StreamWrite {
                    stream: stream.clone(),
                    expected: held.expected(),
                    events: released.iter().map(|e| to_new_event(e, ctx)).collect(),
                });
            } else if held.version > 0 {
                writes.push(StreamWrite {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Exact(held.version),
                    events: vec![],
                });
            }
        }
        match handler.store().append_many(writes, None).await {
            Ok(committed) => {
                let position = committed.last_position();
                tracing::Span::current().record("position", position);
                keys.shred(user_id).await?;
                return Ok(position);
            }
            Err(StoreError::Conflict { .. }) => handler.retry_policy().backoff(attempt).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(UnregisterError::Contention)
}
