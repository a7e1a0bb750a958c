//! Login and logout. A session is its own stream; the token is `<session id>.<secret>` and only
//! its SHA-256 is ever stored.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use domain::reservation::{self, Reservation};
use domain::session::{Session, SessionCommand, SessionError};
use domain::user::User;
use domain::{Position, SessionId, UserId};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tracing::instrument;
use uuid::Uuid;

use crate::handler::{CommandContext, CommandError, CommandHandler, LoadError};
use crate::password::Passwords;

/// The stored form of a bearer token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong login or password")]
    InvalidCredentials,
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Session(#[from] CommandError<SessionError>),
}

#[derive(Debug)]
pub struct LoggedIn {
    pub token: String,
    pub session_id: SessionId,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    pub position: Position,
}

/// Checks a login (e-mail or username) and password, and opens a session valid for `ttl`.
#[instrument(skip_all, fields(position))]
pub async fn login(
    handler: &CommandHandler,
    passwords: &Passwords,
    secret: &[u8],
    login: &str,
    password: &str,
    ttl: Duration,
    ctx: &CommandContext,
) -> Result<LoggedIn, LoginError> {
    let user = find_user(handler, secret, login).await?;
    let known_hash = user.as_ref().map(|u| u.password_hash.clone());
    if !passwords.verify(password.to_owned(), known_hash).await {
        return Err(LoginError::InvalidCredentials);
    }
    let user_id = user
        .and_then(|u| u.id)
        .ok_or(LoginError::InvalidCredentials)?;

    let session_id = SessionId::new(Uuid::now_v7());
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let token = format!(
        "{}.{}",
        session_id.as_uuid().simple(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let expires_at = ctx.at + ttl;
    let start = SessionCommand::Start {
        session_id,
        user_id,
        token_hash: token_hash(&token),
        expires_at,
    };
    let outcome = handler
        .execute::<Session>(&session_id.stream(), &start, &(), ctx)
        .await?;
    tracing::Span::current().record("position", outcome.position);
    Ok(LoggedIn {
        token,
        session_id,
        user_id,
        expires_at,
        position: outcome.position,
    })
}

/// Ends a session of `user`.
pub async fn logout(
    handler: &CommandHandler,
    session_id: SessionId,
    user: UserId,
    ctx: &CommandContext,
) -> Result<Position, CommandError<SessionError>> {
    let outcome = handler
        .execute::<Session>(
            &session_id.stream(),
            &SessionCommand::End { by: user },
            &(),
            ctx,
        )
        .await?;
    Ok(outcome.position)
}

/// Resolves an e-mail address or username through its reservation stream to the user. The
/// login is not parsed: names registered under older, looser rules must still sign in, and so
/// must users of a store written before reservation streams were keyed (the unkeyed stream is
/// asked when the keyed one was never written).
async fn find_user(
    handler: &CommandHandler,
    secret: &[u8],
    login: &str,
) -> Result<Option<User>, LoadError> {
    let keyed = handler
        .load::<Reservation>(&reservation::login_stream(secret, login))
        .await?;
    let reservation = if keyed.version == 0 {
        handler
            .load::<Reservation>(&reservation::legacy_stream(login))
            .await?
            .state
    } else {
        keyed.state
    };
    let Some(owner) = reservation.owner.filter(|_| reservation.taken) else {
        return Ok(None);
    };
    let user = handler.load::<User>(&owner.stream()).await?.state;
    Ok((user.id.is_some() && !user.unregistered).then_some(user))
}
