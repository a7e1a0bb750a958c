//! The `comments` projection: public comment rows per post, oldest first.

mod change;
mod view;

pub use change::CommentChange;
pub use view::{CommentQueries, CommentView};

use domain::post::PostEvent;
use domain::user::UserEvent;
use domain::{Envelope, Event};

use crate::feed::{named_author, shown_name};
use crate::{Change, Projection};

pub struct Comments;

impl Projection for Comments {
    fn name(&self) -> &'static str {
        "comments"
    }

    /// 3: comments carry their reaction counts; 4: moderation's folding and removal.
    fn version(&self) -> u32 {
        4
    }

    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        if let Event::User(UserEvent::UserUnregistered { user_id }) = event {
            return vec![Change::Comments(CommentChange::ForgetCommentAuthor {
                user_id: *user_id,
            })];
        }
        let Event::Post(event) = event else {
            return vec![];
        };
        match event {
            PostEvent::CommentAdded {
                post_id,
                comment_id,
                author,
                anonymous,
                is_host,
                body,
                reply_to,
                ..
            } => {
                vec![Change::Comments(CommentChange::InsertComment {
                    comment_id: *comment_id,
                    post_id: *post_id,
                    position: envelope.position,
                    author_id: named_author(author),
                    author_name: shown_name(author),
                    anonymous: *anonymous,
                    // Logs written before the host rule was fixed may mark a named comment.
                    is_host: *is_host && *anonymous,
                    body: body.clone(),
                    reply_to: *reply_to,
                    created_at: envelope.occurred_at,
                })]
            }
            PostEvent::CommentDeleted {
                post_id,
                comment_id,
                ..
            } => vec![Change::Comments(CommentChange::DeleteComment {
                post_id: *post_id,
                comment_id: *comment_id,
            })],
            PostEvent::PostDeleted { post_id, .. } => {
                vec![Change::Comments(CommentChange::DeleteCommentsOf {
                    post_id: *post_id,
                })]
            }
            PostEvent::ReactionSet {
                comment_id: Some(comment_id),
                likes,
                dislikes,
                ..
            } => vec![Change::Comments(CommentChange::SetReactions {
                comment_id: *comment_id,
                likes: crate::feed::count(*likes),
                dislikes: crate::feed::count(*dislikes),
            })],
            PostEvent::ItemFolded {
                post_id,
                comment_id: Some(comment_id),
                reason,
                ..
            } => vec![Change::Comments(CommentChange::Fold {
                post_id: *post_id,
                comment_id: *comment_id,
                reason: Some(reason.code().to_owned()),
            })],
            PostEvent::ItemUnfolded {
                post_id,
                comment_id: Some(comment_id),
                ..
            } => vec![Change::Comments(CommentChange::Fold {
                post_id: *post_id,
                comment_id: *comment_id,
                reason: None,
            })],
            PostEvent::ItemRemoved {
                post_id,
                comment_id: Some(comment_id),
                ..
            } => vec![Change::Comments(CommentChange::Remove {
                post_id: *post_id,
                comment_id: *comment_id,
                removed: true,
            })],
            PostEvent::ItemRestored {
                post_id,
                comment_id: Some(comment_id),
                ..
            } => vec![Change::Comments(CommentChange::Remove {
                post_id: *post_id,
                comment_id: *comment_id,
                removed: false,
            })],
            PostEvent::PostPublished { .. }
            | PostEvent::ItemReported { .. }
            | PostEvent::ItemFolded { .. }
            | PostEvent::ItemUnfolded { .. }
            | PostEvent::ItemRemoved { .. }
            | PostEvent::ItemRestored { .. }
            | PostEvent::ReactionSet { .. }
            | PostEvent::PollOpened { .. }
            | PostEvent::PollVoted { .. }
            | PostEvent::FollowSet { .. } => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Feed;
    use domain::post::Author;
    use domain::{
        AuthorToken, CommentId, DomainEvent, Metadata, Personal, PostId, StreamId, UserId,
    };
    use uuid::Uuid;

    fn anonymous(user: UserId, pseudonym: &str) -> Author {
        let token = AuthorToken::new("t1");
        Author::Anonymous {
            user_id: Personal::new(token.key_ref(), user),
            token,
            pseudonym: pseudonym.into(),
        }
    }

    fn envelope(position: u64, event: &PostEvent) -> (Envelope, Event) {
        let schema = event.schema();
        let (t, data) = event.encode();
        let env = Envelope {
            position,
            event_id: Uuid::now_v7(),
            stream: StreamId::parse("post-1").unwrap(),
            version: position,
            event_type: t.into(),
            schema,
            occurred_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            data,
            metadata: Metadata::default(),
        };
        let decoded = Event::decode(&env).unwrap();
        (env, decoded)
    }

    #[test]
    fn anonymous_content_never_reaches_public_changes_with_its_author() {
        let author = UserId::new(Uuid::from_u128(0xdead_beef));
        let post_id = PostId::new(Uuid::from_u128(1));
        let events = [
            PostEvent::PostPublished {
                post_id,
                author: anonymous(author, "洞主"),
                anonymous: true,
                title: None,
                body: "b".into(),
                tags: vec![],
            },
            PostEvent::CommentAdded {
                post_id,
                comment_id: CommentId::new(Uuid::from_u128(2)),
                author: anonymous(author, "洞主"),
                anonymous: true,
                is_host: true,
                body: "c".into(),
                reply_to: None,
                new_commenter: true,
                addressee: None,
            },
        ];
        for (i, e) in events.iter().enumerate() {
            let (env, ev) = envelope(i as u64 + 1, e);
            for change in Feed
                .apply(&env, &ev)
                .into_iter()
                .chain(Comments.apply(&env, &ev))
            {
                assert!(
                    !format!("{change:?}").contains(&author.to_string()),
                    "{change:?}"
                );
            }
        }
    }

    #[test]
    fn deleting_a_post_removes_its_comments() {
        let post_id = PostId::new(Uuid::from_u128(1));
        let (env, ev) = envelope(
            9,
            &PostEvent::PostDeleted {
                post_id,
                deleted_by: None,
                by_admin: false,
            },
        );
        assert_eq!(
            Comments.apply(&env, &ev),
            vec![Change::Comments(CommentChange::DeleteCommentsOf {
                post_id
            })]
        );
        assert_eq!(
            Feed.apply(&env, &ev),
            vec![Change::Feed(crate::FeedChange::DeletePost { post_id })]
        );
    }
}
