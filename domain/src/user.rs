//! The User aggregate: a registered account.
//!
//! Uniqueness of e-mail and username is not decided here but by reservation streams
//! ([`crate::reservation`]) appended in the same atomic write as the registration.

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use serde_json::Value;

use crate::aggregate::DecodeError;
use std::collections::{HashMap, HashSet};

use crate::ids::{PostId, UserId};
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

impl DomainEvent for UserEvent {
    const TYPES: &'static [&'static str] = &[
        "UserRegistered",
        "AdminGranted",
        "UserUnregistered",
        "NotificationsRead",
        "FavouriteSet",
        "FavouriteRemoved",
        "ModeratorGranted",
        "ModeratorRevoked",
    ];

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
}

impl User {
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
            UserEvent::UserUnregistered { .. } => {
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
    use uuid::Uuid;

    #[test]
    fn favourites_are_set_once_and_use_at_most_ten_folders() {
        let mut user = User {
            id: Some(UserId::new(Uuid::from_u128(1))),
            ..User::default()
        };
        let post = |n: u128| PostId::new(Uuid::from_u128(100 + n));
        let fav = |n: u128, folder: Option<&str>| UserCommand::Favourite {
            post_id: post(n),
            folder: folder.map(|f| FolderName::parse(f).unwrap()),
        };
        let apply = |user: &mut User, cmd: &UserCommand| {
            let events = user.decide(cmd, &())?;
            for e in &events {
                user.evolve(e);
            }
            Ok::<_, UserError>(events.len())
        };
        assert_eq!(apply(&mut user, &fav(0, None)), Ok(1));
        assert_eq!(apply(&mut user, &fav(0, None)), Ok(0), "the same again");
        for n in 1..=10 {
            let name = format!("folder {n}");
            assert_eq!(apply(&mut user, &fav(n, Some(&name))), Ok(1));
        }
        assert_eq!(
            apply(&mut user, &fav(11, Some("one too many"))),
            Err(UserError::TooManyFolders)
        );
        // Into a folder in use is fine; moving the only post of a folder frees it.
        assert_eq!(apply(&mut user, &fav(11, Some("folder 1"))), Ok(1));
        assert_eq!(apply(&mut user, &fav(2, Some("folder 1"))), Ok(1));
        assert_eq!(apply(&mut user, &fav(12, Some("new"))), Ok(1));
        let drop = UserCommand::Unfavourite { post_id: post(12) };
        assert_eq!(apply(&mut user, &drop), Ok(1));
        assert_eq!(apply(&mut user, &drop), Ok(0));
        assert!(!user.favourites.contains_key(&post(12)));
    }

    #[test]
    fn moderator_rights_are_granted_and_revoked_once() {
        let id = UserId::new(Uuid::from_u128(1));
        let mut user = User::default();
        let set = |moderator| UserCommand::SetModerator { moderator };
        assert_eq!(user.decide(&set(true), &()), Err(UserError::NotFound));
        user.id = Some(id);
        assert_eq!(user.decide(&set(false), &()), Ok(vec![]));
        let granted = user.decide(&set(true), &()).unwrap();
        assert_eq!(granted, vec![UserEvent::ModeratorGranted { user_id: id }]);
        user.evolve(&granted[0]);
        assert_eq!(user.decide(&set(true), &()), Ok(vec![]));
        let revoked = user.decide(&set(false), &()).unwrap();
        assert_eq!(revoked, vec![UserEvent::ModeratorRevoked { user_id: id }]);
        user.unregistered = true;
        assert_eq!(user.decide(&set(true), &()), Err(UserError::Unregistered));
    }

    #[test]
    fn the_read_mark_only_moves_forward() {
        let mut user = User::default();
        let mark = |up_to| UserCommand::MarkNotificationsRead { up_to };
        assert_eq!(user.decide(&mark(3), &()), Err(UserError::NotFound));
        user.id = Some(UserId::new(Uuid::from_u128(1)));
        let events = user.decide(&mark(5), &()).unwrap();
        assert_eq!(
            events,
            vec![UserEvent::NotificationsRead {
                user_id: UserId::new(Uuid::from_u128(1)),
                up_to: Personal::new(KeyRef::user(UserId::new(Uuid::from_u128(1))), 5)
            }]
        );
        user.evolve(&events[0]);
        assert_eq!(user.decide(&mark(5), &()), Ok(vec![]));
        assert_eq!(user.decide(&mark(4), &()), Ok(vec![]));
        assert_eq!(user.decide(&mark(6), &()).unwrap().len(), 1);
    }

    #[test]
    fn register_once_then_grant_admin_once() {
        let register = UserCommand::Register {
            user_id: UserId::new(Uuid::from_u128(1)),
            email: Email::parse("a@b.org").unwrap(),
            username: Username::parse("ann").unwrap(),
            password_hash: "$argon2id$...".into(),
        };
        let mut user = User::default();
        assert_eq!(
            user.decide(&UserCommand::GrantAdmin, &()),
            Err(UserError::NotFound)
        );
        for e in user.decide(&register, &()).unwrap() {
            user.evolve(&e);
        }
        assert_eq!(
            user.decide(&register, &()),
            Err(UserError::AlreadyRegistered)
        );
        for e in user.decide(&UserCommand::GrantAdmin, &()).unwrap() {
            user.evolve(&e);
        }
        assert!(user.is_admin);
        assert_eq!(
            user.decide(&UserCommand::GrantAdmin, &()),
            Err(UserError::AlreadyAdmin)
        );
        for e in user.decide(&UserCommand::Unregister, &()).unwrap() {
            user.evolve(&e);
        }
        assert!(user.unregistered && user.password_hash.is_empty());
        assert_eq!(
            user.decide(&UserCommand::Unregister, &()),
            Err(UserError::Unregistered)
        );
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
