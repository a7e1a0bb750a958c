//! The read-model store contract: what every `ReadModelStore` + `ForumQueries` backend must do,
//! written once and run against each (SQLite now, PostgreSQL beside it).
//!
//! A backend's test file implements [`Harness`] and invokes [`read_model_contract!`].

#![allow(dead_code)]

use projections::{CommentChange, FeedChange, InboxChange, UserChange};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::WorkerId;
use domain::ids::TaskId;
use domain::model::{ModelName, ModelSpec};
use domain::task::TaskState;
use domain::{CommentId, PostId, SessionId, UserId};
use infra::kafka::RelayCheckpoints;
use projections::ports::Page;
use projections::stats::{FinalState, Metric, Percentiles, StatsChange, TaskFigures};
use projections::tasks::{TaskChange, TaskQueries, WebhookState};
use projections::{Change, ForumQueries, Promotion, ReadModelError, ReadModelStore, StatsQueries};
use serde_json::json;
use uuid::Uuid;

/// Both sides of a read-model backend, and the relay's checkpoints it keeps.
pub trait ReadModels:
    ReadModelStore + ForumQueries + StatsQueries + TaskQueries + RelayCheckpoints
{
}
impl<T> ReadModels for T where
    T: ReadModelStore + ForumQueries + StatsQueries + TaskQueries + RelayCheckpoints
{
}

pub type Store = Arc<dyn ReadModels>;

/// Makes a fresh, empty store for one test, or `None` when the backend's server is not
/// configured (the harness says why on stderr).
pub trait Harness: Sized + Send + Sync {
    fn create() -> impl std::future::Future<Output = Option<(Self, Store)>> + Send;
}

macro_rules! read_model_contract {
    ($harness:ty) => {
        $crate::read_model_contract::read_model_contract!(@each $harness;
            a_fresh_store_has_no_live_generation,
            first_generation_goes_live_and_serves_queries,
            feed_pages_newest_first_without_repeats,
            comments_page_oldest_first_per_post,
            deletes_remove_rows_and_counts_follow,
            reaction_counts_are_set_on_posts_and_comments,
            sessions_resolve_users_until_ended,
            replaced_generations_refuse_writes,
            promotion_waits_for_a_lagging_build,
            unfinished_builds_are_discarded,
            batching_does_not_change_the_result,
            unknown_projections_are_refused,
            a_batch_from_a_stale_checkpoint_is_refused,
            stats_without_activity_are_zeros_for_every_day,
            stats_add_up_per_day_and_in_total,
            stats_percentiles_are_nearest_rank_per_day_model_and_in_total,
            tasks_follow_their_life_from_queue_to_webhook,
            relay_checkpoints_start_at_zero_and_only_move_forward,
            forgetting_a_post_author_renames_exactly_their_named_posts,
            forgetting_a_comment_author_renames_exactly_their_named_comments,
            deleting_a_user_removes_them_and_their_sessions_only,
            sessions_of_lists_live_sessions_newest_first,
            a_session_keeps_its_device_and_its_last_seen_day_only_moves_forward,
            a_comment_page_answers_only_for_a_live_post,
            new_rows_in_one_batch_equal_new_rows_one_by_one,
            the_inbox_notifies_each_person_once_with_merged_reasons,
            a_reply_finds_the_named_author_recorded_earlier_in_its_batch,
            following_notifies_of_the_comments_made_while_one_followed,
            the_inbox_in_one_batch_equals_the_inbox_change_by_change,
            the_unread_count_stops_at_its_cap,
        );
    };
    (@each $harness:ty; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some((_harness, store)) = <$harness as $crate::read_model_contract::Harness>::create().await else {
                    return;
                };
                $crate::read_model_contract::$test(store).await;
            }
        )*
    };
}
pub(crate) use read_model_contract;

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("a time") + Duration::seconds(s)
}

fn post_id(n: u128) -> PostId {
    PostId::new(Uuid::from_u128(n))
}

fn comment_id(n: u128) -> CommentId {
    CommentId::new(Uuid::from_u128(0xc000 + n))
}

fn post(n: u128, position: u64) -> Change {
    Change::Feed(FeedChange::InsertPost {
        post_id: post_id(n),
        position,
        author_id: (!n.is_multiple_of(2)).then(|| UserId::new(Uuid::from_u128(0xa000 + n))),
        author_name: if n.is_multiple_of(2) {
            "洞主".into()
        } else {
            format!("writer{n}")
        },
        anonymous: n.is_multiple_of(2),
        title: (n.is_multiple_of(3)).then(|| format!("标题 {n}")),
        body: format!("body of post {n}: 自习室"),
        tags: vec!["study".into(), format!("t{n}")],
        created_at: t(position as i64),
    })
}

fn comment(n: u128, on: u128, position: u64) -> Vec<Change> {
    vec![Change::Comments(CommentChange::InsertComment {
        comment_id: comment_id(n),
        post_id: post_id(on),
        position,
        author_id: None,
        author_name: format!("Name{n}"),
        anonymous: true,
        is_host: n.is_multiple_of(5),
        body: format!("comment {n}"),
        reply_to: (n > 1).then(|| comment_id(n - 1)),
        created_at: t(position as i64),
    })]
}

/// Builds and promotes a first generation of `projection` holding `changes`.
async fn live_with(store: &Store, projection: &str, changes: &[Change], position: u64) -> u32 {
    let g = store
        .create_generation(projection, 1)
        .await
        .expect("create");
    store
        .apply(projection, g.number, changes, 0, position)
        .await
        .expect("apply");
    assert_eq!(
        store.promote(projection, g.number).await.expect("promote"),
        Promotion::Done
    );
    g.number
}

fn page(cursor: Option<u64>, limit: usize) -> Page {
    Page { cursor, limit }
}

pub async fn a_fresh_store_has_no_live_generation(store: Store) {
    for p in ["users", "feed", "comments"] {
        assert_eq!(store.live(p).await.expect("live"), None);
    }
}

pub async fn first_generation_goes_live_and_serves_queries(store: Store) {
    let g = store.create_generation("feed", 3).await.expect("create");
    assert_eq!((g.number, g.version, g.position), (1, 3, 0));
    assert_eq!(
        store.live("feed").await.expect("live"),
        None,
        "a building generation is not live"
    );
    store
        .apply("feed", g.number, &[post(1, 5)], 0, 5)
        .await
        .expect("apply");
    store.promote("feed", g.number).await.expect("promote");
    let live = store
        .live("feed")
        .await
        .expect("live")
        .expect("a live generation");
    assert_eq!((live.number, live.version, live.position), (1, 3, 5));
    let shown = store
        .post(post_id(1))
        .await
        .expect("post")
        .expect("the post");
    assert_eq!(shown.position, 5);
    assert_eq!(shown.author_name, "writer1");
    assert_eq!(shown.tags, vec!["study".to_string(), "t1".to_string()]);
    assert_eq!(shown.created_at, t(5));
    assert_eq!(shown.comment_count, 0);
    assert!(store.post(post_id(2)).await.expect("post").is_none());
}

pub async fn feed_pages_newest_first_without_repeats(store: Store) {
    let changes: Vec<Change> = (1..=25).map(|n| post(n, n as u64 * 2)).collect();
    live_with(&store, "feed", &changes, 50).await;
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let items = store.feed(page(cursor, 10)).await.expect("feed");
        if items.is_empty() {
            break;
        }
        cursor = items.last().map(|p| p.position);
        seen.extend(items.into_iter().map(|p| p.position));
    }
    let expected: Vec<u64> = (1..=25).rev().map(|n| n * 2).collect();
    assert_eq!(seen, expected);
}

pub async fn comments_page_oldest_first_per_post(store: Store) {
    let mut changes = Vec::new();
    for n in 1..=12 {
        changes.extend(comment(
            n,
            if !n.is_multiple_of(2) { 1 } else { 2 },
            100 + n as u64,
        ));
    }
    live_with(&store, "comments", &changes, 200).await;
    let first = store
        .comments(post_id(1), page(None, 4))
        .await
        .expect("comments");
    let positions: Vec<u64> = first.iter().map(|c| c.position).collect();
    assert_eq!(positions, vec![101, 103, 105, 107]);
    let rest = store
        .comments(post_id(1), page(Some(107), 10))
        .await
        .expect("comments");
    assert_eq!(
        rest.iter().map(|c| c.position).collect::<Vec<_>>(),
        vec![109, 111]
    );
    let c = store
        .comment(comment_id(5))
        .await
        .expect("comment")
        .expect("the comment");
    assert_eq!(
        (c.post_id, c.is_host, c.reply_to),
        (post_id(1), true, Some(comment_id(4)))
    );
    assert_eq!(c.author_name, "Name5");
    // Every column survives a batch of many comments (written as one statement where the
    // backend can), as it does one at a time.
    assert_eq!(
        (c.anonymous, c.body.as_str(), c.created_at, c.position),
        (true, "comment 5", t(105), 105)
    );
    let first = store
        .comment(comment_id(1))
        .await
        .expect("comment")
        .expect("the comment");
    assert_eq!((first.is_host, first.reply_to), (false, None));
}

pub async fn reaction_counts_are_set_on_posts_and_comments(store: Store) {
    let g = live_with(&store, "feed", &[post(1, 1), post(2, 2)], 2).await;
    let set = |likes, dislikes| {
        Change::Feed(FeedChange::SetReactions {
            post_id: post_id(1),
            likes,
            dislikes,
        })
    };
    // The last change in a batch stands; counts are set, not added.
    store
        .apply("feed", g, &[set(1, 0), set(2, 0), set(1, 1)], 2, 5)
        .await
        .expect("apply");
    let p = store
        .post(post_id(1))
        .await
        .expect("post")
        .expect("the post");
    assert_eq!((p.likes, p.dislikes), (1, 1));
    let other = store
        .post(post_id(2))
        .await
        .expect("post")
        .expect("the post");
    assert_eq!((other.likes, other.dislikes), (0, 0));

    let mut changes = comment(1, 1, 10);
    changes.extend(comment(2, 1, 11));
    let c = live_with(&store, "comments", &changes, 11).await;
    store
        .apply(
            "comments",
            c,
            &[Change::Comments(CommentChange::SetReactions {
                comment_id: comment_id(2),
                likes: 3,
                dislikes: 4,
            })],
            11,
            12,
        )
        .await
        .expect("apply");
    let c2 = store
        .comment(comment_id(2))
        .await
        .expect("comment")
        .expect("it");
    let c1 = store
        .comment(comment_id(1))
        .await
        .expect("comment")
        .expect("it");
    assert_eq!((c2.likes, c2.dislikes, c1.likes, c1.dislikes), (3, 4, 0, 0));
}

