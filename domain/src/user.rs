//! The User aggregate: a registered account.
//!
//! Uniqueness of e-mail and username is not decided here but by reservation streams
//! ([`crate::reservation`]) appended in the same atomic write as the registration.
//!
//! # At most `max` live sessions
//!
//! The user's stream records each of their sessions as it opens and closes
//! ([`UserEvent::SessionOpened`], [`UserEvent::SessionClosed`]), so the aggregate knows its live
//! sessions in the order they opened, and a login ([`UserCommand::OpenSession`]) decides here
//! which ones it ends. The caller appends the user's events, the new session's stream and the
//! evicted sessions' ends in one atomic write under the user stream's expected version: two
//! concurrent logins cannot both decide on the same state, the loser decides again on the
//! winner's, and so the cap holds across processes without a lock. Every other end of a session
//! (logout, an end from another device) closes it here in the same way.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use serde_json::Value;

use crate::aggregate::DecodeError;
use std::collections::{HashMap, HashSet};

use crate::ids::{PostId, SessionId, UserId};
use crate::personal::{KeyRef, OPEN, Personal};
use crate::values::{Email, FolderName, Username};

#[derive(Debug, Clone)]
pub enum UserCommand {
    Register {
        user_id: UserId,
        email: Email,
        username: Username,
        /// An argon2id PHC string; the domain never sees a plain password.
        password_hash: String,
    },
    GrantAdmin,
    /// Makes the user a moderator, or no longer one; the same again records nothing.
    SetModerator {
        moderator: bool,
    },
    /// The user leaves: their data key is destroyed with this event (by the caller).
    Unregister,
    /// Marks the user's notifications up to inbox sequence number `up_to` read. The mark only
    /// moves forward; asking for one at or below it records nothing.
    MarkNotificationsRead {
        up_to: u64,
    },
    /// Keeps a post among the user's favourites, in `folder` if given (moving it there if it
    /// is in another). At most [`MAX_FOLDERS`] folders are in use at once; the same again
    /// records nothing.
    Favourite {
        post_id: PostId,
        folder: Option<FolderName>,
    },
    /// Drops a post from the favourites; one that is not there records nothing.
    Unfavourite {
        post_id: PostId,
    },
    /// Records a new session of the user (the caller starts its stream in the same append).
    /// Sessions that expired by `at` are closed; then, while `max` or more are live, the
    /// oldest are closed as evicted (the caller ends their streams in the same append), so
    /// that with the new one at most `max` are live.
    OpenSession {
        session: OpenSession,
        at: DateTime<Utc>,
        max: usize,
        /// Live sessions started before user streams recorded sessions, which the caller
        /// found elsewhere: they are recorded first, in the order of their ids (UUIDv7, so the
        /// order they started in), and count like the others. Read only while the stream has
        /// recorded no session at all.
        earlier: Vec<OpenSession>,
    },
    /// Closes a session that ended (the caller ends its stream in the same append); one the
    /// stream never recorded records nothing.
    CloseSession {
        session_id: SessionId,
    },
}

/// One of the user's sessions, as their stream records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    pub session_id: SessionId,
    pub expires_at: DateTime<Utc>,
}

/// Why a session no longer counts among the user's live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseReason {
    /// The user ended it: a logout, or an end from another of their sessions.
    Ended,
    /// A newer login took its place.
    Evicted,
    /// Its token had expired (noticed at the next login; the session's own stream records
    /// nothing for it).
    Expired,
}

/// The most folders of favourites one user has in use.
pub const MAX_FOLDERS: usize = 10;

/// A favourite as the log keeps it: sealed whole under the user's key, so the log tells
/// neither which posts a user keeps nor their folders' names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Favourite {
    pub post_id: PostId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "type", content = "data")]
