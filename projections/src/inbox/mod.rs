//! The `inbox` projection: follows, per-user notifications (treehollow's "attention" and its
//! message box) and favourites (OpenTreeHole's, in at most ten folders).
//!
//! Following is automatic for a post's author and for each commenter; an explicit
//! `FollowSet` overrides it either way. A new comment notifies the author it answers (the
//! author of the comment replied to, else the post's author) with a "reply" and every
//! follower with a "followed": one notification per person, reasons merged, none to the
//! commenter. The rows are keyed by user id and read by their owner alone; what they say of
//! the commenter is the name the comment itself shows.

mod change;
mod view;

pub use change::InboxChange;
pub use view::{
    FavouriteView, FolderView, FollowView, InboxQueries, InboxState, NoticeView, NotificationView,
    UNREAD_CAP,
};

use chrono::Duration;
use domain::moderation::Act;
use domain::post::PostEvent;
use domain::sanction::SanctionEvent;
use domain::user::UserEvent;
use domain::{Envelope, Event};

use crate::feed::shown_name;
use crate::{Change, Projection};

/// The projection's name.
pub const NAME: &str = "inbox";

/// How long notifications are kept. A stream resuming from further back is told to start
/// over (`event: reset`).
pub const RETENTION_DAYS: i64 = 30;

/// The retention runs on every event whose position is a multiple of this: rarely enough to
/// cost nothing per comment, at the same points in every rebuild.
pub const PRUNE_EVERY: u64 = 1024;

/// Characters of a comment a notification quotes.
const EXCERPT: usize = 80;

pub struct Inbox;

impl Projection for Inbox {
    fn name(&self) -> &'static str {
        NAME
    }

    /// 2: moderation notices. 3: on PostgreSQL a generation has a function that applies what
    /// comments make in one call (made with its tables, so a live one is rebuilt to get it).
    /// 4: the notifications of following are read from stretches of following, not written.
    /// 5: PostgreSQL's function takes each kind of row in arrays of its own (a new argument
    /// list, so a live generation is rebuilt to get it, as for 3).
    fn version(&self) -> u32 {
        5
    }

    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        let mut changes = self.changes(envelope, event);
        if envelope.position.is_multiple_of(PRUNE_EVERY) {
            changes.push(Change::Inbox(InboxChange::Prune {
                before: envelope.occurred_at - Duration::days(RETENTION_DAYS),
            }));
        }
        changes
    }
}

impl Inbox {
    fn changes(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        let change = |c| vec![Change::Inbox(c)];
        match event {
            Event::User(UserEvent::UserUnregistered { user_id }) => {
                change(InboxChange::ForgetUser { user_id: *user_id })
            }
            Event::User(UserEvent::NotificationsRead { user_id, up_to }) => match up_to.get() {
                Some(up_to) => change(InboxChange::MarkRead {
                    user_id: *user_id,
                    up_to: *up_to,
                }),
                None => vec![],
            },
            Event::User(UserEvent::FavouriteSet { user_id, favourite }) => match favourite.get() {
                Some(f) => change(InboxChange::SetFavourite {
                    user_id: *user_id,
                    post_id: f.post_id,
                    folder: f.folder.clone(),
                    position: envelope.position,
                }),
                None => vec![],
            },
            Event::User(UserEvent::FavouriteRemoved { user_id, post_id }) => match post_id.get() {
                Some(p) => change(InboxChange::RemoveFavourite {
                    user_id: *user_id,
                    post_id: *p,
                }),
                None => vec![],
            },
            Event::Post(PostEvent::PostPublished {
                post_id, author, ..
            }) => {
                let mut out = Vec::new();
                if let Some(user_id) = author.user_id() {
                    out.push(Change::Inbox(InboxChange::AutoFollow {
                        post_id: *post_id,
                        user_id,
                        position: envelope.position,
                    }));
                }
                if let Some(user_id) = crate::feed::named_author(author) {
                    out.push(Change::Inbox(InboxChange::NamedAuthor {
                        item: post_id.as_uuid(),
                        post_id: *post_id,
                        user_id,
                    }));
                }
                out
            }
            Event::Post(PostEvent::CommentAdded {
                post_id,
                comment_id,
                author,
                body,
                addressee,
                reply_to,
                ..
            }) => {
                let commenter = author.user_id();
                let mut out = vec![Change::Inbox(InboxChange::Notify {
                    seq: envelope.position,
                    post_id: *post_id,
                    comment_id: *comment_id,
                    commenter,
                    addressee: addressee
                        .as_ref()
                        .and_then(|a| a.get().copied())
                        .filter(|a| Some(*a) != commenter),
                    answers: reply_to.map_or(post_id.as_uuid(), |c| c.as_uuid()),
                    name: shown_name(author),
                    excerpt: body.chars().take(EXCERPT).collect(),
                    at: envelope.occurred_at,
                })];
                if let Some(user_id) = crate::feed::named_author(author) {
                    out.push(Change::Inbox(InboxChange::NamedAuthor {
                        item: comment_id.as_uuid(),
                        post_id: *post_id,
                        user_id,
                    }));
                }
                if let Some(user_id) = commenter {
                    out.push(Change::Inbox(InboxChange::AutoFollow {
                        post_id: *post_id,
                        user_id,
                        position: envelope.position,
                    }));
                }
                out
            }
            Event::Post(PostEvent::FollowSet {
                post_id,
                follower,
                following,
                ..
            }) => match follower.get() {
                Some(user_id) => change(InboxChange::SetFollow {
                    post_id: *post_id,
                    user_id: *user_id,
                    following: *following,
                    position: envelope.position,
                }),
                None => vec![],
            },
            Event::Post(PostEvent::CommentDeleted { comment_id, .. }) => {
                change(InboxChange::Retract {
                    comment_id: *comment_id,
                })
            }
            Event::Post(PostEvent::PostDeleted { post_id, .. }) => {
                change(InboxChange::ForgetPost { post_id: *post_id })
            }
            Event::Post(event) if event.moderated().is_some() => {
                let Some(m) = event.moderated() else {
                    return vec![];
                };
                let notice = match m.act {
                    Act::Fold => "folded",
                    Act::Unfold => "unfolded",
                    Act::Remove => "removed",
                    Act::Restore => "restored",
                };
                let (post_id, comment_id) = (m.item.post_id, m.item.comment_id);
                change(InboxChange::Notice {
                    seq: envelope.position,
                    post_id,
                    comment_id,
                    item: comment_id.map_or(post_id.as_uuid(), |c| c.as_uuid()),
                    author: m.author.and_then(|a| a.get().copied()),
                    notice: notice.to_owned(),
                    reason: m.reason.code().to_owned(),
                    ends_at: None,
                    at: envelope.occurred_at,
                })
            }
            // The subject, read from the ledger, is told; nobody else is.
            Event::Sanction(SanctionEvent::SanctionImposed {
                item,
                reason,
                subject,
                terms,
                ..
            }) => match (subject.get(), terms.get()) {
                (Some(user), Some(terms)) => change(InboxChange::Notice {
                    seq: envelope.position,
                    post_id: item.post_id,
                    comment_id: item.comment_id,
                    item: item
                        .comment_id
                        .map_or(item.post_id.as_uuid(), |c| c.as_uuid()),
                    author: Some(*user),
                    notice: "sanctioned".to_owned(),
                    reason: reason.code().to_owned(),
                    ends_at: terms.ends_at,
                    at: envelope.occurred_at,
                }),
                _ => vec![],
            },
            _ => vec![],
        }
    }
}