pub async fn deletes_remove_rows_and_counts_follow(store: Store) {
    let g = live_with(&store, "feed", &[post(1, 1), post(2, 2)], 2).await;
    let bumps = [
        Change::Feed(FeedChange::CountComment {
            post_id: post_id(1),
            delta: 1,
            commenters: 1,
            active_at: Some(t(10)),
        }),
        Change::Feed(FeedChange::CountComment {
            post_id: post_id(1),
            delta: 1,
            commenters: 1,
            active_at: Some(t(11)),
        }),
        Change::Feed(FeedChange::CountComment {
            post_id: post_id(1),
            delta: -1,
            commenters: 0,
            active_at: None,
        }),
    ];
    store.apply("feed", g, &bumps, 2, 12).await.expect("apply");
    let p = store
        .post(post_id(1))
        .await
        .expect("post")
        .expect("the post");
    assert_eq!((p.comment_count, p.last_activity_at), (1, t(11)));
    assert_eq!(
        p.commenters, 2,
        "commenters are counted ever, not per live comment"
    );
    store
        .apply(
            "feed",
            g,
            &[Change::Feed(FeedChange::DeletePost {
                post_id: post_id(1),
            })],
            12,
            13,
        )
        .await
        .expect("apply");
    assert!(store.post(post_id(1)).await.expect("post").is_none());
    assert_eq!(store.feed(page(None, 10)).await.expect("feed").len(), 1);

    let mut changes = comment(1, 7, 20);
    changes.extend(comment(2, 7, 21));
    changes.extend(comment(3, 8, 22));
    let c = live_with(&store, "comments", &changes, 22).await;
    store
        .apply(
            "comments",
            c,
            &[Change::Comments(CommentChange::DeleteComment {
                post_id: post_id(7),
                comment_id: comment_id(1),
            })],
            22,
            23,
        )
        .await
        .expect("apply");
    assert!(
        store
            .comment(comment_id(1))
            .await
            .expect("comment")
            .is_none()
    );
    store
        .apply(
            "comments",
            c,
            &[Change::Comments(CommentChange::DeleteCommentsOf {
                post_id: post_id(7),
            })],
            23,
            24,
        )
        .await
        .expect("apply");
    assert!(
        store
            .comments(post_id(7), page(None, 10))
            .await
            .expect("comments")
            .is_empty()
    );
    assert_eq!(
        store
            .comments(post_id(8), page(None, 10))
            .await
            .expect("comments")
            .len(),
        1
    );
    assert_eq!(
        store
            .live("comments")
            .await
            .expect("live")
            .map(|g| g.position),
        Some(24)
    );
}

pub async fn sessions_resolve_users_until_ended(store: Store) {
    let user = UserId::new(Uuid::from_u128(77));
    let session = SessionId::new(Uuid::from_u128(78));
    let changes = [
        Change::Users(UserChange::InsertUser {
            user_id: user,
            username: "ann".into(),
            email: "ann@campus.edu".into(),
            registered_at: t(1),
        }),
        Change::Users(UserChange::SetAdmin { user_id: user }),
        Change::Users(UserChange::InsertSession {
            session_id: session,
            user_id: user,
            token_hash: "h1".into(),
            expires_at: t(99),
            device: None,
            created_at: t(2),
        }),
    ];
    let g = live_with(&store, "users", &changes, 3).await;
    let found = store
        .session("h1")
        .await
        .expect("session")
        .expect("a session");
    assert_eq!((found.session_id, found.expires_at), (session, t(99)));
    assert_eq!(
        (found.user.username.as_str(), found.user.is_admin),
        ("ann", true)
    );
    let me = store.user(user).await.expect("user").expect("the user");
    assert_eq!(
        (me.email.as_str(), me.registered_at),
        ("ann@campus.edu", t(1))
    );
    assert!(store.session("h2").await.expect("session").is_none());
    store
        .apply(
            "users",
            g,
            &[Change::Users(UserChange::EndSession {
                session_id: session,
            })],
            3,
            4,
        )
        .await
        .expect("apply");
    assert!(store.session("h1").await.expect("session").is_none());
}

pub async fn replaced_generations_refuse_writes(store: Store) {
    let old = live_with(&store, "feed", &[post(1, 1)], 1).await;
    let new = store.create_generation("feed", 1).await.expect("create");
    store
        .apply("feed", new.number, &[post(1, 1), post(2, 2)], 0, 2)
        .await
        .expect("apply");
    // Until the switch, queries read the old generation.
    assert!(store.post(post_id(2)).await.expect("post").is_none());
    assert_eq!(
        store.promote("feed", new.number).await.expect("promote"),
        Promotion::Done
    );
    assert!(store.post(post_id(2)).await.expect("post").is_some());
    let refused = store.apply("feed", old, &[post(3, 3)], 1, 3).await;
    assert!(
        matches!(refused, Err(ReadModelError::Superseded { generation, .. }) if generation == old),
        "{refused:?}"
    );
    assert!(store.post(post_id(3)).await.expect("post").is_none());
    assert_eq!(
        store.live("feed").await.expect("live").map(|g| g.number),
        Some(new.number)
    );
}

pub async fn promotion_waits_for_a_lagging_build(store: Store) {
    let live = live_with(&store, "feed", &[post(1, 1), post(2, 10)], 10).await;
    let new = store.create_generation("feed", 1).await.expect("create");
    store
        .apply("feed", new.number, &[post(1, 1)], 0, 5)
        .await
        .expect("apply");
    assert_eq!(
        store.promote("feed", new.number).await.expect("promote"),
        Promotion::Behind { live_position: 10 }
    );
    assert_eq!(
        store.live("feed").await.expect("live").map(|g| g.number),
        Some(live)
    );
    store
        .apply("feed", new.number, &[post(2, 10)], 5, 10)
        .await
        .expect("apply");
    assert_eq!(
        store.promote("feed", new.number).await.expect("promote"),
        Promotion::Done
    );
    assert_eq!(store.dump("feed").await.expect("dump").len(), 2);
}

pub async fn unfinished_builds_are_discarded(store: Store) {
    live_with(&store, "comments", &comment(1, 1, 1), 1).await;
    let abandoned = store
        .create_generation("comments", 1)
        .await
        .expect("create");
    store
        .apply("comments", abandoned.number, &comment(1, 1, 1), 0, 1)
        .await
        .expect("apply");
    let next = store
        .create_generation("comments", 1)
        .await
        .expect("create");
    assert!(next.number > abandoned.number);
    let refused = store.apply("comments", abandoned.number, &[], 1, 2).await;
    assert!(
        matches!(refused, Err(ReadModelError::Superseded { .. })),
        "{refused:?}"
    );
    assert_eq!(store.dump("comments").await.expect("dump").len(), 1);
}

pub async fn batching_does_not_change_the_result(store: Store) {
    let mut all = Vec::new();
    for n in 1..=6 {
        all.push(post(n, n as u64 * 3));
        all.push(Change::Feed(FeedChange::CountComment {
            post_id: post_id(n),
            delta: 1,
            commenters: 1,
            active_at: Some(t(n as i64 * 3 + 1)),
        }));
    }
    // A run of counts for distinct posts (one multi-row statement where the backend has it),
    // and a run that names one post twice.
    for (n, delta, at) in [(1, 2, Some(t(40))), (2, 1, None), (3, -1, Some(t(41)))] {
        all.push(Change::Feed(FeedChange::CountComment {
            post_id: post_id(n),
            delta,
            commenters: delta.max(0),
            active_at: at,
        }));
    }
    all.push(Change::Feed(FeedChange::DeletePost {
        post_id: post_id(4),
    }));
    for at in [Some(t(42)), None] {
        all.push(Change::Feed(FeedChange::CountComment {
            post_id: post_id(5),
            delta: 1,
            commenters: 1,
            active_at: at,
        }));
    }
    one_batch_equals_one_by_one(&store, "feed", &all, 5).await;
}

pub async fn unknown_projections_are_refused(store: Store) {
    let refused = store.create_generation("nope", 1).await;
    assert!(
        matches!(refused, Err(ReadModelError::UnknownProjection(_))),
        "{refused:?}"
    );
}

pub async fn a_batch_from_a_stale_checkpoint_is_refused(store: Store) {
    // Two projectors of one projection read the same checkpoint; only the first may apply.
    let g = live_with(&store, "feed", &[post(1, 5)], 5).await;
    store
        .apply("feed", g, &[post(2, 7)], 5, 7)
        .await
        .expect("the first applies");
    let late = store.apply("feed", g, &[post(2, 7)], 5, 7).await;
    assert!(
        matches!(late, Err(ReadModelError::Moved { position: 7, .. })),
        "{late:?}"
    );
    let p = store
        .post(post_id(2))
        .await
        .expect("post")
        .expect("the post");
    assert_eq!(p.position, 7);
    assert_eq!(store.dump("feed").await.expect("dump").len(), 2);
    assert_eq!(
        store.live("feed").await.expect("live").map(|g| g.position),
        Some(7)
    );
}

fn day(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("a time")
        .with_timezone(&Utc)
}

fn stat(change: StatsChange) -> Change {
    Change::Stats(change)
}

fn counted(d: &str, metric: Metric, key: &str, delta: i64) -> Change {
    stat(StatsChange::Count {
        day: day(d),
        metric,
        key: key.into(),
        delta,
    })
}

fn active(d: &str, user: u128) -> Change {
    stat(StatsChange::Active {
        day: day(d),
        user_id: UserId::new(Uuid::from_u128(user)),
    })
}

