//! The vocabulary projections use to describe read-model writes, independent of any database:
//! one enum per model, each defined beside its projection (`users/change.rs`,
//! `feed/change.rs`, `comments/change.rs`, `tasks`, `stats`), gathered in [`Change`].
//!
//! Public rows never carry the author of anonymous content (ARCHITECTURE.md §6): a post's or
//! comment's `author_id` is set for named content only.

#[cfg(test)]
use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};

use domain::{PostId, UserId};

use crate::{FeedChange, InboxChange};

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The `users` projection's writes (accounts, sessions).
    Users(crate::users::UserChange),
    /// The `feed` projection's writes (posts, their counts).
    Feed(crate::feed::FeedChange),
    /// The `comments` projection's writes.
    Comments(crate::comments::CommentChange),
    /// The `tasks` projection's writes (models, workers, tasks).
    Tasks(crate::tasks::TaskChange),
    /// The `stats` projection's writes (counters, activity, task timings).
    Stats(crate::stats::StatsChange),
    /// The `inbox` projection's writes (follows, notifications).
    Inbox(crate::inbox::InboxChange),
    Moderation(crate::moderation::ModerationChange),
}

/// Merges a batch's comment-count updates per post, keeping every other change in place, so a
/// busy post costs one row update per batch instead of one per comment. A post's pending
/// count is written before any other change to that post, so applying the result equals
/// applying `changes` one by one. Statistics counters and activity marks are merged too (see
/// `stats::Merge`), and a follow on commenting is dropped where an earlier change of the batch
/// already made the user follow (or choose about) the post: a busy commenter's comments cost
/// one follow per batch, not one each.
pub fn coalesce(changes: Vec<Change>) -> Vec<Change> {
    let mut out = Vec::with_capacity(changes.len());
    // Pending count per post, in order of first appearance.
    let mut pending: Vec<Option<Change>> = Vec::new();
    let mut slot: HashMap<PostId, usize> = HashMap::new();
    let mut stats = crate::stats::Merge::default();
    // Who follows which post, or chose about it, by an earlier change of this batch: a later
    // follow on commenting changes nothing for them (it only ever writes what is missing).
    let mut followed: HashSet<(UserId, PostId)> = HashSet::new();
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
            Change::Feed(FeedChange::CountComment {
                post_id,
                delta,
                commenters,
                active_at,
            }) => match slot.get(&post_id) {
                Some(&i) => {
                    if let Some(Change::Feed(FeedChange::CountComment {
                        delta: d,
                        commenters: n,
                        active_at: a,
                        ..
                    })) = &mut pending[i]
                    {
                        *d += delta;
                        *n += commenters;
                        if active_at.is_some() {
                            *a = active_at;
                        }
                    }
                }
                None => {
                    slot.insert(post_id, pending.len());
                    pending.push(Some(Change::Feed(FeedChange::CountComment {
                        post_id,
                        delta,
                        commenters,
                        active_at,
                    })));
                }
            },
            Change::Feed(FeedChange::InsertPost { post_id, .. })
            | Change::Feed(FeedChange::DeletePost { post_id }) => {
                flush(&post_id, &mut out, &mut pending, &mut slot);
                out.push(change);
            }
            Change::Stats(change) => out.extend(stats.absorb(change).map(Change::Stats)),
            Change::Inbox(InboxChange::AutoFollow {
                post_id, user_id, ..
            }) if !followed.insert((user_id, post_id)) => {}
            Change::Inbox(
                InboxChange::AutoFollow {
                    post_id, user_id, ..
                }
                | InboxChange::SetFollow {
                    post_id, user_id, ..
                },
            ) => {
                followed.insert((user_id, post_id));
                out.push(change);
            }
            // Forgetting a post or a user deletes their follows: a follow after it counts again.
            Change::Inbox(InboxChange::ForgetPost { post_id }) => {
                followed.retain(|(_, p)| *p != post_id);
                out.push(change);
            }
            Change::Inbox(InboxChange::ForgetUser { user_id }) => {
                followed.retain(|(u, _)| *u != user_id);
                out.push(change);
            }
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
    use chrono::DateTime;
    use proptest::prelude::*;
    use uuid::Uuid;

    /// The feed as a map: post -> (comment count, commenters, last activity), following the
    /// store's rules.
    fn run(changes: &[Change]) -> BTreeMap<PostId, (i64, i64, i64)> {
        let mut feed = BTreeMap::new();
        for c in changes {
            match c {
                Change::Feed(FeedChange::InsertPost {
                    post_id,
                    created_at,
                    ..
                }) => {
                    feed.entry(*post_id)
                        .or_insert((0, 0, created_at.timestamp()));
                }
                Change::Feed(FeedChange::DeletePost { post_id }) => {
                    feed.remove(post_id);
                }
                Change::Feed(FeedChange::CountComment {
                    post_id,
                    delta,
                    commenters,
                    active_at,
                }) => {
                    if let Some((n, c, at)) = feed.get_mut(post_id) {
                        *n += delta;
                        *c += commenters;
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
            (post.clone(), at.clone()).prop_map(|(post_id, created_at)| Change::Feed(
                FeedChange::InsertPost {
                    post_id,
                    position: 1,
                    author_id: None,
                    author_name: "a".into(),
                    anonymous: true,
                    title: None,
                    body: "b".into(),
                    tags: vec![],
                    created_at,
                }
            )),
            post.clone()
                .prop_map(|post_id| Change::Feed(FeedChange::DeletePost { post_id })),
            (post, -1i64..=1, 0i64..=1, proptest::option::of(at)).prop_map(
                |(post_id, delta, commenters, active_at)| {
                    Change::Feed(FeedChange::CountComment {
                        post_id,
                        delta,
                        commenters,
                        active_at,
                    })
                },
            ),
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
            Change::Feed(FeedChange::CountComment {
                post_id,
                delta: 1,
                commenters: 1,
                active_at: at(1),
            }),
            Change::Feed(FeedChange::CountComment {
                post_id,
                delta: 1,
                commenters: 1,
                active_at: at(2),
            }),
            Change::Feed(FeedChange::CountComment {
                post_id,
                delta: -1,
                commenters: 0,
                active_at: None,
            }),
        ]);
        assert_eq!(
            merged,
            vec![Change::Feed(FeedChange::CountComment {
                post_id,
                delta: 1,
                commenters: 2,
                active_at: at(2)
            })]
        );
    }

    /// Follows and their stretches as the store keeps them (`tables/follows.rs`): a row per
    /// user and post (following, explicit, position), and stretches (since, ended).
    #[derive(Debug, Default, PartialEq)]
    struct Follows {
        rows: BTreeMap<(u128, u128), (bool, bool, u64)>,
        spans: Vec<(u128, u128, u64, Option<u64>)>,
    }

    fn follows(changes: &[Change]) -> Follows {
        let mut f = Follows::default();
        for c in changes {
            let Change::Inbox(c) = c else { continue };
            match c {
                InboxChange::AutoFollow {
                    post_id,
                    user_id,
                    position,
                } => {
                    let key = (user_id.as_uuid().as_u128(), post_id.as_uuid().as_u128());
                    if !f.rows.contains_key(&key) {
                        f.spans.push((key.0, key.1, *position, None));
                        f.rows.insert(key, (true, false, *position));
                    }
                }
                InboxChange::SetFollow {
                    post_id,
                    user_id,
                    following,
                    position,
                } => {
                    let key = (user_id.as_uuid().as_u128(), post_id.as_uuid().as_u128());
                    let open = f
                        .spans
                        .iter_mut()
                        .filter(|s| (s.0, s.1) == key && s.3.is_none());
                    if *following {
                        if open.count() == 0 {
                            f.spans.push((key.0, key.1, *position, None));
                        }
                    } else {
                        open.for_each(|s| s.3 = Some(*position));
                    }
                    f.rows.insert(key, (*following, true, *position));
                }
                InboxChange::ForgetPost { post_id } => {
                    let p = post_id.as_uuid().as_u128();
                    f.rows.retain(|k, _| k.1 != p);
                    f.spans.retain(|s| s.1 != p);
                }
                InboxChange::ForgetUser { user_id } => {
                    let u = user_id.as_uuid().as_u128();
                    f.rows.retain(|k, _| k.0 != u);
                    f.spans.retain(|s| s.0 != u);
                }
                _ => {}
            }
        }
        f
    }

    fn follow_change() -> impl Strategy<Value = Change> {
        let user = (0u128..3).prop_map(|n| UserId::new(Uuid::from_u128(n)));
        let post = (0u128..3).prop_map(|n| PostId::new(Uuid::from_u128(n)));
        prop_oneof![
            4 => (user.clone(), post.clone(), 1u64..1000).prop_map(|(user_id, post_id, position)| {
                Change::Inbox(InboxChange::AutoFollow { post_id, user_id, position })
            }),
            2 => (user.clone(), post.clone(), any::<bool>(), 1u64..1000).prop_map(
                |(user_id, post_id, following, position)| Change::Inbox(InboxChange::SetFollow {
                    post_id,
                    user_id,
                    following,
                    position,
                })
            ),
            1 => post.prop_map(|post_id| Change::Inbox(InboxChange::ForgetPost { post_id })),
            1 => user.prop_map(|user_id| Change::Inbox(InboxChange::ForgetUser { user_id })),
        ]
    }

    proptest! {
        #[test]
        fn dropping_follows_that_change_nothing_leaves_the_follows_as_they_were(
            changes in proptest::collection::vec(follow_change(), 0..40)
        ) {
            let merged = coalesce(changes.clone());
            prop_assert_eq!(follows(&merged), follows(&changes));
        }
    }

    #[test]
    fn a_busy_commenter_follows_once_per_batch() {
        let (user_id, post_id) = (
            UserId::new(Uuid::from_u128(1)),
            PostId::new(Uuid::from_u128(2)),
        );
        let follow = |position| {
            Change::Inbox(InboxChange::AutoFollow {
                post_id,
                user_id,
                position,
            })
        };
        let merged = coalesce(vec![
            follow(1),
            follow(2),
            Change::Inbox(InboxChange::ForgetUser { user_id }),
            follow(4),
            follow(5),
        ]);
        assert_eq!(
            merged,
            vec![
                follow(1),
                Change::Inbox(InboxChange::ForgetUser { user_id }),
                follow(4)
            ]
        );
    }
}
