//! Login, logout and per-device sessions. A session is its own stream; the token is
//! `<session id>.<secret>` and only its SHA-256 is ever stored.
//!
//! # At most `max_per_user` live sessions, under concurrency
//!
//! A login decides on the User aggregate which of the user's live sessions it evicts
//! ([`domain::user::UserCommand::OpenSession`]), then appends in one atomic write:
//! - the user's events, expecting the version it decided on;
//! - the new session's stream, expecting no stream;
//! - `SessionEnded` on each evicted session's stream, expecting the version its end was decided
//!   on;
//! - for sessions adopted from before user streams recorded sessions, a write without events
//!   that expects each one's version.
//!
//! So any concurrent change to one of those streams (another login, a logout, an end from another
//! device, in this process or another) makes the whole write a version conflict, and the login
//! decides again on the newer state: no two logins ever decide on the same list, and the cap holds
//! without a lock across processes and without counting rows of a read model. Inside one process
//! the logins and ends of one user also queue on the user stream's lock, so they do not even
//! conflict. An end ([`end`]) writes the session's `SessionEnded` and the user's
//! `SessionClosed` together in the same way.

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::reservation::{self, Reservation};
use domain::session::{Session, SessionCommand, SessionError, SessionEvent};
use domain::user::{OpenSession, User, UserCommand};
use domain::values::DeviceLabel;
use domain::{Aggregate, DomainEvent, Position, SessionId, StreamId, UserId};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tracing::instrument;
use uuid::Uuid;

use crate::event_store::{ExpectedVersion, StoreError, StreamWrite};
use crate::handler::{
    CommandContext, CommandError, CommandHandler, LoadError, Loaded, to_new_event,
};
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
    Store(#[from] StoreError),
    #[error("too many concurrent logins of this account; try again")]
    Contention,
}

/// How long a session lasts, and how many of one user's may be live at once.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub ttl: Duration,
    pub max_per_user: usize,
}

/// What a login asks for.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    /// An e-mail address or username, not parsed (see [`find_user`]).
    pub login: &'a str,
    pub password: &'a str,
    pub device: Option<DeviceLabel>,
}

#[derive(Debug)]
pub struct LoggedIn {
    pub token: String,
    pub session_id: SessionId,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    pub position: Position,
}

/// Where a login finds a user's sessions that started before user streams recorded sessions
/// (the users read model does). Asked only until the user's stream records one; each session
/// found counts only if its own stream says it is live.
#[async_trait]
pub trait EarlierSessions: Send + Sync {
    /// Ids of `user`'s sessions that may still be live.
    async fn session_ids_of(&self, user: UserId) -> Result<Vec<SessionId>, StoreError>;
}

/// For a log whose sessions all started after user streams recorded them.
pub struct NoEarlierSessions;

#[async_trait]
impl EarlierSessions for NoEarlierSessions {
    async fn session_ids_of(&self, _: UserId) -> Result<Vec<SessionId>, StoreError> {
        Ok(vec![])
    }
}