fn percentiles(samples: u64, p50: u64, p95: u64) -> Percentiles {
    Percentiles {
        samples,
        p50: Some(p50),
        p95: Some(p95),
    }
}

pub async fn stats_without_activity_are_zeros_for_every_day(store: Store) {
    live_with(&store, "stats", &[], 0).await;
    assert_eq!(
        store.overview().await.expect("overview"),
        Default::default()
    );
    let days = store
        .daily(day("2026-02-27"), day("2026-03-01"))
        .await
        .expect("daily");
    assert_eq!(
        days.iter().map(|d| d.day).collect::<Vec<_>>(),
        [day("2026-02-27"), day("2026-02-28"), day("2026-03-01")]
    );
    assert!(days.iter().all(|d| d.figures == Default::default()));
}

pub async fn stats_add_up_per_day_and_in_total(store: Store) {
    let (d1, d2) = ("2026-03-01", "2026-03-02");
    let first = [
        counted(d1, Metric::Registrations, "", 1),
        counted(d1, Metric::Posts, "", 3),
        counted(d1, Metric::AnonymousPosts, "", 1),
        counted(d1, Metric::TasksPublished, "sdxl", 2),
        counted(d1, Metric::TasksPublished, "whisper", 1),
        active(d1, 1),
        active(d1, 2),
    ];
    let g = live_with(&store, "stats", &first, 7).await;
    // A later batch adds to the same counters, and marks user 1 active on d1 again.
    let second = [
        counted(d1, Metric::Registrations, "", 1),
        counted(d1, Metric::TasksPublished, "sdxl", 1),
        active(d1, 1),
        // One counter twice in one run of counters: the same as once with the sum.
        counted(d2, Metric::Comments, "", 1),
        counted(d2, Metric::Comments, "", 3),
        counted(d2, Metric::AnonymousComments, "", 3),
        counted(d2, Metric::WebhookAttempts, "", 3),
        counted(d2, Metric::WebhooksDelivered, "", 1),
        counted(d2, Metric::WebhooksAbandoned, "", 1),
        active(d2, 1),
        active(d2, 3),
    ];
    store
        .apply("stats", g, &second, 7, 17)
        .await
        .expect("apply");

    let days = store.daily(day(d1), day(d2)).await.expect("daily");
    let (one, two) = (&days[0].figures, &days[1].figures);
    assert_eq!(
        (
            one.registrations,
            one.active_users,
            one.posts,
            one.anonymous_posts
        ),
        (2, 2, 3, 1)
    );
    assert_eq!((one.comments, one.webhooks.attempts), (0, 0));
    assert_eq!(one.tasks.published, 4);
    assert_eq!(one.tasks_by_model["sdxl"].published, 3);
    assert_eq!(one.tasks_by_model["whisper"].published, 1);
    assert_eq!(
        (
            two.registrations,
            two.active_users,
            two.comments,
            two.anonymous_comments
        ),
        (0, 2, 4, 3)
    );
    assert_eq!(
        (
            two.webhooks.attempts,
            two.webhooks.delivered,
            two.webhooks.abandoned
        ),
        (3, 1, 1)
    );
    assert!(two.tasks_by_model.is_empty());

    let all = store.overview().await.expect("overview");
    assert_eq!((all.registrations, all.active_users), (2, 3));
    assert_eq!((all.posts, all.comments, all.tasks.published), (3, 4, 4));
    assert_eq!(all.webhooks, two.webhooks);
    // Days outside the range are not read.
    let later = store.daily(day(d2), day(d2)).await.expect("daily");
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].figures, *two);
}

pub async fn stats_percentiles_are_nearest_rank_per_day_model_and_in_total(store: Store) {
    let task = |n: u128| TaskId::new(Uuid::from_u128(0x7a5c_0000 + n));
    let (t0, end) = (at("2026-03-01T12:00:00Z"), at("2026-03-02T12:00:00Z"));
    let ms = Duration::milliseconds;
    let published = |n, model: &str| {
        stat(StatsChange::TaskPublished {
            task_id: task(n),
            model: model.into(),
            at: t0,
        })
    };
    let claimed = |n, at| {
        stat(StatsChange::TaskClaimed {
            task_id: task(n),
            at,
        })
    };
    let finished = |n, state, at| {
        stat(StatsChange::TaskFinished {
            task_id: task(n),
            state,
            at,
        })
    };
    let mut changes = Vec::new();
    // sdxl 1..=10: waited i * 100 ms, were claimed again (after a retry) i * 1000 ms before
    // the end; 1-6 succeeded, 7-9 failed, 10 was cancelled (so it has no run time).
    for i in 1..=10u128 {
        let i64 = i as i64;
        changes.push(published(i, "sdxl"));
        changes.push(claimed(i, t0 + ms(i64 * 100)));
        changes.push(claimed(i, end - ms(i64 * 1000)));
        let state = match i {
            1..=6 => FinalState::Succeeded,
            7..=9 => FinalState::Failed,
            _ => FinalState::Cancelled,
        };
        changes.push(finished(i, state, end));
    }
    // sdxl 11 is still running; whisper 21 ran on day one; whisper 22 was never claimed.
    changes.extend([
        published(11, "sdxl"),
        claimed(11, t0 + ms(5)),
        published(21, "whisper"),
        claimed(21, t0 + ms(50)),
        finished(21, FinalState::Succeeded, t0 + ms(120)),
        published(22, "whisper"),
        finished(22, FinalState::Cancelled, end),
    ]);
    live_with(&store, "stats", &changes, changes.len() as u64).await;

    let days = store
        .daily(day("2026-03-01"), day("2026-03-03"))
        .await
        .expect("daily");
    let (one, two, three) = (&days[0].figures, &days[1].figures, &days[2].figures);
    let whisper_run = TaskFigures {
        succeeded: 1,
        wait_ms: percentiles(1, 50, 50),
        run_ms: percentiles(1, 70, 70),
        ..TaskFigures::default()
    };
    assert_eq!(one.tasks, whisper_run);
    assert_eq!(one.tasks_by_model["whisper"], whisper_run);
    // 10 waits of 100..1000: ranks ceil(5) and ceil(9.5); 9 runs of 1000..9000: ranks ceil(4.5)
    // and ceil(8.55).
    let sdxl = TaskFigures {
        succeeded: 6,
        failed: 3,
        cancelled: 1,
        wait_ms: percentiles(10, 500, 1000),
        run_ms: percentiles(9, 5000, 9000),
        ..TaskFigures::default()
    };
    assert_eq!(two.tasks_by_model["sdxl"], sdxl);
    assert_eq!(
        two.tasks_by_model["whisper"],
        TaskFigures {
            cancelled: 1,
            ..TaskFigures::default()
        }
    );
    assert_eq!(
        two.tasks,
        TaskFigures {
            cancelled: 2,
            ..sdxl.clone()
        }
    );
    assert_eq!(*three, Default::default());

    let all = store.overview().await.expect("overview").tasks;
    assert_eq!((all.succeeded, all.failed, all.cancelled), (7, 3, 2));
    // Waits 50, 100..1000 (11): ranks 6 and 11; runs 70, 1000..9000 (10): ranks 5 and 10.
    assert_eq!(all.wait_ms, percentiles(11, 500, 1000));
    assert_eq!(all.run_ms, percentiles(10, 4000, 9000));
}

fn model_name(name: &str) -> ModelName {
    ModelName::parse(name).expect("a model name")
}

fn task_no(n: u128) -> TaskId {
    TaskId::new(Uuid::from_u128(0x7a00 + n))
}

fn user_no(n: u128) -> UserId {
    UserId::new(Uuid::from_u128(0x5500 + n))
}

fn worker_no(n: u128) -> WorkerId {
    WorkerId::new(Uuid::from_u128(0x3300 + n))
}

fn publish(n: u128, position: u64, user: u128, model: &str, priority: i32) -> Change {
    Change::Tasks(TaskChange::InsertTask {
        task_id: task_no(n),
        position,
        submitter_id: user_no(user),
        model: model_name(model),
        input: json!({"prompt": format!("猫 {n}")}),
        webhook_url: (n == 1).then(|| "https://hooks.example/t1".to_owned()),
        priority,
        max_attempts: 3,
        at: t(position as i64),
    })
}

