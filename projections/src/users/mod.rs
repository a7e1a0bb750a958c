//! The `users` projection: accounts and live sessions (private tables: they back `GET /me` and
//! bearer-token checks, never a public listing).

mod change;
mod view;

pub use change::UserChange;
pub use view::{SanctionTerm, SanctionView, SessionSummary, SessionView, UserQueries, UserView};

use domain::sanction::SanctionEvent;
use domain::session::SessionEvent;
use domain::user::UserEvent;
use domain::{Envelope, Event};

use crate::{Change, Projection};

/// The projection's name, which its checkpoint and `?after=` waits use.
pub const NAME: &str = "users";

pub struct Users;

impl Projection for Users {
    fn name(&self) -> &'static str {
        NAME
    }

    /// 3: moderators and sanctions; sessions carry their device label, creation time and
    /// last-seen day.
    fn version(&self) -> u32 {
        3
    }

    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        match event {
            Event::User(UserEvent::UserRegistered {
                user_id,
                email,
                username,
                ..
            }) => vec![Change::Users(UserChange::InsertUser {
                user_id: *user_id,
                // Empty when the key is gone: the user unregistered, and that event (later in
                // the log) deletes the row.
                username: username.get().cloned().unwrap_or_default(),
                email: email.get().cloned().unwrap_or_default(),
                registered_at: envelope.occurred_at,
            })],
            Event::User(UserEvent::AdminGranted { user_id }) => {
                vec![Change::Users(UserChange::SetAdmin { user_id: *user_id })]
            }
            Event::User(UserEvent::ModeratorGranted { user_id }) => {
                vec![Change::Users(UserChange::SetModerator {
                    user_id: *user_id,
                    moderator: true,
                })]
            }
            Event::User(UserEvent::ModeratorRevoked { user_id }) => {
                vec![Change::Users(UserChange::SetModerator {
                    user_id: *user_id,
                    moderator: false,
                })]
            }
            Event::Sanction(SanctionEvent::SanctionImposed {
                sanction_id,
                item,
                reason,
                subject,
                terms,
                ..
            }) => {
                // Unreadable once the subject left: a sanction of nobody.
                let (Some(user_id), Some(terms)) = (subject.get(), terms.get()) else {
                    return vec![];
                };
                vec![Change::Users(UserChange::InsertSanction {
                    sanction_id: *sanction_id,
                    user_id: *user_id,
                    post_id: item.post_id,
                    comment_id: item.comment_id,
                    reason: reason.code().to_owned(),
                    step: i64::from(terms.step),
                    starts_at: terms.starts_at,
                    ends_at: terms.ends_at,
                    imposed_at: envelope.occurred_at,
                })]
            }
            Event::Sanction(SanctionEvent::SanctionAppealed { sanction_id, text }) => {
                vec![Change::Users(UserChange::AppealSanction {
                    sanction_id: *sanction_id,
                    text: text.as_ref().and_then(|t| t.get().cloned()),
                    at: envelope.occurred_at,
                })]
            }
            Event::Sanction(SanctionEvent::AppealDecided {
                sanction_id,
                upheld,
                ..
            }) => vec![Change::Users(UserChange::DecideAppeal {
                sanction_id: *sanction_id,
                upheld: *upheld,
                at: envelope.occurred_at,
            })],
            Event::User(UserEvent::UserUnregistered { user_id }) => {
                vec![Change::Users(UserChange::DeleteUser { user_id: *user_id })]
            }
            Event::Session(SessionEvent::SessionStarted {
                session_id,
                user_id,
                token_hash,
                expires_at,
                device,
            }) => {
                vec![Change::Users(UserChange::InsertSession {
                    session_id: *session_id,
                    user_id: *user_id,
                    token_hash: token_hash.clone(),
                    expires_at: *expires_at,
                    // None when the key is gone: the user unregistered, and that event
                    // (later in the log) deletes the row.
                    device: device.as_ref().and_then(|d| d.get().cloned()),
                    created_at: envelope.occurred_at,
                })]
            }
            Event::Session(SessionEvent::SessionSeen { session_id, day }) => {
                vec![Change::Users(UserChange::SeeSession {
                    session_id: *session_id,
                    day: *day,
                })]
            }
            Event::Session(SessionEvent::SessionEnded { session_id, .. }) => {
                vec![Change::Users(UserChange::EndSession {
                    session_id: *session_id,
                })]
            }
            Event::User(
                UserEvent::NotificationsRead { .. }
                | UserEvent::FavouriteSet { .. }
                | UserEvent::FavouriteRemoved { .. }
                // The user stream's record of live sessions only serves the cap; this model
                // follows the sessions' own streams.
                | UserEvent::SessionOpened { .. }
                | UserEvent::SessionClosed { .. },
            )
            | Event::Reservation(_)
            | Event::Verification(_)
            | Event::Post(_)
            | Event::Model(_)
            | Event::Task(_)
            | Event::Worker(_) => vec![],
        }
    }
}