/// Checks a login (e-mail or username) and password, and opens a session valid for
/// `policy.ttl`, ending the user's oldest live sessions beyond `policy.max_per_user`.
#[instrument(skip_all, fields(position))]
pub async fn login(
    handler: &CommandHandler,
    passwords: &Passwords,
    secret: &[u8],
    earlier: &dyn EarlierSessions,
    request: Login<'_>,
    policy: SessionPolicy,
    ctx: &CommandContext,
) -> Result<LoggedIn, LoginError> {
    let user = find_user(handler, secret, request.login).await?;
    let known_hash = user.as_ref().map(|u| u.password_hash.clone());
    if !passwords
        .verify(request.password.to_owned(), known_hash)
        .await
    {
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
    let expires_at = ctx.at + policy.ttl;
    let start = SessionCommand::Start {
        session_id,
        user_id,
        token_hash: token_hash(&token),
        expires_at,
        device: request.device,
    };
    let started = Session::default()
        .decide(&start, &())
        .expect("a new session stream accepts Start");
    let new = OpenSession {
        session_id,
        expires_at,
    };
    let max = policy.max_per_user;
    let position = open(handler, earlier, user_id, new, &started, max, ctx).await?;
    tracing::Span::current().record("position", position);
    Ok(LoggedIn {
        token,
        session_id,
        user_id,
        expires_at,
        position,
    })
}

/// Appends `started`, the new session's stream, and records the session on the user's stream,
/// evicting as the User aggregate decides, in one atomic write (module doc).
async fn open(
    handler: &CommandHandler,
    earlier: &dyn EarlierSessions,
    user_id: UserId,
    new: OpenSession,
    started: &[SessionEvent],
    max: usize,
    ctx: &CommandContext,
) -> Result<Position, LoginError> {
    let user_stream = user_id.stream();
    let _turn = handler.lock(&user_stream).await;
    for attempt in 0..handler.retry_policy().max_attempts {
        let user = handler.load_cached::<User>(&user_stream).await?;
        let mut adopted = if user.state.sessions_recorded {
            HashMap::new()
        } else {
            live_earlier_sessions(handler, earlier, user_id, ctx.at).await?
        };
        let command = UserCommand::OpenSession {
            session: new.clone(),
            at: ctx.at,
            max,
            earlier: adopted
                .iter()
                .map(|(id, s)| OpenSession {
                    session_id: *id,
                    expires_at: s.state.expires_at.unwrap_or(ctx.at),
                })
                .collect(),
        };
        // The account was checked a moment ago; it left since.
        let user_events = user
            .state
            .decide(&command, &())
            .map_err(|_| LoginError::InvalidCredentials)?;
        let mut writes = vec![
            write(user_stream.clone(), user.expected(), &user_events, ctx),
            write(
                new.session_id.stream(),
                ExpectedVersion::NoStream,
                started,
                ctx,
            ),
        ];
        for evicted in User::evicted(&user_events) {
            let session = match adopted.remove(&evicted) {
                Some(loaded) => loaded,
                None => handler.load::<Session>(&evicted.stream()).await?,
            };
            writes.push(end_write(evicted, &session, user_id, ctx));
        }
        // The adopted sessions that stay must still be live when the write commits.
        for (id, session) in &adopted {
            writes.push(write::<SessionEvent>(
                id.stream(),
                session.expected(),
                &[],
                ctx,
            ));
        }
        match handler.store().append_many(writes, None).await {
            Ok(committed) => return Ok(committed.last_position()),
            Err(StoreError::Conflict { .. }) => handler.retry_policy().backoff(attempt).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(LoginError::Contention)
}

/// `user`'s sessions from before user streams recorded sessions that are live at `at`, each
/// as its stream was read.
async fn live_earlier_sessions(
    handler: &CommandHandler,
    earlier: &dyn EarlierSessions,
    user: UserId,
    at: DateTime<Utc>,
) -> Result<HashMap<SessionId, Loaded<Session>>, LoginError> {
    let mut live = HashMap::new();
    for id in earlier.session_ids_of(user).await? {
        let session = handler.load::<Session>(&id.stream()).await?;
        if session.state.is_live_for(user, at) {
            live.insert(id, session);
        }
    }
    Ok(live)
}

/// The write that ends an evicted session: its `SessionEnded`, or, when its stream says it
/// ended or expired already (an end by a process that did not record ends on user streams),
/// nothing but the expectation of its version.
fn end_write(
    session_id: SessionId,
    session: &Loaded<Session>,
    user: UserId,
    ctx: &CommandContext,
) -> StreamWrite {
    let end = SessionCommand::End {
        by: user,
        at: ctx.at,
    };
    let events = session.state.decide(&end, &()).unwrap_or_default();
    write(session_id.stream(), session.expected(), &events, ctx)
}

fn write<E: DomainEvent>(
    stream: StreamId,
    expected: ExpectedVersion,
    events: &[E],
    ctx: &CommandContext,
) -> StreamWrite {
    StreamWrite {
        stream,
        expected,
        events: events.iter().map(|e| to_new_event(e, ctx)).collect(),
    }
}

/// Ends a live session of `user`: a logout, or an end from another of their sessions. Someone
/// else's session, an unknown one, and one that has ended or expired are refused alike
/// ([`SessionError`]), so a caller can answer them alike.
#[instrument(skip_all, fields(session = %session_id, position))]
pub async fn end(
    handler: &CommandHandler,
    session_id: SessionId,
    user: UserId,
    ctx: &CommandContext,
) -> Result<Position, CommandError<SessionError>> {
    let session_stream = session_id.stream();
    let user_stream = user.stream();
    let _turn = handler.lock(&user_stream).await;
    for attempt in 0..handler.retry_policy().max_attempts {
        let session = handler.load::<Session>(&session_stream).await?;
        let end = SessionCommand::End {
            by: user,
            at: ctx.at,
        };
        let ended = session
            .state
            .decide(&end, &())
            .map_err(CommandError::Rejected)?;
        let owner = handler.load_cached::<User>(&user_stream).await?;
        // A session the user's stream never recorded (it started before streams did, and no
        // login since adopted it) closes nothing there.
        let closed = owner
            .state
            .decide(&UserCommand::CloseSession { session_id }, &())
            .unwrap_or_default();
        let writes = vec![
            write(session_stream.clone(), session.expected(), &ended, ctx),
            write(user_stream.clone(), owner.expected(), &closed, ctx),
        ];
        match handler.store().append_many(writes, None).await {
            Ok(committed) => {
                let position = committed.last_position();
                tracing::Span::current().record("position", position);
                return Ok(position);
            }
            Err(StoreError::Conflict { .. }) => handler.retry_policy().backoff(attempt).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CommandError::Contention(session_stream))
}

/// Records that a session was used on `day` (at most once per session and day; nothing for an
/// ended one). `ctx` names no request: see [`domain::session::SessionEvent::SessionSeen`].
pub async fn seen(
    handler: &CommandHandler,
    session_id: SessionId,
    day: NaiveDate,
    ctx: &CommandContext,
) -> Result<Option<Position>, CommandError<SessionError>> {
    let outcome = handler
        .execute::<Session>(
            &session_id.stream(),
            &SessionCommand::Seen { day },
            &(),
            ctx,
        )
        .await?;
    Ok((!outcome.events.is_empty()).then_some(outcome.position))
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