/// Models, workers and tasks through their lives: what the task routes and the dispatch loops
/// read (`TaskQueries`), the same on every backend.
pub async fn tasks_follow_their_life_from_queue_to_webhook(store: Store) {
    let spec = |max_concurrent| ModelSpec {
        kind: "text-to-image".into(),
        input_schema: json!({"type": "object"}),
        max_concurrent,
    };
    let first = vec![
        Change::Tasks(TaskChange::InsertModel {
            name: model_name("paint"),
            spec: spec(1),
            enabled: true,
            at: t(0),
        }),
        Change::Tasks(TaskChange::InsertModel {
            name: model_name("draw"),
            spec: spec(5),
            enabled: false,
            at: t(1),
        }),
        Change::Tasks(TaskChange::InsertWorker {
            worker_id: worker_no(1),
            name: "gpu-1".into(),
            models: vec![model_name("paint")],
            token_hash: "hash-of-token-1".into(),
            at: t(2),
        }),
        publish(1, 10, 1, "paint", 0),
        publish(2, 11, 1, "paint", 5),
        publish(3, 12, 2, "draw", 9),
        Change::Tasks(TaskChange::History {
            task_id: task_no(1),
            position: 10,
            event: "TaskPublished".into(),
            detail: json!({"model": "paint"}),
            at: t(10),
        }),
    ];
    let g = live_with(&store, "tasks", &first, 12).await;

    let paint = store
        .model(&model_name("paint"))
        .await
        .unwrap()
        .expect("paint");
    assert_eq!((paint.max_concurrent, paint.enabled), (1, true));
    assert_eq!(paint.kind, "text-to-image");
    let mut names: Vec<String> = store
        .models()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name.as_str().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["draw", "paint"]);
    assert!(store.model(&model_name("sing")).await.unwrap().is_none());

    let worker = store
        .worker_by_token("hash-of-token-1")
        .await
        .unwrap()
        .expect("the worker");
    assert_eq!(worker.worker_id, worker_no(1));
    assert_eq!(worker.models, vec![model_name("paint")]);
    assert!(!worker.revoked);
    assert!(store.worker_by_token("other").await.unwrap().is_none());
    assert_eq!(store.workers().await.unwrap().len(), 1);

    let task = store.task(task_no(1)).await.unwrap().expect("task 1");
    assert_eq!(task.status, TaskState::Queued);
    assert_eq!((task.attempts, task.max_attempts), (0, 3));
    assert_eq!(task.input, json!({"prompt": "猫 1"}));
    assert_eq!(task.submitter_id, user_no(1));
    assert!(
        task.webhook_state.is_none(),
        "no webhook owed before the end"
    );
    assert!(store.task(task_no(9)).await.unwrap().is_none());

    // A submitter's tasks, newest first, in pages.
    let ids = |tasks: Vec<projections::tasks::TaskView>| {
        tasks.into_iter().map(|t| t.task_id).collect::<Vec<_>>()
    };
    let all = Page {
        cursor: None,
        limit: 10,
    };
    assert_eq!(
        ids(store.tasks_of(user_no(1), all).await.unwrap()),
        vec![task_no(2), task_no(1)]
    );
    let first_page = store
        .tasks_of(
            user_no(1),
            Page {
                cursor: None,
                limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(first_page), vec![task_no(2)]);
    let next = Page {
        cursor: Some(11),
        limit: 1,
    };
    assert_eq!(
        ids(store.tasks_of(user_no(1), next).await.unwrap()),
        vec![task_no(1)]
    );
    assert_eq!(
        ids(store.tasks_of(user_no(2), all).await.unwrap()),
        vec![task_no(3)]
    );

    // Highest priority first; a disabled model's tasks wait.
    let both = [model_name("paint"), model_name("draw")];
    assert_eq!(
        store.claimable(&both, 10).await.unwrap(),
        vec![task_no(2), task_no(1)]
    );
    assert_eq!(store.claimable(&both, 1).await.unwrap(), vec![task_no(2)]);
    let history = store.task_history(task_no(1)).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].event, "TaskPublished");
    assert_eq!(history[0].detail, json!({"model": "paint"}));

    // Task 2 runs: paint is at its one concurrent task, so nothing more is claimable.
    let running = vec![Change::Tasks(TaskChange::Running {
        task_id: task_no(2),
        worker_id: worker_no(1),
        attempt: 1,
        lease_until: t(100),
        at: t(20),
    })];
    store.apply("tasks", g, &running, 12, 13).await.unwrap();
    let task = store.task(task_no(2)).await.unwrap().expect("task 2");
    assert_eq!(task.status, TaskState::Running);
    assert_eq!(task.worker_id, Some(worker_no(1)));
    assert_eq!(task.attempts, 1);
    assert_eq!(task.lease_until, Some(t(100)));
    assert_eq!(task.started_at, Some(t(20)));
    assert!(store.claimable(&both, 10).await.unwrap().is_empty());
    assert!(store.expired_leases(t(50), 10).await.unwrap().is_empty());
    assert_eq!(
        store.expired_leases(t(200), 10).await.unwrap(),
        vec![task_no(2)]
    );

    // Task 1 is cancelled (its webhook becomes owed), task 2 succeeds (it has none).
    let ends = vec![
        Change::Tasks(TaskChange::Finished {
            task_id: task_no(1),
            status: TaskState::Cancelled,
            result: None,
            error: None,
            at: t(30),
        }),
        Change::Tasks(TaskChange::Finished {
            task_id: task_no(2),
            status: TaskState::Succeeded,
            result: Some(json!({"image": "https://cdn.example/2.png"})),
            error: None,
            at: t(40),
        }),
        Change::Tasks(TaskChange::RevokeWorker {
            worker_id: worker_no(1),
        }),
    ];
    store.apply("tasks", g, &ends, 13, 15).await.unwrap();
    let done = store.task(task_no(2)).await.unwrap().expect("task 2");
    assert_eq!(done.status, TaskState::Succeeded);
    assert_eq!(
        done.result,
        Some(json!({"image": "https://cdn.example/2.png"}))
    );
    assert_eq!(done.finished_at, Some(t(40)));
    assert!(done.webhook_state.is_none(), "no URL, no webhook");
    assert!(store.expired_leases(t(200), 10).await.unwrap().is_empty());
    let owed = store.pending_webhooks(10).await.unwrap();
    assert_eq!(ids(owed.clone()), vec![task_no(1)]);
    assert_eq!(owed[0].webhook_state, Some(WebhookState::Pending));
    assert!(
        store
            .worker_by_token("hash-of-token-1")
            .await
            .unwrap()
            .expect("a revoked worker is still found")
            .revoked
    );

    // Delivered: no longer owed.
    let delivered = vec![Change::Tasks(TaskChange::WebhookAttempted {
        task_id: task_no(1),
        attempt: 1,
        delivered: true,
        at: t(31),
    })];
    store.apply("tasks", g, &delivered, 15, 16).await.unwrap();
    assert!(store.pending_webhooks(10).await.unwrap().is_empty());
    let task = store.task(task_no(1)).await.unwrap().expect("task 1");
    assert_eq!(task.webhook_state, Some(WebhookState::Delivered));
    assert_eq!(
        (task.webhook_attempts, task.webhook_last_at),
        (1, Some(t(31)))
    );
}