pub enum UserEvent {
    /// Schema 2: the personal fields are sealed with the user's data key in the log.
    UserRegistered {
        user_id: UserId,
        email: Personal<String>,
        username: Personal<String>,
        password_hash: Personal<String>,
    },
    AdminGranted {
        user_id: UserId,
    },
    ModeratorGranted {
        user_id: UserId,
    },
    ModeratorRevoked {
        user_id: UserId,
    },
    /// The user left; their data key is destroyed, so their sealed values cannot be read again.
    UserUnregistered {
        user_id: UserId,
    },
    /// The user has read their notifications up to inbox sequence number `up_to`, sealed:
    /// a sequence number is the position of the comment notified, which would tell the log's
    /// readers what the user follows or wrote.
    NotificationsRead {
        user_id: UserId,
        up_to: Personal<u64>,
    },
    /// A post kept among the user's favourites (or moved to another folder).
    FavouriteSet {
        user_id: UserId,
        favourite: Personal<Favourite>,
    },
    /// A post dropped from the user's favourites.
    FavouriteRemoved {
        user_id: UserId,
        post_id: Personal<PostId>,
    },
    /// A session of the user counts among their live sessions from here on: written with its
    /// start, or, for a session started before user streams recorded sessions, with the
    /// user's first login after.
    SessionOpened {
        user_id: UserId,
        session_id: SessionId,
        expires_at: DateTime<Utc>,
    },
    /// A session of the user no longer counts among their live sessions.
    SessionClosed {
        user_id: UserId,
        session_id: SessionId,
        reason: CloseReason,
    },
}

impl DomainEvent for UserEvent {
    fn into_event(self) -> crate::Event {
        crate::Event::User(self)
    }

    fn schema(&self) -> u32 {
        match self {
            UserEvent::UserRegistered { .. } => 2,
            _ => 1,
        }
    }

