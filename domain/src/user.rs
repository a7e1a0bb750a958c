//! The User aggregate: a registered account.
//!
//! Uniqueness of e-mail and username is not decided here but by reservation streams
//! ([`crate::reservation`]) appended in the same atomic write as the registration.

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::ids::UserId;
use crate::values::{Email, Username};

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum UserEvent {
    UserRegistered {
        user_id: UserId,
        email: String,
        username: String,
        password_hash: String,
    },
    AdminGranted {
        user_id: UserId,
    },
}

impl DomainEvent for UserEvent {
    const TYPES: &'static [&'static str] = &["UserRegistered", "AdminGranted"];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("the user already exists")]
    AlreadyRegistered,
    #[error("no such user")]
    NotFound,
    #[error("the user is already an admin")]
    AlreadyAdmin,
}

#[derive(Debug, Clone, Default)]
pub struct User {
    pub id: Option<UserId>,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub is_admin: bool,
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
                Ok(vec![UserEvent::UserRegistered {
                    user_id: *user_id,
                    email: email.as_str().to_owned(),
                    username: username.as_str().to_owned(),
                    password_hash: password_hash.clone(),
                }])
            }
            UserCommand::GrantAdmin => {
                let user_id = self.id.ok_or(UserError::NotFound)?;
                if self.is_admin {
                    return Err(UserError::AlreadyAdmin);
                }
                Ok(vec![UserEvent::AdminGranted { user_id }])
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
                self.id = Some(*user_id);
                self.email.clone_from(email);
                self.username.clone_from(username);
                self.password_hash.clone_from(password_hash);
            }
            UserEvent::AdminGranted { .. } => self.is_admin = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

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
    }
}