/// The Kafka relay's checkpoint per relay name: zero before the first save, then the furthest
/// position saved (an older one never moves it back).
pub async fn relay_checkpoints_start_at_zero_and_only_move_forward(store: Store) {
    assert_eq!(store.relay_checkpoint("events").await.unwrap(), 0);
    store.save_relay_checkpoint("events", 10).await.unwrap();
    assert_eq!(store.relay_checkpoint("events").await.unwrap(), 10);
    store.save_relay_checkpoint("events", 5).await.unwrap();
    assert_eq!(store.relay_checkpoint("events").await.unwrap(), 10);
    store.save_relay_checkpoint("events", 11).await.unwrap();
    assert_eq!(store.relay_checkpoint("events").await.unwrap(), 11);
    assert_eq!(store.relay_checkpoint("other").await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Unregistering: forgetting authors, deleting users (crypto-shredding)

fn ann() -> UserId {
    UserId::new(Uuid::from_u128(0xa11))
}

fn bob() -> UserId {
    UserId::new(Uuid::from_u128(0xb0b))
}

/// Someone with no rows at all.
fn nobody() -> UserId {
    UserId::new(Uuid::from_u128(0xdead))
}

/// A post by `author` (the private column of a named post; `None` for anonymous ones).
fn authored_post(n: u128, position: u64, author: Option<UserId>, name: &str) -> Change {
    Change::Feed(FeedChange::InsertPost {
        post_id: post_id(n),
        position,
        author_id: author,
        author_name: name.into(),
        anonymous: author.is_none(),
        title: Some(format!("title {n}")),
        body: format!("body {n}"),
        tags: vec![format!("t{n}")],
        created_at: t(position as i64),
    })
}

fn authored_comment(
    n: u128,
    on: u128,
    position: u64,
    author: Option<UserId>,
    name: &str,
) -> Change {
    Change::Comments(CommentChange::InsertComment {
        comment_id: comment_id(n),
        post_id: post_id(on),
        position,
        author_id: author,
        author_name: name.into(),
        anonymous: author.is_none(),
        is_host: false,
        body: format!("comment {n}"),
        reply_to: (n > 1).then(|| comment_id(n - 1)),
        created_at: t(position as i64),
    })
}

/// The live rows of a projection as `dump` gives them: (table, row as JSON), private columns
/// included.
async fn dumped(store: &Store, projection: &str) -> Vec<(String, serde_json::Value)> {
    store
        .dump(projection)
        .await
        .expect("dump")
        .into_iter()
        .map(|line| {
            let (table, row) = line.split_once(' ').expect("`table row`");
            (
                table.to_owned(),
                serde_json::from_str(row).expect("a dumped row is JSON"),
            )
        })
        .collect()
}

/// `rows` as they must be once `user` is forgotten: their named rows show the deleted-user
/// name and keep no author id; every other column and row as it was.
fn forgotten(
    rows: &[(String, serde_json::Value)],
    user: UserId,
) -> Vec<(String, serde_json::Value)> {
    rows.iter()
        .map(|(table, row)| {
            let mut row = row.clone();
            if row["author_id"] == json!(user.to_string()) {
                row["author_name"] = json!(projections::DELETED_USER);
                row["author_id"] = serde_json::Value::Null;
            }
            (table.clone(), row)
        })
        .collect()
}

/// Named and anonymous posts and comments of ann and bob, in both projections. Comments come
/// both as a run in one batch (one multi-row statement where the backend has it) and one by
/// one, so both ways of writing the private column are covered.
async fn authored_fixture(store: &Store) -> (u32, u32) {
    let feed = live_with(
        store,
        "feed",
        &[
            authored_post(1, 1, Some(ann()), "ann"),
            // Anonymous posts never carry their author, even when the pseudonym reads "ann".
            authored_post(2, 2, None, "洞主"),
            authored_post(3, 3, Some(bob()), "bob"),
            authored_post(4, 4, Some(ann()), "ann"),
            authored_post(5, 5, None, "ann"),
            Change::Feed(FeedChange::CountComment {
                post_id: post_id(4),
                delta: 3,
                commenters: 2,
                active_at: Some(t(40)),
            }),
        ],
        5,
    )
    .await;
    let comments = live_with(
        store,
        "comments",
        &[
            authored_comment(1, 3, 11, Some(ann()), "ann"),
            authored_comment(2, 3, 12, None, "Alice"),
            authored_comment(3, 3, 13, Some(bob()), "bob"),
            authored_comment(4, 1, 14, Some(ann()), "ann"),
        ],
        14,
    )
    .await;
    store
        .apply(
            "comments",
            comments,
            &[authored_comment(5, 1, 15, None, "ann")],
            14,
            15,
        )
        .await
        .expect("apply");
    store
        .apply(
            "comments",
            comments,
            &[authored_comment(6, 3, 16, Some(ann()), "ann")],
            15,
            16,
        )
        .await
        .expect("apply");
    (feed, comments)
}

/// Whether a user's id shows anywhere in what the queries return.
fn exposes(view: &impl std::fmt::Debug, user: UserId) -> bool {
    format!("{view:?}").contains(&user.to_string())
}

pub async fn forgetting_a_post_author_renames_exactly_their_named_posts(store: Store) {
    let (feed, _) = authored_fixture(&store).await;
    let rows = dumped(&store, "feed").await;
    let comments = dumped(&store, "comments").await;
    // The private column holds the named authors, and only theirs.
    let authors: Vec<_> = rows.iter().map(|(_, r)| r["author_id"].clone()).collect();
    assert_eq!(
        authors,
        vec![
            json!(ann().to_string()),
            serde_json::Value::Null,
            json!(bob().to_string()),
            json!(ann().to_string()),
            serde_json::Value::Null,
        ]
    );
    let before = store.feed(page(None, 10)).await.expect("feed");
    assert_eq!(before.len(), 5);
    assert!(
        !before
            .iter()
            .any(|p| exposes(p, ann()) || exposes(p, bob()))
    );

    store
        .apply(
            "feed",
            feed,
            &[Change::Feed(FeedChange::ForgetPostAuthor {
                user_id: ann(),
            })],
            5,
            6,
        )
        .await
        .expect("apply");
    assert_eq!(dumped(&store, "feed").await, forgotten(&rows, ann()));
    assert_eq!(
        dumped(&store, "comments").await,
        comments,
        "forgetting a post author leaves comments alone"
    );
    let after = store.feed(page(None, 10)).await.expect("feed");
    let renamed: Vec<PostId> = [1, 4].map(post_id).to_vec();
    assert_eq!(after.len(), before.len());
    for (was, now) in before.iter().zip(&after) {
        let mut expected = was.clone();
        if renamed.contains(&was.post_id) {
            expected.author_name = projections::DELETED_USER.into();
        }
        assert_eq!(now, &expected);
        assert_eq!(
            store.post(was.post_id).await.expect("post").as_ref(),
            Some(&expected)
        );
        assert!(!exposes(now, ann()) && !exposes(now, bob()));
    }
    // The anonymous post that reads "ann" is not hers as far as the store knows: untouched.
    assert_eq!(
        store
            .post(post_id(5))
            .await
            .expect("post")
            .expect("the post")
            .author_name,
        "ann"
    );

    // Again, or for someone with no posts: nothing changes. Then bob, and only bob's.
    let once = dumped(&store, "feed").await;
    for (i, user_id) in [ann(), nobody()].into_iter().enumerate() {
        let from = 6 + i as u64;
        store
            .apply(
                "feed",
                feed,
                &[Change::Feed(FeedChange::ForgetPostAuthor { user_id })],
                from,
                from + 1,
            )
            .await
            .expect("apply");
        assert_eq!(dumped(&store, "feed").await, once);
    }
    store
        .apply(
            "feed",
            feed,
            &[Change::Feed(FeedChange::ForgetPostAuthor {
                user_id: bob(),
            })],
            8,
            9,
        )
        .await
        .expect("apply");
    let twice = forgotten(&forgotten(&rows, ann()), bob());
    assert_eq!(dumped(&store, "feed").await, twice);
    assert!(twice.iter().all(|(_, r)| r["author_id"].is_null()));

    // A post and its author's unregistration in one batch: the post is forgotten too.
    let (carol, dave) = (
        UserId::new(Uuid::from_u128(0xca401)),
        UserId::new(Uuid::from_u128(0xda7e)),
    );
    store
        .apply(
            "feed",
            feed,
            &[
                authored_post(6, 20, Some(carol), "carol"),
                authored_post(7, 21, Some(dave), "dave"),
                Change::Feed(FeedChange::ForgetPostAuthor { user_id: carol }),
            ],
            9,
            10,
        )
        .await
        .expect("apply");
    let shown = |n| {
        let store = store.clone();
        async move {
            store
                .post(post_id(n))
                .await
                .expect("post")
                .expect("the post")
                .author_name
        }
    };
    assert_eq!(shown(6).await, projections::DELETED_USER);
    assert_eq!(
        shown(7).await,
        "dave",
        "other authors in the batch keep their names"
    );
}
pub async fn forgetting_a_comment_author_renames_exactly_their_named_comments(store: Store) {
    let (_, comments) = authored_fixture(&store).await;
    let rows = dumped(&store, "comments").await;
    let feed = dumped(&store, "feed").await;
    // The private column holds the named authors, whichever way the rows were written.
    let authors: Vec<_> = rows.iter().map(|(_, r)| r["author_id"].clone()).collect();
    let (a, b, none) = (
        json!(ann().to_string()),
        json!(bob().to_string()),
        serde_json::Value::Null,
    );
    assert_eq!(
        authors,
        vec![a.clone(), none.clone(), b, a.clone(), none, a]
    );
    let mut before = store
        .comments(post_id(3), page(None, 10))
        .await
        .expect("comments");
    before.extend(
        store
            .comments(post_id(1), page(None, 10))
            .await
            .expect("comments"),
    );
    assert_eq!(before.len(), 6);
    assert!(
        !before
            .iter()
            .any(|c| exposes(c, ann()) || exposes(c, bob()))
    );

    store
        .apply(
            "comments",
            comments,
            &[Change::Comments(CommentChange::ForgetCommentAuthor {
                user_id: ann(),
            })],
            16,
            17,
        )
        .await
        .expect("apply");
    assert_eq!(dumped(&store, "comments").await, forgotten(&rows, ann()));
    assert_eq!(
        dumped(&store, "feed").await,
        feed,
        "forgetting a comment author leaves posts alone"
    );
    let renamed: Vec<CommentId> = [1, 4, 6].map(comment_id).to_vec();
    for was in &before {
        let mut expected = was.clone();
        if renamed.contains(&was.comment_id) {
            expected.author_name = projections::DELETED_USER.into();
        }
        let now = store
            .comment(was.comment_id)
            .await
            .expect("comment")
            .expect("the comment");
        assert_eq!(now, expected);
        assert!(!exposes(&now, ann()) && !exposes(&now, bob()));
    }
    let listed = store
        .comments(post_id(3), page(None, 10))
        .await
        .expect("comments");
    assert_eq!(
        listed
            .iter()
            .map(|c| c.author_name.as_str())
            .collect::<Vec<_>>(),
        vec![
            projections::DELETED_USER,
            "Alice",
            "bob",
            projections::DELETED_USER
        ]
    );

    // Again, or for someone with no comments: nothing changes. Then bob, and only bob's.
    let once = dumped(&store, "comments").await;
    for (i, user_id) in [ann(), nobody()].into_iter().enumerate() {
        let from = 17 + i as u64;
        store
            .apply(
                "comments",
                comments,
                &[Change::Comments(CommentChange::ForgetCommentAuthor {
                    user_id,
                })],
                from,
                from + 1,
            )
            .await
            .expect("apply");
        assert_eq!(dumped(&store, "comments").await, once);
    }
    store
        .apply(
            "comments",
            comments,
            &[Change::Comments(CommentChange::ForgetCommentAuthor {
                user_id: bob(),
            })],
            19,
            20,
        )
        .await
        .expect("apply");
    let twice = forgotten(&forgotten(&rows, ann()), bob());
    assert_eq!(dumped(&store, "comments").await, twice);
    assert!(twice.iter().all(|(_, r)| r["author_id"].is_null()));
}

fn user_row(user_id: UserId, name: &str) -> Change {
    Change::Users(UserChange::InsertUser {
        user_id,
        username: name.into(),
        email: format!("{name}@campus.edu"),
        registered_at: t(1),
    })
}

/// A time some decades ahead: sessions that have not expired (whether a store lists expired
/// ones is not what these tests are about).
fn future(s: i64) -> DateTime<Utc> {
    t(1_000_000_000 + s)
}

fn session_row(n: u128, user_id: UserId, expires: i64) -> Change {
    Change::Users(UserChange::InsertSession {
        session_id: SessionId::new(Uuid::from_u128(0x5e55_0000 + n)),
        user_id,
        token_hash: format!("hash{n}"),
        expires_at: future(expires),
        device: None,
        created_at: t(2),
    })
}

pub async fn deleting_a_user_removes_them_and_their_sessions_only(store: Store) {
    let users = live_with(
        &store,
        "users",
        &[
            user_row(ann(), "ann"),
            user_row(bob(), "bob"),
            Change::Users(UserChange::SetAdmin { user_id: bob() }),
            session_row(1, ann(), 50),
            session_row(2, bob(), 60),
            session_row(3, ann(), 70),
        ],
        6,
    )
    .await;
    let bob_before = store.user(bob()).await.expect("user").expect("bob");
    let bob_session = store.session("hash2").await.expect("session");
    assert!(bob_session.is_some());
    assert!(store.session("hash1").await.expect("session").is_some());
    assert_eq!(
        store.sessions_of(ann()).await.expect("sessions_of").len(),
        2
    );

    store
        .apply(
            "users",
            users,
            &[Change::Users(UserChange::DeleteUser { user_id: ann() })],
            6,
            7,
        )
        .await
        .expect("apply");
    assert_eq!(store.user(ann()).await.expect("user"), None);
    for hash in ["hash1", "hash3"] {
        assert!(
            store.session(hash).await.expect("session").is_none(),
            "{hash}"
        );
    }
    assert!(
        store
            .sessions_of(ann())
            .await
            .expect("sessions_of")
            .is_empty()
    );
    assert_eq!(
        store.user(bob()).await.expect("user"),
        Some(bob_before),
        "another user stays as they were"
    );
    assert_eq!(store.session("hash2").await.expect("session"), bob_session);
    assert_eq!(
        store
            .sessions_of(bob())
            .await
            .expect("sessions_of")
            .iter()
            .map(|s| (s.session_id, s.expires_at))
            .collect::<Vec<_>>(),
        vec![(SessionId::new(Uuid::from_u128(0x5e55_0002)), future(60))]
    );
    // Nothing of ann's is left in the projection's tables, private columns included.
    let rows = store.dump("users").await.expect("dump");
    assert!(!rows.is_empty());
    assert!(
        !rows.iter().any(|r| r.contains(&ann().to_string())),
        "{rows:?}"
    );
    // Deleting again, or someone unknown, changes nothing.
    for (i, user_id) in [ann(), nobody()].into_iter().enumerate() {
        let from = 7 + i as u64;
        store
            .apply(
                "users",
                users,
                &[Change::Users(UserChange::DeleteUser { user_id })],
                from,
                from + 1,
            )
            .await
            .expect("apply");
        assert_eq!(store.dump("users").await.expect("dump"), rows);
    }
}

/// A session id as the write side makes them: UUIDv7, so later sessions sort after earlier ones.
fn session_at(unix_seconds: u64) -> SessionId {
    SessionId::new(Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        unix_seconds,
        0,
    )))
}

