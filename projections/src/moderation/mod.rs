//! The `moderation` projection: the public moderation log, the moderators' queue of reported
//! items, and the removals whose authors are still to be sanctioned.
//!
//! Nothing shown here names a user. Reports keep their reason and text, and their reporter in
//! a private column that no query reads (so that a reporter who leaves takes their text
//! along, as a rebuild, which can no longer open it, would); acts keep the role of whoever
//! acted; sanctions keep the item they were for. So what the log (public) and the queue
//! (moderators) show is shown as it is.

mod change;
mod view;

pub use change::ModerationChange;
pub use view::{LogEntry, ModerationQueries, QueueItem};

use domain::moderation::{Act, Item, Reason, Role};
use domain::post::PostEvent;
use domain::sanction::SanctionEvent;
use domain::user::UserEvent;
use domain::{Envelope, Event};

use crate::{Change, Projection};

/// The projection's name.
pub const NAME: &str = "moderation";

pub struct Moderation;

fn log(
    envelope: &Envelope,
    act: &str,
    item: Item,
    reason: Reason,
    note: Option<&String>,
    by: Role,
) -> Change {
    Change::Moderation(ModerationChange::Log {
        position: envelope.position,
        act: act.to_owned(),
        item,
        reason: reason.code().to_owned(),
        note: note.cloned(),
        role: by.as_str().to_owned(),
        at: envelope.occurred_at,
    })
}

impl Projection for Moderation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        let item = |post_id, comment_id| Item {
            post_id,
            comment_id,
        };
        match event {
            Event::User(UserEvent::UserUnregistered { user_id }) => {
                vec![Change::Moderation(ModerationChange::ForgetReporter {
                    user_id: *user_id,
                })]
            }
            Event::Post(PostEvent::ItemReported {
                post_id,
                comment_id,
                reporter,
                reason,
                text,
                reports,
                weight,
            }) => vec![Change::Moderation(ModerationChange::Report {
                position: envelope.position,
                item: item(*post_id, *comment_id),
                reporter: reporter.get().copied(),
                reason: reason.code().to_owned(),
                text: text.as_ref().and_then(|t| t.get().cloned()),
                reports: crate::feed::count(*reports),
                weight: crate::feed::count(*weight),
                at: envelope.occurred_at,
            })],
            Event::Post(event) if event.moderated().is_some() => {
                let Some(m) = event.moderated() else {
                    return vec![];
                };
                let (verb, state) = match m.act {
                    Act::Fold => (
                        "fold",
                        ModerationChange::Fold {
                            item: m.item,
                            reason: Some(m.reason.code().to_owned()),
                        },
                    ),
                    Act::Unfold => (
                        "unfold",
                        ModerationChange::Fold {
                            item: m.item,
                            reason: None,
                        },
                    ),
                    Act::Remove | Act::Restore => (
                        if m.act == Act::Remove {
                            "remove"
                        } else {
                            "restore"
                        },
                        ModerationChange::Remove {
                            item: m.item,
                            removed: m.act == Act::Remove,
                            sanction_due: m.sanction,
                            reason: m.reason.code().to_owned(),
                            role: m.by.as_str().to_owned(),
                        },
                    ),
                };
                vec![
                    log(envelope, verb, m.item, m.reason, m.note, m.by),
                    Change::Moderation(state),
                ]
            }
            Event::Sanction(SanctionEvent::SanctionImposed {
                item, reason, by, ..
            }) => vec![
                log(envelope, "sanction", *item, *reason, None, *by),
                Change::Moderation(ModerationChange::Sanctioned { item: *item }),
            ],
            Event::Sanction(SanctionEvent::AppealDecided {
                item, upheld, by, ..
            }) => {
                let act = if *upheld { "uphold" } else { "overturn" };
                vec![log(envelope, act, *item, Reason::Other, None, *by)]
            }
            _ => vec![],
        }
    }
}