    /// Schema 1 of `UserRegistered` carried the personal fields in clear; they become open
    /// personal values under the user's key.
    fn upcast<'a>(
        event_type: &str,
        schema: u32,
        data: &'a Value,
    ) -> Result<std::borrow::Cow<'a, Value>, DecodeError> {
        match (event_type, schema) {
            ("UserRegistered", 1) => {
                let mut data = data.clone();
                let key = data["user_id"].clone();
                for field in ["email", "username", "password_hash"] {
                    let value = data[field].take();
                    data[field] = serde_json::json!({ OPEN: { "key": key, "value": value } });
                }
                Ok(std::borrow::Cow::Owned(data))
            }
            ("UserRegistered", 2) | (_, 1) => Ok(std::borrow::Cow::Borrowed(data)),
            _ => Err(DecodeError {
                event_type: event_type.to_owned(),
                schema,
                reason: "unknown schema".into(),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("the user already exists")]
    AlreadyRegistered,
    #[error("no such user")]
    NotFound,
    #[error("the user is already an admin")]
    AlreadyAdmin,
    #[error("the user has unregistered")]
    Unregistered,
    #[error("at most {MAX_FOLDERS} folders of favourites are in use at once")]
    TooManyFolders,
}

#[derive(Debug, Clone, Default)]
pub struct User {
    pub id: Option<UserId>,
    /// Empty when unknown (the key was destroyed).
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub is_moderator: bool,
    pub unregistered: bool,
    /// How far the user has read their notifications.
    pub notifications_read: u64,
    /// The user's favourites and the folder of each.
    pub favourites: HashMap<PostId, Option<String>>,
    /// The sessions the stream records as open, oldest first (some may have expired since).
    pub sessions: Vec<OpenSession>,
    /// Whether the stream has ever recorded a session (else the user's sessions, if any,
    /// started before user streams recorded them).
    pub sessions_recorded: bool,
}

impl User {
    /// The events of [`UserCommand::OpenSession`] (see there).
    fn open_session(
        &self,
        user_id: UserId,
        new: &OpenSession,
        at: DateTime<Utc>,
        max: usize,
        earlier: &[OpenSession],
    ) -> Vec<UserEvent> {
        let opened = |s: &OpenSession| UserEvent::SessionOpened {
            user_id,
            session_id: s.session_id,
            expires_at: s.expires_at,
        };
        let closed = |s: &OpenSession, reason| UserEvent::SessionClosed {
            user_id,
            session_id: s.session_id,
            reason,
        };
        let mut events = Vec::new();
        let mut open = self.sessions.clone();
        if !self.sessions_recorded {
            let mut earlier = earlier.to_vec();
            earlier.sort_by_key(|s| s.session_id.as_uuid());
            earlier.dedup_by_key(|s| s.session_id);
            for s in earlier
                .into_iter()
                .filter(|s| s.session_id != new.session_id)
            {
                events.push(opened(&s));
                open.push(s);
            }
        }
        let (expired, live): (Vec<_>, Vec<_>) = open.into_iter().partition(|s| s.expires_at <= at);
        events.extend(expired.iter().map(|s| closed(s, CloseReason::Expired)));
        let excess = (live.len() + 1).saturating_sub(max.max(1));
        events.extend(
            live[..excess]
                .iter()
                .map(|s| closed(s, CloseReason::Evicted)),
        );
        events.push(opened(new));
        events
    }

    /// The sessions a decision closes as evicted: the streams the caller must end with it.
    pub fn evicted(events: &[UserEvent]) -> Vec<SessionId> {
        events
            .iter()
            .filter_map(|e| match e {
                UserEvent::SessionClosed {
                    session_id,
                    reason: CloseReason::Evicted,
                    ..
                } => Some(*session_id),
                _ => None,
            })
            .collect()
    }

    /// The user's id, while they are registered.
    fn live(&self) -> Result<UserId, UserError> {
        let user_id = self.id.ok_or(UserError::NotFound)?;
        if self.unregistered {
            return Err(UserError::Unregistered);
        }
        Ok(user_id)
    }
}

impl Aggregate for User {
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    fn decide(&self, command: &UserCommand, _: &()) -> Result<Vec<UserEvent>, UserError> {
        match command {
            UserCommand::Register {
                user_id,
                email,
                username,
                password_hash,
            } => {
                if self.id.is_some() {
                    return Err(UserError::AlreadyRegistered);
                }
                let key = KeyRef::user(*user_id);
                Ok(vec![UserEvent::UserRegistered {
                    user_id: *user_id,
                    email: Personal::new(key.clone(), email.as_str().to_owned()),
                    username: Personal::new(key.clone(), username.as_str().to_owned()),
                    password_hash: Personal::new(key, password_hash.clone()),
                }])
            }
            UserCommand::Unregister => {
                let user_id = self.id.ok_or(UserError::NotFound)?;
                if self.unregistered {
                    return Err(UserError::Unregistered);
                }
                Ok(vec![UserEvent::UserUnregistered { user_id }])
            }
            UserCommand::GrantAdmin => {
                let user_id = self.id.ok_or(UserError::NotFound)?;
                if self.unregistered {
                    return Err(UserError::Unregistered);
                }
                if self.is_admin {
                    return Err(UserError::AlreadyAdmin);
                }
                Ok(vec![UserEvent::AdminGranted { user_id }])
            }
            UserCommand::SetModerator { moderator } => {
                let user_id = self.live()?;
                Ok(match (self.is_moderator, *moderator) {
                    (false, true) => vec![UserEvent::ModeratorGranted { user_id }],
                    (true, false) => vec![UserEvent::ModeratorRevoked { user_id }],
                    _ => vec![],
                })
            }
            UserCommand::Favourite { post_id, folder } => {
                let user_id = self.live()?;
                let folder = folder.as_ref().map(|f| f.as_str().to_owned());
                if self.favourites.get(post_id) == Some(&folder) {
                    return Ok(vec![]);
                }
                if let Some(name) = &folder {
                    let mut in_use: HashSet<&String> = self
                        .favourites
                        .iter()
                        .filter(|(p, _)| *p != post_id)
                        .filter_map(|(_, f)| f.as_ref())
                        .collect();
                    in_use.insert(name);
                    if in_use.len() > MAX_FOLDERS {
                        return Err(UserError::TooManyFolders);
                    }
                }
                Ok(vec![UserEvent::FavouriteSet {
                    user_id,
                    favourite: Personal::new(
                        KeyRef::user(user_id),
                        Favourite {
                            post_id: *post_id,
                            folder,
                        },
                    ),
                }])
            }
            UserCommand::Unfavourite { post_id } => {
                let user_id = self.live()?;
                if !self.favourites.contains_key(post_id) {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::FavouriteRemoved {
                    user_id,
                    post_id: Personal::new(KeyRef::user(user_id), *post_id),
                }])
            }
            UserCommand::MarkNotificationsRead { up_to } => {
                let user_id = self.id.ok_or(UserError::NotFound)?;
                if self.unregistered {
                    return Err(UserError::Unregistered);
                }
                if *up_to <= self.notifications_read {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::NotificationsRead {
                    user_id,
                    up_to: Personal::new(KeyRef::user(user_id), *up_to),
                }])
            }
            UserCommand::OpenSession {
                session,
                at,
                max,
                earlier,
            } => Ok(self.open_session(self.live()?, session, *at, *max, earlier)),
            UserCommand::CloseSession { session_id } => {
                let user_id = self.live()?;
                if !self.sessions.iter().any(|s| s.session_id == *session_id) {
                    return Ok(vec![]);
                }
                Ok(vec![UserEvent::SessionClosed {
                    user_id,
                    session_id: *session_id,
                    reason: CloseReason::Ended,
                }])
            }
        }
    }

    fn evolve(&mut self, event: &UserEvent) {
        match event {
            UserEvent::UserRegistered {
                user_id,
                email,
                username,
                password_hash,
            } => {
                let known = |p: &Personal<String>| p.get().cloned().unwrap_or_default();
                self.id = Some(*user_id);
                self.email = known(email);
                self.username = known(username);
                self.password_hash = known(password_hash);
            }
            UserEvent::AdminGranted { .. } => self.is_admin = true,
            UserEvent::ModeratorGranted { .. } => self.is_moderator = true,
            UserEvent::ModeratorRevoked { .. } => self.is_moderator = false,
            UserEvent::FavouriteSet { favourite, .. } => {
                if let Some(f) = favourite.get() {
                    self.favourites.insert(f.post_id, f.folder.clone());
                }
            }
            UserEvent::FavouriteRemoved { post_id, .. } => {
                if let Some(p) = post_id.get() {
                    self.favourites.remove(p);
                }
            }
            UserEvent::NotificationsRead { up_to, .. } => {
                if let Some(up_to) = up_to.get() {
                    self.notifications_read = self.notifications_read.max(*up_to);
                }
            }
            UserEvent::SessionOpened {
                session_id,
                expires_at,
                ..
            } => {
                self.sessions_recorded = true;
                if !self.sessions.iter().any(|s| s.session_id == *session_id) {
                    self.sessions.push(OpenSession {
                        session_id: *session_id,
                        expires_at: *expires_at,
                    });
                }
            }
            UserEvent::SessionClosed { session_id, .. } => {
                self.sessions.retain(|s| s.session_id != *session_id);
            }
            UserEvent::UserUnregistered { .. } => {
                self.sessions.clear();
                self.unregistered = true;
                self.email.clear();
                self.username.clear();
                self.password_hash.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;
    use uuid::Uuid;

    fn ann() -> UserId {
        UserId::new(Uuid::from_u128(1))
    }

    fn registered() -> UserEvent {
        UserEvent::UserRegistered {
            user_id: ann(),
            email: Personal::new(KeyRef::user(ann()), "ann@campus.edu".into()),
            username: Personal::new(KeyRef::user(ann()), "ann".into()),
            password_hash: Personal::new(KeyRef::user(ann()), "$argon2id$x".into()),
        }
    }

    fn unregistered() -> UserEvent {
        UserEvent::UserUnregistered { user_id: ann() }
    }

    #[test]
    fn favourites_are_set_once_and_use_at_most_ten_folders() {
        let post = |n: u128| PostId::new(Uuid::from_u128(100 + n));
        let fav = |n: u128, folder: Option<&str>| UserCommand::Favourite {
            post_id: post(n),
            folder: folder.map(|f| FolderName::parse(f).unwrap()),
        };
        let set = |n: u128, folder: Option<&str>| UserEvent::FavouriteSet {
            user_id: ann(),
            favourite: Personal::new(
                KeyRef::user(ann()),
                Favourite {
                    post_id: post(n),
                    folder: folder.map(str::to_owned),
                },
            ),
        };
        let mut g = given::<User>([registered()])
            .when(&fav(0, None))
            .then([set(0, None)])
            // The same again.
            .when(&fav(0, None))
            .then([]);
        for n in 1..=10 {
            let name = format!("folder {n}");
            g = g.when(&fav(n, Some(&name))).then([set(n, Some(&name))]);
        }
        let drop = UserCommand::Unfavourite { post_id: post(12) };
        let g = g
            .when(&fav(11, Some("one too many")))
            .then_error(UserError::TooManyFolders)
            // Into a folder in use is fine; moving the only post of a folder frees it.
            .when(&fav(11, Some("folder 1")))
            .then([set(11, Some("folder 1"))])
            .when(&fav(2, Some("folder 1")))
            .then([set(2, Some("folder 1"))])
            .when(&fav(12, Some("new")))
            .then([set(12, Some("new"))])
            .when(&drop)
            .then([UserEvent::FavouriteRemoved {
                user_id: ann(),
                post_id: Personal::new(KeyRef::user(ann()), post(12)),
            }])
            .when(&drop)
            .then([]);
        assert!(!g.state().favourites.contains_key(&post(12)));
    }

    mod sessions {
        use super::*;
        use chrono::Duration;
        use proptest::prelude::*;

        fn at(secs: i64) -> DateTime<Utc> {
            DateTime::from_timestamp(secs, 0).unwrap()
        }

        fn session(n: u128, expires: i64) -> OpenSession {
            OpenSession {
                session_id: SessionId::new(Uuid::from_u128(0x1000 + n)),
                expires_at: at(expires),
            }
        }

        fn opened(s: &OpenSession) -> UserEvent {
            UserEvent::SessionOpened {
                user_id: ann(),
                session_id: s.session_id,
                expires_at: s.expires_at,
            }
        }

        fn closed(s: &OpenSession, reason: CloseReason) -> UserEvent {
            UserEvent::SessionClosed {
                user_id: ann(),
                session_id: s.session_id,
                reason,
            }
        }

        fn open(new: &OpenSession, secs: i64, max: usize) -> UserCommand {
            UserCommand::OpenSession {
                session: new.clone(),
                at: at(secs),
                max,
                earlier: vec![],
            }
        }

        /// Registered, with sessions 1 to `n` opened in order, each valid until 1000.
        fn with_sessions(n: u128) -> Vec<UserEvent> {
            let mut log = vec![registered()];
            log.extend((1..=n).map(|i| opened(&session(i, 1000))));
            log
        }

        #[test]
        fn a_login_under_the_cap_only_opens() {
            let new = session(6, 1000);
            given::<User>(with_sessions(5))
                .when(&open(&new, 0, 6))
                .then([opened(&new)]);
        }

        #[test]
        fn the_seventh_login_evicts_the_oldest() {
            let new = session(7, 1000);
            let events = [
                closed(&session(1, 1000), CloseReason::Evicted),
                opened(&new),
            ];
            let g = given::<User>(with_sessions(6))
                .when(&open(&new, 0, 6))
                .then(events.clone());
            assert_eq!(User::evicted(&events), vec![session(1, 1000).session_id]);
            let ids: Vec<_> = g.state().sessions.iter().map(|s| s.session_id).collect();
            let wanted: Vec<_> = (2..=7).map(|i| session(i, 1000).session_id).collect();
            assert_eq!(ids, wanted, "oldest first");
        }

        #[test]
        fn expired_sessions_are_closed_and_make_room_without_evictions() {
            let mut log = vec![registered(), opened(&session(1, 10))];
            log.extend((2..=6).map(|i| opened(&session(i, 1000))));
            let new = session(7, 1000);
            given::<User>(log)
                .when(&open(&new, 10, 6))
                .then([closed(&session(1, 10), CloseReason::Expired), opened(&new)]);
        }

        #[test]
        fn a_lowered_cap_evicts_as_many_as_it_takes() {
            let new = session(7, 1000);
            let evicted = (1..=5).map(|i| closed(&session(i, 1000), CloseReason::Evicted));
            given::<User>(with_sessions(6))
                .when(&open(&new, 0, 2))
                .then(evicted.chain([opened(&new)]));
        }

        #[test]
        fn sessions_from_before_user_streams_recorded_them_count_once() {
            let earlier: Vec<_> = (1..=7).rev().map(|i| session(i, 1000)).collect();
            let new = session(8, 1000);
            let command = UserCommand::OpenSession {
                session: new.clone(),
                at: at(0),
                max: 6,
                earlier: earlier.clone(),
            };
            let mut wanted: Vec<_> = (1..=7).map(|i| opened(&session(i, 1000))).collect();
            wanted.push(closed(&session(1, 1000), CloseReason::Evicted));
            wanted.push(closed(&session(2, 1000), CloseReason::Evicted));
            wanted.push(opened(&new));
            // Once the stream records sessions, the caller's list is not read again.
            let again = UserCommand::OpenSession {
                session: session(9, 1000),
                at: at(0),
                max: 6,
                earlier,
            };
            given::<User>([registered()])
                .when(&command)
                .then(wanted)
                .when(&again)
                .then([
                    closed(&session(3, 1000), CloseReason::Evicted),
                    opened(&session(9, 1000)),
                ]);
        }

        #[test]
        fn closing_records_only_sessions_the_stream_knows() {
            let close = |n| UserCommand::CloseSession {
                session_id: session(n, 1000).session_id,
            };
            given::<User>(with_sessions(2))
                .when(&close(9))
                .then([])
                .when(&close(2))
                .then([closed(&session(2, 1000), CloseReason::Ended)]);
        }

        #[test]
        fn an_unregistered_user_opens_no_session() {
            let mut log = with_sessions(1);
            log.push(unregistered());
            let g = given::<User>(log);
            assert!(g.state().sessions.is_empty());
            g.when(&open(&session(2, 1000), 0, 6))
                .then_error(UserError::Unregistered);
            given::<User>([])
                .when(&open(&session(2, 1000), 0, 6))
                .then_error(UserError::NotFound);
        }

        /// A login, an end of the `n`th live session, or time passing.
        #[derive(Debug, Clone)]
        enum Step {
            Login,
            End(usize),
            Wait(i64),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => Just(Step::Login),
                1 => (0usize..8).prop_map(Step::End),
                1 => (1i64..50).prop_map(Step::Wait),
            ]
        }

        proptest! {
            /// Whatever happens, the sessions a login leaves live are at most `max`, the new one
            /// among them, and evictions take the oldest live ones.
            #[test]
            fn logins_never_leave_more_than_max_live(
                max in 1usize..8,
                steps in proptest::collection::vec(step(), 1..60),
            ) {
                let mut g = given::<User>([registered()]);
                let (mut now, mut next) = (0i64, 0u128);
                for s in steps {
                    match s {
                        Step::Wait(secs) => now += secs,
                        Step::End(n) => {
                            let Some(target) = g.state().sessions.get(n).cloned() else { continue };
                            let close = UserCommand::CloseSession { session_id: target.session_id };
                            g = g.when(&close).then([closed(&target, CloseReason::Ended)]);
                        }
                        Step::Login => {
                            next += 1;
                            let new = OpenSession {
                                session_id: SessionId::new(Uuid::from_u128(next)),
                                expires_at: at(now) + Duration::seconds(100),
                            };
                            let live_before: Vec<_> = g.state().sessions.iter()
                                .filter(|s| s.expires_at > at(now)).cloned().collect();
                            let (after, events) = g.when(&open(&new, now, max)).then_take();
                            g = after;
                            let evicted = User::evicted(&events);
                            let oldest: Vec<_> = live_before.iter().take(evicted.len())
                                .map(|s| s.session_id).collect();
                            prop_assert_eq!(evicted, oldest);
                            let user = g.state();
                            let live = user.sessions.iter().filter(|s| s.expires_at > at(now)).count();
                            prop_assert!(live <= max);
                            prop_assert!(user.sessions.iter().all(|s| s.expires_at > at(now)));
                            prop_assert_eq!(user.sessions.last(), Some(&new));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn moderator_rights_are_granted_and_revoked_once() {
        let set = |moderator| UserCommand::SetModerator { moderator };
        given::<User>([])
            .when(&set(true))
            .then_error(UserError::NotFound);
        given::<User>([registered()])
            .when(&set(false))
            .then([])
            .when(&set(true))
            .then([UserEvent::ModeratorGranted { user_id: ann() }])
            .when(&set(true))
            .then([])
            .when(&set(false))
            .then([UserEvent::ModeratorRevoked { user_id: ann() }]);
        given::<User>([registered(), unregistered()])
            .when(&set(true))
            .then_error(UserError::Unregistered);
    }

    #[test]
    fn the_read_mark_only_moves_forward() {
        let mark = |up_to| UserCommand::MarkNotificationsRead { up_to };
        let read = |up_to| UserEvent::NotificationsRead {
            user_id: ann(),
            up_to: Personal::new(KeyRef::user(ann()), up_to),
        };
        given::<User>([])
            .when(&mark(3))
            .then_error(UserError::NotFound);
        given::<User>([registered()]).when(&mark(5)).then([read(5)]);
        given::<User>([registered(), read(5)])
            .when(&mark(5))
            .then([])
            .when(&mark(4))
            .then([])
            .when(&mark(6))
            .then([read(6)]);
    }

    #[test]
    fn register_once_then_grant_admin_once() {
        let register = UserCommand::Register {
            user_id: ann(),
            email: Email::parse("ann@campus.edu").unwrap(),
            username: Username::parse("ann").unwrap(),
            password_hash: "$argon2id$x".into(),
        };
        given::<User>([])
            .when(&UserCommand::GrantAdmin)
            .then_error(UserError::NotFound)
            .when(&register)
            .then([registered()]);
        let admin = given::<User>([registered()])
            .when(&register)
            .then_error(UserError::AlreadyRegistered)
            .when(&UserCommand::GrantAdmin)
            .then([UserEvent::AdminGranted { user_id: ann() }]);
        assert!(admin.state().is_admin);
        let gone = admin
            .when(&UserCommand::GrantAdmin)
            .then_error(UserError::AlreadyAdmin)
            .when(&UserCommand::Unregister)
            .then([unregistered()]);
        assert!(gone.state().unregistered && gone.state().password_hash.is_empty());
        gone.when(&UserCommand::Unregister)
            .then_error(UserError::Unregistered);
    }

    #[test]
    fn schema_1_registrations_upcast_to_open_personal_values() {
        let id = Uuid::from_u128(9);
        let old = serde_json::json!({"user_id": id, "email": "a@b.org", "username": "ann",
            "password_hash": "$argon2id$x"});
        let event = UserEvent::decode("UserRegistered", 1, &old).unwrap();
        let UserEvent::UserRegistered {
            email, username, ..
        } = &event
        else {
            panic!("{event:?}")
        };
        assert_eq!(email.get().map(String::as_str), Some("a@b.org"));
        assert_eq!(username.key().as_user(), Some(UserId::new(id)));
        assert_eq!(event.schema(), 2);
    }
}