pub async fn sessions_of_lists_live_sessions_newest_first(store: Store) {
    let (first, second, third, bobs) = (
        session_at(1_700_000_001),
        session_at(1_700_000_002),
        session_at(1_700_000_003),
        session_at(1_700_000_004),
    );
    let session = |session_id, user_id, n: u32, expires| {
        Change::Users(UserChange::InsertSession {
            session_id,
            user_id,
            token_hash: format!("h{n}"),
            expires_at: future(expires),
            device: None,
            created_at: t(2),
        })
    };
    // Written neither in id order nor in expiry order.
    let users = live_with(
        &store,
        "users",
        &[
            user_row(ann(), "ann"),
            user_row(bob(), "bob"),
            user_row(nobody(), "nobody"),
            session(second, ann(), 2, 100),
            session(bobs, bob(), 4, 400),
            session(third, ann(), 3, 200),
            session(first, ann(), 1, 300),
        ],
        7,
    )
    .await;
    let listed = |user| {
        let store = store.clone();
        async move {
            store
                .sessions_of(user)
                .await
                .expect("sessions_of")
                .into_iter()
                .map(|s| (s.session_id, s.expires_at))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(ann()).await,
        vec![
            (third, future(200)),
            (second, future(100)),
            (first, future(300))
        ]
    );
    assert_eq!(listed(bob()).await, vec![(bobs, future(400))]);
    assert!(listed(nobody()).await.is_empty(), "a user without sessions");
    assert!(
        listed(UserId::new(Uuid::from_u128(0x404))).await.is_empty(),
        "an unknown user"
    );
    // An ended session is not live any more.
    store
        .apply(
            "users",
            users,
            &[Change::Users(UserChange::EndSession { session_id: second })],
            7,
            8,
        )
        .await
        .expect("apply");
    assert_eq!(
        listed(ann()).await,
        vec![(third, future(200)), (first, future(300))]
    );
}

pub async fn a_session_keeps_its_device_and_its_last_seen_day_only_moves_forward(store: Store) {
    let (labelled, bare) = (session_at(1_700_000_001), session_at(1_700_000_002));
    let created = t;
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2023, 11, d).expect("a day");
    let users = live_with(
        &store,
        "users",
        &[
            user_row(ann(), "ann"),
            Change::Users(UserChange::InsertSession {
                session_id: labelled,
                user_id: ann(),
                token_hash: "labelled".into(),
                expires_at: future(1),
                device: Some("Ann's phone 📱".into()),
                created_at: created(0),
            }),
            Change::Users(UserChange::InsertSession {
                session_id: bare,
                user_id: ann(),
                token_hash: "bare".into(),
                expires_at: future(2),
                device: None,
                created_at: created(90_000),
            }),
        ],
        3,
    )
    .await;
    let listed = || async {
        store
            .sessions_of(ann())
            .await
            .expect("sessions_of")
            .into_iter()
            .map(|s| (s.session_id, s.device, s.created_at, s.last_seen))
            .collect::<Vec<_>>()
    };
    // Created 2023-11-14T22:13:20Z and 25 hours later: first seen on those days.
    assert_eq!(
        listed().await,
        vec![
            (bare, None, created(90_000), day(15)),
            (labelled, Some("Ann's phone 📱".into()), created(0), day(14)),
        ]
    );
    let seen = |session_id, d| {
        Change::Users(UserChange::SeeSession {
            session_id,
            day: day(d),
        })
    };
    store
        .apply(
            "users",
            users,
            &[seen(labelled, 20), seen(bare, 15), seen(labelled, 19)],
            3,
            6,
        )
        .await
        .expect("apply");
    let found = store
        .session("labelled")
        .await
        .expect("session")
        .expect("live");
    assert_eq!(found.last_seen, day(20));
    assert_eq!(
        listed().await.iter().map(|s| s.3).collect::<Vec<_>>(),
        vec![day(15), day(20)],
        "the same or an earlier day does not move last_seen back"
    );
    // An ended session's seen day changes nothing.
    store
        .apply(
            "users",
            users,
            &[
                Change::Users(UserChange::EndSession { session_id: bare }),
                seen(bare, 28),
            ],
            6,
            8,
        )
        .await
        .expect("apply");
    assert_eq!(listed().await.len(), 1);
}

/// `comments_of_live_post`: the page for a live post (empty when it has no comments), `None`
/// for a post that is unknown or deleted, even when comment rows remain; and after a rebuild's
/// promotion every reader sees the new generation (readers that prepared their statements
/// against the old one included: each query runs many times, on every reader).
pub async fn a_comment_page_answers_only_for_a_live_post(store: Store) {
    let feed = live_with(&store, "feed", &[post(1, 1), post(2, 2)], 2).await;
    let mut changes = comment(1, 1, 3);
    changes.extend(comment(2, 1, 4));
    changes.extend(comment(3, 3, 5));
    live_with(&store, "comments", &changes, 5).await;
    for _ in 0..16 {
        let on_1 = store
            .comments_of_live_post(post_id(1), page(None, 10))
            .await
            .expect("page")
            .expect("post 1 is live");
        assert_eq!(on_1.iter().map(|c| c.position).collect::<Vec<_>>(), [3, 4]);
        let after = store
            .comments_of_live_post(post_id(1), page(Some(3), 10))
            .await
            .expect("page");
        assert_eq!(after.map(|p| p.len()), Some(1));
        assert_eq!(
            store
                .comments_of_live_post(post_id(2), page(None, 10))
                .await
                .expect("page"),
            Some(Vec::new())
        );
        assert_eq!(
            store
                .comments_of_live_post(post_id(3), page(None, 10))
                .await
                .expect("page"),
            None,
            "post 3 was never in the feed"
        );
    }
    store
        .apply(
            "feed",
            feed,
            &[Change::Feed(FeedChange::DeletePost {
                post_id: post_id(1),
            })],
            2,
            6,
        )
        .await
        .expect("apply");
    assert_eq!(
        store
            .comments_of_live_post(post_id(1), page(None, 10))
            .await
            .expect("page"),
        None
    );
    // A rebuild of the feed with post 3 in it: once promoted, every reader answers for it.
    let new = store.create_generation("feed", 1).await.expect("create");
    store
        .apply("feed", new.number, &[post(2, 2), post(3, 3)], 0, 6)
        .await
        .expect("apply");
    assert_eq!(
        store.promote("feed", new.number).await.expect("promote"),
        Promotion::Done
    );
    for _ in 0..16 {
        let on_3 = store
            .comments_of_live_post(post_id(3), page(None, 10))
            .await
            .expect("page")
            .expect("post 3 is live in the new generation");
        assert_eq!(on_3.iter().map(|c| c.position).collect::<Vec<_>>(), [5]);
        assert!(store.post(post_id(3)).await.expect("post").is_some());
        assert_eq!(store.feed(page(None, 10)).await.expect("feed").len(), 2);
    }
}

/// `changes` of `projection` applied as one batch give the rows they give one change per
/// batch, and the rows `expected` expects (a store writes a run of new rows of one table as
/// one statement: every column type, nulls, JSON, tags and a repeated key go through it).
async fn one_batch_equals_one_by_one(
    store: &Store,
    projection: &str,
    changes: &[Change],
    expected: usize,
) {
    let end = changes.len() as u64;
    let one = store
        .create_generation(projection, 1)
        .await
        .expect("create");
    store
        .apply(projection, one.number, changes, 0, end)
        .await
        .expect("one batch");
    store
        .promote(projection, one.number)
        .await
        .expect("promote");
    let in_one_batch = dumped(store, projection).await;
    let two = store
        .create_generation(projection, 1)
        .await
        .expect("create");
    for (i, change) in changes.iter().enumerate() {
        store
            .apply(
                projection,
                two.number,
                std::slice::from_ref(change),
                i as u64,
                i as u64 + 1,
            )
            .await
            .expect("one by one");
    }
    store
        .promote(projection, two.number)
        .await
        .expect("promote");
    let one_by_one = dumped(store, projection).await;
    assert_eq!(in_one_batch, one_by_one, "{projection}");
    assert_eq!(
        in_one_batch.len(),
        expected,
        "{projection}: {in_one_batch:?}"
    );
}

