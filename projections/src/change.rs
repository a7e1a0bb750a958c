//! The vocabulary projections use to describe read-model writes, independent of any database.
//!
//! Public rows never carry the author of anonymous content (ARCHITECTURE.md §6): the changes
//! below have no author id field at all for posts and comments.

#[cfg(test)]
use std::collections::BTreeMap;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::{CommentId, Position, PostId, SessionId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    // users
    InsertUser {
        user_id: UserId,
        username: String,
        email: String,
        registered_at: DateTime<Utc>,
    },
    SetAdmin {
        user_id: UserId,
    },
    InsertSession {
        session_id: SessionId,
        user_id: UserId,
        token_hash: String,
        expires_at: DateTime<Utc>,
    },
    EndSession {
        session_id: SessionId,
    },
    /// The user unregistered: their account row and every session go.
    DeleteUser {
        user_id: UserId,
    },
    // feed
    InsertPost {
        post_id: PostId,
        position: Position,
        /// The author of a *named* post (private column, for [`Change::ForgetPostAuthor`]);
        /// always `None` for anonymous posts.
        author_id: Option<UserId>,
        author_name: String,
        anonymous: bool,
        title: Option<String>,
        body: String,
        tags: Vec<String>,
        created_at: DateTime<Utc>,
    },
    DeletePost {
        post_id: PostId,
    },
    /// The named posts of a user who unregistered show [`crate::DELETED_USER`].
    ForgetPostAuthor {
        user_id: UserId,
    },
    /// Adds `delta` to a post's comment count; `active_at`, if given, becomes its last activity.
    CountComment {
        post_id: PostId,
        delta: i64,
        active_at: Option<DateTime<Utc>>,
    },
    // comments
    InsertComment {
        comment_id: CommentId,
        post_id: PostId,
        position: Position,
        /// The author of a *named* comment (private column); always `None` when anonymous.
        author_id: Option<UserId>,
        author_name: String,
        anonymous: bool,
        is_host: bool,
        body: String,
        reply_to: Option<CommentId>,
        created_at: DateTime<Utc>,
    },
    DeleteComment {
        post_id: PostId,
        comment_id: CommentId,
    },
    DeleteCommentsOf {
        post_id: PostId,
    },
    /// The named comments of a user who unregistered show [`crate::DELETED_USER`].
    ForgetCommentAuthor {
        user_id: UserId,
    },
    /// The `tasks` projection's writes (models, workers, tasks).
    Tasks(crate::tasks::TaskChange),
    /// The `stats` projection's writes (counters, activity, task timings).
    Stats(crate::stats::StatsChange),
}

/// Merges a batch's comment-count updates per post, keeping every other change in place, so a
/// busy post costs one row update per batch instead of one per comment. A post's pending
/// count is written before any other change to that post, so applying the result equals
/// applying `changes` one by one. Statistics counters and activity marks are merged too (see
/// `stats::Merge`).
pub fn coalesce(changes: Vec<Change>) -> Vec<Change> {
    let mut out = Vec::with_capacity(changes.len());
    // Pending count per post, in order of first appearance.
    let mut pending: Vec<Option<Change>> = Vec::new();
    let mut slot: HashMap<PostId, usize> = HashMap::new();
    let mut stats = crate::stats::Merge::default();
    let flush = |post: &PostId,
                 out: &mut Vec<Change>,
                 pending: &mut Vec<Option<Change>>,
                 slot: &mut HashMap<PostId, usize>| {
        if let Some(i) = slot.remove(post)
            && let Some(c) = pending[i].take()
        {
            out.push(c);
        }
    };
    for change in changes {
        match change {
            Change::CountComment {
                post_id,
                delta,
                active_at,
            } => match slot.get(&post_id) {
                Some(&i) => {
                    if let Some(Change::CountComment {
                        delta: d,
                        active_at: a,
                        ..
                    }) = &mut pending[i]
                    {
                        *d += delta;
                        if active_at.is_some() {
                            *a = active_at;
                        }
                    }
                }
                None => {
                    slot.insert(post_id, pending.len());
                    pending.push(Some(Change::CountComment {
                        post_id,
                        delta,
                        active_at,
                    }));
                }
            },
            Change::InsertPost { post_id, .. } | Change::DeletePost { post_id } => {
                flush(&post_id, &mut out, &mut pending, &mut slot);
                out.push(change);
            }
            Change::Stats(change) => out.extend(stats.absorb(change).map(Change::Stats)),
            other => out.push(other),
        }
    }
    out.extend(pending.into_iter().flatten());
    out.extend(stats.into_changes().map(Change::Stats));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    /// The feed as a map: post -> (comment count, last activity), following the store's rules.
    fn run(changes: &[Change]) -> BTreeMap<PostId, (i64, i64)> {
        let mut feed = BTreeMap::new();
        for c in changes {
            match c {
                Change::InsertPost {
                    post_id,
                    created_at,
                    ..
                } => {
                    feed.entry(*post_id).or_insert((0, created_at.timestamp()));
                }
                Change::DeletePost { post_id } => {
                    feed.remove(post_id);
                }
                Change::CountComment {
                    post_id,
                    delta,
                    active_at,
                } => {
                    if let Some((n, at)) = feed.get_mut(post_id) {
                        *n += delta;
                        if let Some(a) = active_at {
                            *at = a.timestamp();
                        }
                    }
                }
                _ => {}
            }
        }
        feed
    }

    fn change() -> impl Strategy<Value = Change> {
        let post = (0u128..4).prop_map(|n| PostId::new(Uuid::from_u128(n)));
        let at = (0i64..1000).prop_map(|s| DateTime::from_timestamp(s, 0).expect("a time"));
        prop_oneof![
            (post.clone(), at.clone()).prop_map(|(post_id, created_at)| Change::InsertPost {
                post_id,
                position: 1,
                author_id: None,
                author_name: "a".into(),
                anonymous: true,
                title: None,
                body: "b".into(),
                tags: vec![],
                created_at,
            }),
            post.clone()
                .prop_map(|post_id| Change::DeletePost { post_id }),
            (post, -1i64..=1, proptest::option::of(at)).prop_map(|(post_id, delta, active_at)| {
                Change::CountComment {
                    post_id,
                    delta,
                    active_at,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn coalescing_changes_nothing_but_the_number_of_writes(changes in prop::collection::vec(change(), 0..60)) {
            let merged = coalesce(changes.clone());
            prop_assert!(merged.len() <= changes.len());
            prop_assert_eq!(run(&merged), run(&changes));
        }
    }

    #[test]
    fn counts_of_one_post_become_one_write() {
        let post_id = PostId::new(Uuid::from_u128(1));
        let at = |s| Some(DateTime::from_timestamp(s, 0).expect("a time"));
        let merged = coalesce(vec![
            Change::CountComment {
                post_id,
                delta: 1,
                active_at: at(1),
            },
            Change::CountComment {
                post_id,
                delta: 1,
                active_at: at(2),
            },
            Change::CountComment {
                post_id,
                delta: -1,
                active_at: None,
            },
        ]);
        assert_eq!(
            merged,
            vec![Change::CountComment {
                post_id,
                delta: 1,
                active_at: at(2)
            }]
        );
    }
}
