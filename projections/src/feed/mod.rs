//! The `feed` projection: one public row per live post, newest first, with its comment count.

mod change;
mod view;

pub use change::FeedChange;
pub use view::{FeedQueries, HotFormula, PollView, PostView};

use domain::post::{Author, PostEvent};
use domain::user::UserEvent;
use domain::{Envelope, Event, UserId};

use crate::{Change, DELETED_USER, Projection};

/// The id of a named author (public anyway); `None` for anonymous content.
pub(crate) fn named_author(author: &Author) -> Option<UserId> {
    match author {
        Author::Named { user_id, .. } => Some(*user_id),
        Author::Anonymous { .. } => None,
    }
}

/// The name content shows: the pseudonym, the username, or [`DELETED_USER`] when the named
/// author's key is gone.
pub(crate) fn shown_name(author: &Author) -> String {
    author.display_name().unwrap_or(DELETED_USER).to_owned()
}

pub struct Feed;

/// A count as the read models' integer columns hold it.
pub(crate) fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Projection for Feed {
    fn name(&self) -> &'static str {
        "feed"
    }

    /// 3: posts carry their reaction counts and their poll; 4: their explicit followers; 5:
    /// moderation's folding and removal.
    fn version(&self) -> u32 {
        5
    }

    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        if let Event::User(UserEvent::UserUnregistered { user_id }) = event {
            return vec![Change::Feed(FeedChange::ForgetPostAuthor {
                user_id: *user_id,
            })];
        }
        let Event::Post(event) = event else {
            return vec![];
        };
        match event {
            PostEvent::PostPublished {
                post_id,
                author,
                anonymous,
                title,
                body,
                tags,
                ..
            } => {
                vec![Change::Feed(FeedChange::InsertPost {
                    post_id: *post_id,
                    position: envelope.position,
                    author_id: named_author(author),
                    author_name: shown_name(author),
                    anonymous: *anonymous,
                    title: title.clone(),
                    body: body.clone(),
                    tags: tags.clone(),
                    created_at: envelope.occurred_at,
                })]
            }
            PostEvent::CommentAdded {
                post_id,
                new_commenter,
                ..
            } => {
                vec![Change::Feed(FeedChange::CountComment {
                    post_id: *post_id,
                    delta: 1,
                    commenters: i64::from(*new_commenter),
                    active_at: Some(envelope.occurred_at),
                })]
            }
            PostEvent::CommentDeleted { post_id, .. } => {
                vec![Change::Feed(FeedChange::CountComment {
                    post_id: *post_id,
                    delta: -1,
                    commenters: 0,
                    active_at: None,
                })]
            }
            PostEvent::PostDeleted { post_id, .. } => {
                vec![Change::Feed(FeedChange::DeletePost { post_id: *post_id })]
            }
            PostEvent::ReactionSet {
                post_id,
                comment_id: None,
                reactor,
                value,
                likes,
                dislikes,
            } => vec![
                Change::Feed(FeedChange::SetReactions {
                    post_id: *post_id,
                    likes: count(*likes),
                    dislikes: count(*dislikes),
                }),
                Change::Feed(FeedChange::Mark {
                    handle: reactor.as_str().to_owned(),
                    post_id: *post_id,
                    value: (*value != 0).then_some(i64::from(*value)),
                }),
            ],
            PostEvent::ReactionSet { .. } => vec![],
            PostEvent::PollOpened { post_id, options } => {
                vec![Change::Feed(FeedChange::OpenPoll {
                    post_id: *post_id,
                    options: options.clone(),
                })]
            }
            PostEvent::FollowSet {
                post_id, followers, ..
            } => vec![Change::Feed(FeedChange::SetFollowers {
                post_id: *post_id,
                followers: count(*followers),
            })],
            PostEvent::ItemFolded {
                post_id,
                comment_id: None,
                reason,
                ..
            } => vec![Change::Feed(FeedChange::Fold {
                post_id: *post_id,
                reason: Some(reason.code().to_owned()),
            })],
            PostEvent::ItemUnfolded {
                post_id,
                comment_id: None,
                ..
            } => vec![Change::Feed(FeedChange::Fold {
                post_id: *post_id,
                reason: None,
            })],
            PostEvent::ItemRemoved {
                post_id,
                comment_id: None,
                ..
            } => vec![Change::Feed(FeedChange::Remove {
                post_id: *post_id,
                removed: true,
            })],
            PostEvent::ItemRestored {
                post_id,
                comment_id: None,
                ..
            } => vec![Change::Feed(FeedChange::Remove {
                post_id: *post_id,
                removed: false,
            })],
            // A removed comment leaves its post's count until it is restored.
            PostEvent::ItemRemoved { post_id, .. } | PostEvent::ItemRestored { post_id, .. } => {
                let delta = if matches!(event, PostEvent::ItemRemoved { .. }) {
                    -1
                } else {
                    1
                };
                vec![Change::Feed(FeedChange::CountComment {
                    post_id: *post_id,
                    delta,
                    commenters: 0,
                    active_at: None,
                })]
            }
            PostEvent::ItemReported { .. }
            | PostEvent::ItemFolded { .. }
            | PostEvent::ItemUnfolded { .. } => vec![],
            PostEvent::PollVoted {
                post_id,
                counts,
                voter,
                option,
            } => vec![
                Change::Feed(FeedChange::SetPollCounts {
                    post_id: *post_id,
                    counts: counts.iter().map(|c| count(*c)).collect(),
                }),
                Change::Feed(FeedChange::Mark {
                    handle: voter.as_str().to_owned(),
                    post_id: *post_id,
                    value: Some(count(*option as u64)),
                }),
            ],
        }
    }
}