pub async fn new_rows_in_one_batch_equal_new_rows_one_by_one(store: Store) {
    let (ann, bob) = (ann(), bob());
    let users = vec![
        user_row(ann, "ann"),
        user_row(bob, "bob"),
        // The same key again: kept out, as a replayed event would be.
        user_row(ann, "ann-again"),
        session_row(1, ann, 10),
        session_row(2, bob, 20),
        session_row(1, ann, 30),
    ];
    one_batch_equals_one_by_one(&store, "users", &users, 4).await;
    let mut posts: Vec<Change> = (1..=5).map(|n| post(n, n as u64)).collect();
    posts.push(Change::Feed(FeedChange::InsertPost {
        post_id: post_id(9),
        position: 9,
        author_id: None,
        author_name: "洞主".into(),
        anonymous: true,
        title: None,
        body: "no tags, no title".into(),
        tags: vec![],
        created_at: t(9),
    }));
    posts.push(post(1, 1));
    one_batch_equals_one_by_one(&store, "feed", &posts, 6).await;
    let comments: Vec<Change> = (1..=4).flat_map(|n| comment(n, 1, 10 + n as u64)).collect();
    one_batch_equals_one_by_one(&store, "comments", &comments, 4).await;
    let spec = ModelSpec {
        kind: "text-to-image".into(),
        input_schema: json!({"type": "object", "properties": {"prompt": {"type": "string"}}}),
        max_concurrent: 2,
    };
    let mut tasks = vec![
        Change::Tasks(TaskChange::InsertModel {
            name: model_name("paint"),
            spec: spec.clone(),
            enabled: true,
            at: t(0),
        }),
        Change::Tasks(TaskChange::InsertModel {
            name: model_name("draw"),
            spec,
            enabled: false,
            at: t(1),
        }),
        Change::Tasks(TaskChange::InsertWorker {
            worker_id: worker_no(1),
            name: "gpu-1".into(),
            models: vec![model_name("paint"), model_name("draw")],
            token_hash: "hash-1".into(),
            at: t(2),
        }),
        Change::Tasks(TaskChange::InsertWorker {
            worker_id: worker_no(2),
            name: "gpu-2".into(),
            models: vec![],
            token_hash: "hash-2".into(),
            at: t(3),
        }),
    ];
    tasks.extend((1..=3).map(|n| publish(n, 10 + n as u64, 1, "paint", n as i32)));
    tasks.extend((1..=3).map(|n| {
        Change::Tasks(TaskChange::History {
            task_id: task_no(n),
            position: 10 + n as u64,
            event: "TaskPublished".into(),
            detail: json!({"model": "paint", "n": n as u64}),
            at: t(10 + n as i64),
        })
    }));
    one_batch_equals_one_by_one(&store, "tasks", &tasks, 10).await;
    let stats = vec![
        active("2026-12-01", 1),
        active("2026-12-01", 2),
        active("2026-12-01", 1),
        stat(StatsChange::TaskPublished {
            task_id: task_no(1),
            model: "paint".into(),
            at: at("2026-12-01T10:00:00Z"),
        }),
        stat(StatsChange::TaskPublished {
            task_id: task_no(2),
            model: "draw".into(),
            at: at("2026-12-01T11:00:00Z"),
        }),
    ];
    one_batch_equals_one_by_one(&store, "stats", &stats, 4).await;
}

/// An upgrade: the live generation was made by an older version whose `feed` table lacked the
/// reaction counts this code reads; `make_old` drops them from generation `n` as the backend
/// must (its views included). The query fails then (so the test can fail); once the next
/// generation is made it answers again, with the columns' defaults, until that one replaces it.
pub async fn an_older_live_generation_answers_while_its_successor_builds<F, Fut>(
    store: Store,
    make_old: F,
) where
    F: FnOnce(u32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let g = live_with(&store, "feed", &[post(2, 1)], 1).await;
    make_old(g).await;
    assert!(
        store.post(post_id(2)).await.is_err(),
        "the query needs the columns"
    );
    let next = store.create_generation("feed", 2).await.expect("create");
    assert_ne!(next.number, g);
    let p = store
        .post(post_id(2))
        .await
        .expect("the query answers")
        .expect("the post");
    assert_eq!((p.position, p.likes, p.dislikes), (1, 0, 0));
}

/// The same for a table the older generation lacks altogether (`make_old` drops the inbox's
/// `follow_spans`): it is made, empty, and the inbox answers with what the old generation
/// wrote until its successor is promoted.
pub async fn an_older_inbox_without_a_newer_table_answers_while_its_successor_builds<F, Fut>(
    store: Store,
    make_old: F,
) where
    F: FnOnce(u32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (a, b) = (ann(), bob());
    let changes = [auto_follow(a, 1), notify(2, b, Some(a), "b")];
    let g = live_with(&store, "inbox", &changes, 2).await;
    make_old(g).await;
    assert!(
        store.notifications(a, page(None, 10)).await.is_err(),
        "the query needs the table"
    );
    store.create_generation("inbox", 2).await.expect("create");
    assert_eq!(
        notified(&store, a).await,
        vec![(2, "b".to_owned(), vec!["reply"])],
        "the reply the old generation wrote"
    );
}

fn inbox(change: InboxChange) -> Change {
    Change::Inbox(change)
}

fn notify(seq: u64, commenter: UserId, addressee: Option<UserId>, name: &str) -> Change {
    inbox(InboxChange::Notify {
        seq,
        post_id: post_id(1),
        comment_id: comment_id(u128::from(seq)),
        commenter: Some(commenter),
        addressee,
        answers: post_id(1).as_uuid(),
        name: name.into(),
        excerpt: format!("comment {seq}"),
        at: t(seq as i64),
    })
}

/// `user`'s first ten notifications: sequence, name and reasons.
/// A named comment on post 1 at `seq`, answering `answers` (the post or a comment).
fn reply(seq: u64, commenter: UserId, answers: Uuid, name: &str) -> Change {
    inbox(InboxChange::Notify {
        seq,
        post_id: post_id(1),
        comment_id: comment_id(u128::from(seq)),
        commenter: Some(commenter),
        addressee: None,
        answers,
        name: name.into(),
        excerpt: format!("comment {seq}"),
        at: t(seq as i64),
    })
}

async fn notified(store: &Store, user: UserId) -> Vec<(u64, String, Vec<&'static str>)> {
    store
        .notifications(user, page(None, 10))
        .await
        .expect("notifications")
        .into_iter()
        .map(|n| (n.seq, n.name, n.reasons))
        .collect()
}

fn auto_follow(user: UserId, position: u64) -> Change {
    inbox(InboxChange::AutoFollow {
        post_id: post_id(1),
        user_id: user,
        position,
    })
}

/// The notification matrix of issue 18 in one batch (a comment's fan-out must see the follows
/// of the events before it in the same batch), then a retraction, a read mark, the retention
/// and a user leaving.
pub async fn the_inbox_notifies_each_person_once_with_merged_reasons(store: Store) {
    let (a, b, c, d) = (ann(), bob(), user_no(3), user_no(4));
    let changes = vec![
        // A posts; B comments on it; D follows and then chooses not to; C replies to B.
        auto_follow(a, 1),
        notify(2, b, Some(a), "b"),
        auto_follow(b, 2),
        inbox(InboxChange::SetFollow {
            post_id: post_id(1),
            user_id: d,
            following: true,
            position: 3,
        }),
        inbox(InboxChange::SetFollow {
            post_id: post_id(1),
            user_id: d,
            following: false,
            position: 4,
        }),
        notify(5, c, Some(b), "洞友 A"),
        auto_follow(c, 5),
        // D commenting later does not undo the choice.
        auto_follow(d, 6),
    ];
    let g = live_with(&store, "inbox", &changes, 6).await;
    let of = |u| notified(&store, u);
    assert_eq!(
        of(a).await,
        vec![
            (5, "洞友 A".to_owned(), vec!["followed"]),
            (2, "b".to_owned(), vec!["reply", "followed"]),
        ]
    );
    assert_eq!(
        of(b).await,
        vec![(5, "洞友 A".to_owned(), vec!["reply", "followed"])]
    );
    assert!(of(c).await.is_empty(), "never to the commenter");
    assert!(of(d).await.is_empty(), "D chose not to follow");
    assert!(!store.follows(d, post_id(1)).await.expect("follows"));
    assert!(store.follows(c, post_id(1)).await.expect("follows"));
    let following = store.following(a, page(None, 10)).await.expect("following");
    assert_eq!(following.len(), 1);
    assert!(!following[0].explicit);
    // The resume and fan-out queries.
    let between = store
        .notifications_between(a, 2, 5, 10)
        .await
        .expect("between");
    assert_eq!(between.iter().map(|n| n.seq).collect::<Vec<_>>(), vec![5]);
    let since = store.notifications_since(0, 5, 100).await.expect("since");
    assert_eq!(
        since.iter().map(|n| (n.seq, n.user_id)).collect::<Vec<_>>(),
        {
            let mut v = vec![(2, a), (5, a), (5, b)];
            v.sort_by_key(|(s, u)| (*s, u.as_uuid()));
            v
        }
    );
    assert_eq!(
        store.inbox_state(a).await.expect("state"),
        projections::inbox::InboxState {
            read_up_to: 0,
            unread: 2
        }
    );
    // A reads up to 2; C's comment is deleted, which withdraws its notifications.
    store
        .apply(
            "inbox",
            g,
            &[
                inbox(InboxChange::MarkRead {
                    user_id: a,
                    up_to: 2,
                }),
                inbox(InboxChange::Retract {
                    comment_id: comment_id(5),
                }),
            ],
            6,
            8,
        )
        .await
        .expect("apply");
    assert_eq!(
        of(a).await,
        vec![(2, "b".to_owned(), vec!["reply", "followed"])]
    );
    assert!(of(b).await.is_empty());
    assert_eq!(
        store.inbox_state(a).await.expect("state"),
        projections::inbox::InboxState {
            read_up_to: 2,
            unread: 0
        }
    );
    // The retention drops what is older than a new comment's cut-off, and says how far.
    assert_eq!(store.pruned_up_to().await.expect("pruned"), 0);
    let late = [
        inbox(InboxChange::Prune { before: t(3) }),
        notify(9, d, None, "d"),
    ];
    store.apply("inbox", g, &late, 8, 9).await.expect("apply");
    assert_eq!(store.pruned_up_to().await.expect("pruned"), 2);
    assert_eq!(
        of(a).await,
        vec![(9, "d".to_owned(), vec!["followed"])],
        "the old one is gone, the new one is there"
    );
    // A reply to a named comment finds its author by the comment (no addressee in the event).
    let named_reply = match notify(10, c, None, "c") {
        Change::Inbox(InboxChange::Notify {
            seq,
            post_id,
            comment_id,
            commenter,
            addressee,
            name,
            excerpt,
            at,
            ..
        }) => inbox(InboxChange::Notify {
            seq,
            post_id,
            comment_id,
            commenter,
            addressee,
            answers: comment_id_of_b(),
            name,
            excerpt,
            at,
        }),
        other => other,
    };
    store
        .apply(
            "inbox",
            g,
            &[
                inbox(InboxChange::NamedAuthor {
                    item: comment_id_of_b(),
                    post_id: post_id(1),
                    user_id: b,
                }),
                inbox(InboxChange::SetFollow {
                    post_id: post_id(1),
                    user_id: b,
                    following: false,
                    position: 10,
                }),
                named_reply,
            ],
            9,
            10,
        )
        .await
        .expect("apply");
    assert_eq!(
        of(b).await,
        vec![
            (10, "c".to_owned(), vec!["reply"]),
            (9, "d".to_owned(), vec!["followed"])
        ],
        "the named author hears of the reply, though no longer following"
    );
    // A leaves: nothing of theirs stays.
    store
        .apply(
            "inbox",
            g,
            &[inbox(InboxChange::ForgetUser { user_id: a })],
            10,
            11,
        )
        .await
        .expect("apply");
    assert!(of(a).await.is_empty());
    assert!(
        store
            .following(a, page(None, 10))
            .await
            .expect("following")
            .is_empty()
    );
    assert_eq!(store.inbox_state(a).await.expect("state").read_up_to, 0);
}

