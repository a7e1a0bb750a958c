//! The vocabulary projections use to describe read-model writes, independent of any database:
//! one enum per model, each defined beside its projection (`users/change.rs`,
//! `feed/change.rs`, `comments/change.rs`, `tasks`, `stats`), gathered in [`Change`].
//!
//! Public rows never carry the author of anonymous content (ARCHITECTURE.md §6): a post's or
//! comment's `author_id` is set for named content only.

#[cfg(test)]
use std::collections::BTreeMap;
use std::collections::HashMap;

use domain::PostId;

use crate::FeedChange;

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
}