/// `user`'s notifications' sequence numbers, each for following alone.
async fn followed_seqs(store: &Store, user: UserId) -> Vec<u64> {
    notified(store, user)
        .await
        .into_iter()
        .map(|(seq, _, reasons)| {
            assert_eq!(reasons, vec!["followed"], "{seq}");
            seq
        })
        .collect()
}

fn set_follow(user: UserId, following: bool, position: u64) -> Change {
    inbox(InboxChange::SetFollow {
        post_id: post_id(1),
        user_id: user,
        following,
        position,
    })
}

/// A follower hears of the comments made while they followed, whenever they ask: not of
/// What comments make in the inbox, applied as one batch (on PostgreSQL one call of the
/// generation's function, which takes the rows set-based) and change by change, gives the same
/// rows: a user who comments twice on a post in one batch follows it once, from the first
/// comment; a reply in the batch finds the named author recorded before it; the stretches a
/// comment counts began before it.
pub async fn the_inbox_in_one_batch_equals_the_inbox_change_by_change(store: Store) {
    let (a, b, c, d) = (ann(), bob(), user_no(3), user_no(4));
    let changes = vec![
        inbox(InboxChange::NamedAuthor {
            item: post_id(1).as_uuid(),
            post_id: post_id(1),
            user_id: a,
        }),
        auto_follow(a, 1),
        notify(2, c, None, "c"),
        auto_follow(c, 2),
        inbox(InboxChange::NamedAuthor {
            item: comment_id(2).as_uuid(),
            post_id: post_id(1),
            user_id: c,
        }),
        notify(3, c, None, "c"),
        auto_follow(c, 3),
        reply(4, b, comment_id(2).as_uuid(), "b"),
        auto_follow(b, 4),
        notify(5, d, Some(b), "d"),
        auto_follow(d, 5),
        auto_follow(c, 5),
    ];
    // Two named authors, four comments kept, four replies, four follows and their stretches.
    one_batch_equals_one_by_one(&store, "inbox", &changes, 18).await;
    let spans = dumped(&store, "inbox")
        .await
        .into_iter()
        .filter(|(table, _)| table == "follow_spans")
        .count();
    assert_eq!(spans, 4, "one stretch each for A, C, B and D");
    let seqs = |told: Vec<(u64, String, Vec<&'static str>)>| {
        told.into_iter().map(|(seq, ..)| seq).collect::<Vec<_>>()
    };
    assert_eq!(
        seqs(notified(&store, a).await),
        vec![5, 4, 3, 2],
        "the post's author hears of every comment"
    );
    assert_eq!(
        seqs(notified(&store, c).await),
        vec![5, 4],
        "C follows from their first comment on, and not of their own"
    );
    assert_eq!(seqs(notified(&store, b).await), vec![5]);
    assert!(notified(&store, d).await.is_empty());
}

/// those between stopping and following again, and still of those from before they stopped.
/// A user who leaves takes along the comments only they were told of, so the live model
/// equals a rebuild that never knew them.
pub async fn following_notifies_of_the_comments_made_while_one_followed(store: Store) {
    let (a, b, c, d) = (ann(), bob(), user_no(3), user_no(4));
    let with_b = |b_too: bool| {
        let mut changes = vec![auto_follow(a, 1)];
        if b_too {
            changes.push(set_follow(b, true, 2));
        }
        changes.extend([notify(3, c, None, "c"), auto_follow(c, 3)]);
        if b_too {
            changes.push(set_follow(b, false, 4));
        }
        changes.push(notify(5, c, None, "c"));
        if b_too {
            changes.push(set_follow(b, true, 6));
        }
        changes.extend([
            notify(7, c, None, "c"),
            set_follow(a, false, 8),
            notify(9, c, None, "c"),
            notify(10, d, None, "d"),
            auto_follow(d, 10),
        ]);
        changes
    };
    live_with(&store, "inbox", &with_b(true), 10).await;
    assert_eq!(
        followed_seqs(&store, a).await,
        vec![7, 5, 3],
        "A stopped at 8"
    );
    assert_eq!(
        followed_seqs(&store, b).await,
        vec![10, 9, 7, 3],
        "B was away from 4 to 6"
    );
    assert_eq!(followed_seqs(&store, c).await, vec![10], "never their own");
    assert!(followed_seqs(&store, d).await.is_empty());
    assert_eq!(
        store.inbox_state(b).await.expect("state").unread,
        4,
        "the count agrees with the list"
    );
    let since = store.notifications_since(4, 9, 100).await.expect("since");
    let mut expected = vec![(5, a), (7, a), (7, b), (9, b)];
    expected.sort_by_key(|(s, u)| (*s, u.as_uuid()));
    assert_eq!(
        since.iter().map(|n| (n.seq, n.user_id)).collect::<Vec<_>>(),
        expected
    );
    let between = store
        .notifications_between(b, 3, 9, 1)
        .await
        .expect("between");
    assert_eq!(between.iter().map(|n| n.seq).collect::<Vec<_>>(), vec![7]);
    let older = store
        .notifications(b, page(Some(9), 1))
        .await
        .expect("a page");
    assert_eq!(older.iter().map(|n| n.seq).collect::<Vec<_>>(), vec![7]);
    // B leaves: comment 9, which only B was told of, goes with them.
    let g = store
        .live("inbox")
        .await
        .expect("live")
        .expect("a generation");
    store
        .apply(
            "inbox",
            g.number,
            &[inbox(InboxChange::ForgetUser { user_id: b })],
            10,
            11,
        )
        .await
        .expect("apply");
    assert!(followed_seqs(&store, b).await.is_empty());
    let left = store.dump("inbox").await.expect("dump");
    let rebuilt = store.create_generation("inbox", 1).await.expect("create");
    store
        .apply("inbox", rebuilt.number, &with_b(false), 0, 11)
        .await
        .expect("apply");
    assert_eq!(
        store
            .promote("inbox", rebuilt.number)
            .await
            .expect("promote"),
        Promotion::Done
    );
    assert_eq!(store.dump("inbox").await.expect("dump"), left);
    assert_eq!(followed_seqs(&store, a).await, vec![7, 5, 3]);
}

fn comment_id_of_b() -> Uuid {
    comment_id(2).as_uuid()
}

/// What comments make in the inbox, in one batch with no other change between them (one call
/// on PostgreSQL): a reply finds the named author recorded just before it, a follow made by a
/// comment counts for the next one, and a comment that notifies nobody leaves no text.
pub async fn a_reply_finds_the_named_author_recorded_earlier_in_its_batch(store: Store) {
    let (a, b, c) = (ann(), bob(), user_no(3));
    let changes = vec![
        // A posts under their name: nobody to tell.
        auto_follow(a, 1),
        inbox(InboxChange::NamedAuthor {
            item: post_id(1).as_uuid(),
            post_id: post_id(1),
            user_id: a,
        }),
        // B comments under their name on it, C answers B's comment.
        reply(2, b, post_id(1).as_uuid(), "b"),
        auto_follow(b, 2),
        inbox(InboxChange::NamedAuthor {
            item: comment_id(2).as_uuid(),
            post_id: post_id(1),
            user_id: b,
        }),
        reply(3, c, comment_id(2).as_uuid(), "c"),
        auto_follow(c, 3),
        // A comments on their own post: B and C hear of it, A does not.
        reply(4, a, post_id(1).as_uuid(), "a"),
    ];
    live_with(&store, "inbox", &changes, 4).await;
    let of = |u| notified(&store, u);
    assert_eq!(
        of(a).await,
        vec![
            (3, "c".to_owned(), vec!["followed"]),
            (2, "b".to_owned(), vec!["reply", "followed"]),
        ]
    );
    assert_eq!(
        of(b).await,
        vec![
            (4, "a".to_owned(), vec!["followed"]),
            (3, "c".to_owned(), vec!["reply", "followed"]),
        ]
    );
    assert_eq!(of(c).await, vec![(4, "a".to_owned(), vec!["followed"])]);
    assert!(store.follows(c, post_id(1)).await.expect("follows"));
    let since = store.notifications_since(0, 4, 100).await.expect("since");
    assert_eq!(since.len(), 5, "{since:?}");
}

/// A follower of a busy post is told the cap ("1 000 or more"), not a count of every unread
/// notification; below the cap the count is exact.
pub async fn the_unread_count_stops_at_its_cap(store: Store) {
    let cap = projections::inbox::UNREAD_CAP;
    let (a, c) = (ann(), user_no(3));
    let mut changes = vec![auto_follow(a, 1)];
    changes.extend((2..=cap + 6).map(|seq| notify(seq, c, None, "c")));
    let g = live_with(&store, "inbox", &changes, cap + 6).await;
    assert_eq!(
        store.inbox_state(a).await.expect("state").unread,
        cap,
        "{} unread, counted to the cap",
        cap + 5
    );
    store
        .apply(
            "inbox",
            g,
            &[inbox(InboxChange::MarkRead {
                user_id: a,
                up_to: cap - 5,
            })],
            cap + 6,
            cap + 7,
        )
        .await
        .expect("apply");
    assert_eq!(
        store.inbox_state(a).await.expect("state").unread,
        11,
        "exact under the cap: the comments after the mark"
    );
}
