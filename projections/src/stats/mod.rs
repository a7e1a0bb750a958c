//! The `stats` projection: what happened on each UTC day (the day of an event's `occurred_at`)
//! and in total: registrations, active users, posts and comments with their anonymous share,
//! tasks by model and final state with their wait and run times, and webhook deliveries; and
//! the port the API reads these figures through.
//!
//! Counters count what happened on a day: a post deleted later was still published that day,
//! so a day's figures never change once its events are in. Which users were active on a day
//! is kept (a private table, never served per user) only so that a user who posts twice counts
//! once. Task durations need the task's earlier events, so the store keeps one row per task and
//! computes percentiles when asked, over the tasks that reached a final state in the range.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::ids::TaskId;
use domain::post::{Author, PostEvent};
use domain::session::SessionEvent;
use domain::task::TaskEvent;
use domain::user::UserEvent;
use domain::{Envelope, Event, UserId};

use crate::{Change, Projection, ReadModelError};

/// The name of the statistics projection.
pub const NAME: &str = "stats";

pub struct Stats;

impl Projection for Stats {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        2
    }

    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        let at = envelope.occurred_at;
        let day = at.date_naive();
        let count = |metric, key: &str| StatsChange::Count {
            day,
            metric,
            key: key.to_owned(),
            delta: 1,
        };
        let active = |user_id: &UserId| StatsChange::Active {
            day,
            user_id: *user_id,
        };
        let finished = |task_id: &TaskId, state| StatsChange::TaskFinished {
            task_id: *task_id,
            state,
            at,
        };
        let changes = match event {
            Event::User(UserEvent::UserRegistered { user_id, .. }) => {
                vec![count(Metric::Registrations, ""), active(user_id)]
            }
            Event::Session(SessionEvent::SessionStarted { user_id, .. }) => vec![active(user_id)],
            // Anonymous content marks nobody active: the statistics would otherwise hold the
            // link between anonymous content and its author, which unregistering must erase and
            // a rebuild could not restore.
            Event::Post(PostEvent::PostPublished { author, .. }) => {
                let mut changes = vec![count(Metric::Posts, "")];
                match author {
                    Author::Named { user_id, .. } => changes.push(active(user_id)),
                    Author::Anonymous { .. } => changes.push(count(Metric::AnonymousPosts, "")),
                }
                changes
            }
            Event::Post(PostEvent::CommentAdded { author, .. }) => {
                let mut changes = vec![count(Metric::Comments, "")];
                match author {
                    Author::Named { user_id, .. } => changes.push(active(user_id)),
                    Author::Anonymous { .. } => {
                        changes.push(count(Metric::AnonymousComments, ""));
                    }
                }
                changes
            }
            Event::Task(TaskEvent::TaskPublished {
                task_id,
                submitter_id,
                model,
                ..
            }) => vec![
                count(Metric::TasksPublished, model.as_str()),
                active(submitter_id),
                StatsChange::TaskPublished {
                    task_id: *task_id,
                    model: model.as_str().to_owned(),
                    at,
                },
            ],
            Event::Task(TaskEvent::TaskClaimed { task_id, .. }) => {
                vec![StatsChange::TaskClaimed {
                    task_id: *task_id,
                    at,
                }]
            }
            Event::Task(TaskEvent::TaskSucceeded { task_id, .. }) => {
                vec![finished(task_id, FinalState::Succeeded)]
            }
            Event::Task(TaskEvent::TaskFailed { task_id, .. }) => {
                vec![finished(task_id, FinalState::Failed)]
            }
            Event::Task(TaskEvent::TaskCancelled { task_id, .. }) => {
                vec![finished(task_id, FinalState::Cancelled)]
            }
            Event::Task(TaskEvent::WebhookAttempted { delivered, .. }) => {
                let mut changes = vec![count(Metric::WebhookAttempts, "")];
                // The task's webhook is done once delivered: a delivered attempt is both the
                // one successful attempt and the delivery.
                if *delivered {
                    changes.push(count(Metric::WebhooksDelivered, ""));
                }
                changes
            }
            Event::Task(TaskEvent::WebhookAbandoned { .. }) => {
                vec![count(Metric::WebhooksAbandoned, "")]
            }
            Event::Task(
                TaskEvent::TaskLeaseExtended { .. }
                | TaskEvent::TaskAttemptFailed { .. }
                | TaskEvent::TaskRequeued { .. },
            )
            | Event::User(UserEvent::AdminGranted { .. })
            | Event::User(UserEvent::UserUnregistered { .. })
            | Event::User(UserEvent::NotificationsRead { .. })
            | Event::User(UserEvent::FavouriteSet { .. })
            | Event::User(UserEvent::FavouriteRemoved { .. })
            | Event::User(UserEvent::ModeratorGranted { .. })
            | Event::User(UserEvent::ModeratorRevoked { .. })
            | Event::User(UserEvent::SessionOpened { .. })
            | Event::User(UserEvent::SessionClosed { .. })
            | Event::Session(SessionEvent::SessionEnded { .. })
            // When a session was used is its user's business: public statistics count logins
            // as activity, as before, and not this.
            | Event::Session(SessionEvent::SessionSeen { .. })
            | Event::Post(
                PostEvent::CommentDeleted { .. }
                | PostEvent::PostDeleted { .. }
                | PostEvent::ReactionSet { .. }
                | PostEvent::PollOpened { .. }
                | PostEvent::PollVoted { .. }
                | PostEvent::FollowSet { .. }
                | PostEvent::ItemReported { .. }
                | PostEvent::ItemFolded { .. }
                | PostEvent::ItemUnfolded { .. }
                | PostEvent::ItemRemoved { .. }
                | PostEvent::ItemRestored { .. },
            )
            | Event::Reservation(_)
            | Event::Verification(_)
            | Event::Model(_)
            | Event::Worker(_)
            | Event::Sanction(_) => vec![],
        };
        changes.into_iter().map(Change::Stats).collect()
    }
}

/// A counter of the statistics, stored under its name per day (and per model for tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Registrations,
    Posts,
    AnonymousPosts,
    Comments,
    AnonymousComments,
    /// Keyed by model.
    TasksPublished,
    WebhookAttempts,
    WebhooksDelivered,
    WebhooksAbandoned,
}

impl Metric {
    const ALL: [Metric; 9] = [
        Metric::Registrations,
        Metric::Posts,
        Metric::AnonymousPosts,
        Metric::Comments,
        Metric::AnonymousComments,
        Metric::TasksPublished,
        Metric::WebhookAttempts,
        Metric::WebhooksDelivered,
        Metric::WebhooksAbandoned,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Registrations => "registrations",
            Metric::Posts => "posts",
            Metric::AnonymousPosts => "posts_anonymous",
            Metric::Comments => "comments",
            Metric::AnonymousComments => "comments_anonymous",
            Metric::TasksPublished => "tasks_published",
            Metric::WebhookAttempts => "webhook_attempts",
            Metric::WebhooksDelivered => "webhooks_delivered",
            Metric::WebhooksAbandoned => "webhooks_abandoned",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FinalState {
    Succeeded,
    Failed,
    Cancelled,
}

impl FinalState {
    const ALL: [FinalState; 3] = [
        FinalState::Succeeded,
        FinalState::Failed,
        FinalState::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FinalState::Succeeded => "succeeded",
            FinalState::Failed => "failed",
            FinalState::Cancelled => "cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// What an event changes in the statistics.
#[derive(Debug, Clone, PartialEq)]
pub enum StatsChange {
    /// Adds `delta` to a counter of `day`; `key` is the model for per-model counters, else "".
    Count {
        day: NaiveDate,
        metric: Metric,
        key: String,
        delta: i64,
    },
    /// The user did something on `day`: registered, logged in, posted, commented (under their
    /// name or not) or published a task.
    Active { day: NaiveDate, user_id: UserId },
    TaskPublished {
        task_id: TaskId,
        model: String,
        at: DateTime<Utc>,
    },
    /// A worker claimed the task: the first claim ends its wait, the last starts its run.
    TaskClaimed { task_id: TaskId, at: DateTime<Utc> },
    /// The task reached a final state; it counts on the UTC day of `at`.
    TaskFinished {
        task_id: TaskId,
        state: FinalState,
        at: DateTime<Utc>,
    },
}

/// Merges a batch's counter increments per day, metric and key, and drops repeated marks of
/// one user's activity on one day. Nothing but these changes touches counters and activity,
/// so moving them to the end of the batch changes nothing but the number of writes.
#[derive(Debug, Default)]
pub(crate) struct Merge {
    counts: BTreeMap<(NaiveDate, Metric, String), i64>,
    active: BTreeSet<(NaiveDate, UserId)>,
}

impl Merge {
    /// Keeps a counter or activity change for later; gives any other change back.
    pub(crate) fn absorb(&mut self, change: StatsChange) -> Option<StatsChange> {
        match change {
            StatsChange::Count {
                day,
                metric,
                key,
                delta,
            } => {
                *self.counts.entry((day, metric, key)).or_default() += delta;
                None
            }
            StatsChange::Active { day, user_id } => {
                self.active.insert((day, user_id));
                None
            }
            other => Some(other),
        }
    }

    pub(crate) fn into_changes(self) -> impl Iterator<Item = StatsChange> {
        let counts =
            self.counts
                .into_iter()
                .map(|((day, metric, key), delta)| StatsChange::Count {
                    day,
                    metric,
                    key,
                    delta,
                });
        let active = self
            .active
            .into_iter()
            .map(|(day, user_id)| StatsChange::Active { day, user_id });
        counts.chain(active)
    }
}

/// Nearest-rank percentiles of durations in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// How many durations there were; `p50` and `p95` are `None` when there were none.
    pub samples: u64,
    pub p50: Option<u64>,
    pub p95: Option<u64>,
}

/// Tasks of one model, or of all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFigures {
    pub published: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// From publication to the first claim, over the finished tasks that were ever claimed.
    pub wait_ms: Percentiles,
    /// From the last claim to the result, over the tasks that succeeded or failed (a cancelled
    /// task was not running when it ended).
    pub run_ms: Percentiles,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookFigures {
    pub attempts: u64,
    pub delivered: u64,
    pub abandoned: u64,
}

/// The statistics of one day, or of all time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub registrations: u64,
    /// Users who did something (see [`StatsChange::Active`]), each counted once.
    pub active_users: u64,
    pub posts: u64,
    pub anonymous_posts: u64,
    pub comments: u64,
    pub anonymous_comments: u64,
    /// Tasks of every model: published in the range, or finished in it (final states and
    /// durations).
    pub tasks: TaskFigures,
    pub tasks_by_model: BTreeMap<String, TaskFigures>,
    pub webhooks: WebhookFigures,
}

impl Figures {
    /// Adds the value of a stored counter.
    pub fn add_count(&mut self, metric: Metric, key: &str, value: u64) {
        let field = match metric {
            Metric::Registrations => &mut self.registrations,
            Metric::Posts => &mut self.posts,
            Metric::AnonymousPosts => &mut self.anonymous_posts,
            Metric::Comments => &mut self.comments,
            Metric::AnonymousComments => &mut self.anonymous_comments,
            Metric::WebhookAttempts => &mut self.webhooks.attempts,
            Metric::WebhooksDelivered => &mut self.webhooks.delivered,
            Metric::WebhooksAbandoned => &mut self.webhooks.abandoned,
            Metric::TasksPublished => {
                self.model(key).published += value;
                &mut self.tasks.published
            }
        };
        *field += value;
    }

    /// Adds `tasks` tasks of `model` that ended in `state`.
    pub fn add_finished(&mut self, model: &str, state: FinalState, tasks: u64) {
        for figures in [
            &mut self.tasks,
            self.tasks_by_model.entry(model.to_owned()).or_default(),
        ] {
            *match state {
                FinalState::Succeeded => &mut figures.succeeded,
                FinalState::Failed => &mut figures.failed,
                FinalState::Cancelled => &mut figures.cancelled,
            } += tasks;
        }
    }

    /// The task figures of `model`, or of all models when `None`.
    pub fn tasks_of(&mut self, model: Option<&str>) -> &mut TaskFigures {
        match model {
            Some(m) => self.model(m),
            None => &mut self.tasks,
        }
    }

    fn model(&mut self, model: &str) -> &mut TaskFigures {
        self.tasks_by_model.entry(model.to_owned()).or_default()
    }
}

/// The figures of one UTC day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayFigures {
    pub day: NaiveDate,
    pub figures: Figures,
}

/// What the API reads of the statistics. Implemented by the read-model stores.
#[async_trait]
pub trait StatsQueries: Send + Sync + 'static {
    /// The figures of all time: every counter summed, each user active ever counted once.
    async fn overview(&self) -> Result<Figures, ReadModelError>;
    /// The figures of each day from `from` to `to` (inclusive, `from <= to`), days without
    /// activity included.
    async fn daily(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayFigures>, ReadModelError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::model::ModelName;
    use domain::{AuthorToken, DomainEvent, KeyRef, Metadata, Personal, PostId, StreamId};
    use uuid::Uuid;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn changes<E: DomainEvent>(occurred_at: &str, event: &E) -> Vec<StatsChange> {
        let (t, data) = event.encode();
        let env = Envelope {
            position: 1,
            event_id: Uuid::now_v7(),
            stream: StreamId::parse("any-1").unwrap(),
            version: 1,
            event_type: t.into(),
            schema: event.schema(),
            occurred_at: at(occurred_at),
            data,
            metadata: Metadata::default(),
        };
        let decoded = Event::decode(&env).unwrap();
        Stats
            .apply(&env, &decoded)
            .into_iter()
            .map(|c| match c {
                Change::Stats(s) => s,
                other => panic!("not a stats change: {other:?}"),
            })
            .collect()
    }

    fn count(d: &str, metric: Metric, key: &str) -> StatsChange {
        StatsChange::Count {
            day: day(d),
            metric,
            key: key.into(),
            delta: 1,
        }
    }

    const USER: UserId = UserId::new(Uuid::from_u128(7));
    const TASK: TaskId = TaskId::new(Uuid::from_u128(9));

    #[test]
    fn an_anonymous_comment_counts_on_its_utc_day_and_marks_nobody_active() {
        let token = AuthorToken::new("t1");
        let event = PostEvent::CommentAdded {
            post_id: PostId::new(Uuid::from_u128(1)),
            comment_id: domain::CommentId::new(Uuid::from_u128(2)),
            author: Author::Anonymous {
                user_id: Personal::new(token.key_ref(), USER),
                token,
                pseudonym: "Alice".into(),
            },
            anonymous: true,
            is_host: false,
            body: "b".into(),
            reply_to: None,
            new_commenter: true,
            addressee: None,
        };
        // 23:30 in UTC-05:00 is the next day in UTC.
        assert_eq!(
            changes("2026-03-01T23:30:00-05:00", &event),
            vec![
                count("2026-03-02", Metric::Comments, ""),
                count("2026-03-02", Metric::AnonymousComments, ""),
            ]
        );
    }

    #[test]
    fn named_posts_registrations_and_logins() {
        let post = PostEvent::PostPublished {
            post_id: PostId::new(Uuid::from_u128(1)),
            author: Author::Named {
                user_id: USER,
                username: Personal::new(KeyRef::user(USER), "ann".into()),
            },
            anonymous: false,
            title: None,
            body: "b".into(),
            tags: vec![],
        };
        let active = StatsChange::Active {
            day: day("2026-03-01"),
            user_id: USER,
        };
        assert_eq!(
            changes("2026-03-01T10:00:00Z", &post),
            vec![count("2026-03-01", Metric::Posts, ""), active.clone()]
        );
        let registered = UserEvent::UserRegistered {
            user_id: USER,
            email: Personal::new(KeyRef::user(USER), "ann@campus.edu".into()),
            username: Personal::new(KeyRef::user(USER), "ann".into()),
            password_hash: Personal::new(KeyRef::user(USER), "h".into()),
        };
        assert_eq!(
            changes("2026-03-01T10:00:00Z", &registered),
            vec![
                count("2026-03-01", Metric::Registrations, ""),
                active.clone()
            ]
        );
        let login = SessionEvent::SessionStarted {
            session_id: domain::SessionId::new(Uuid::from_u128(3)),
            user_id: USER,
            token_hash: "t".into(),
            expires_at: at("2026-04-01T10:00:00Z"),
            device: None,
        };
        assert_eq!(changes("2026-03-01T10:00:00Z", &login), vec![active]);
        let deleted = PostEvent::PostDeleted {
            post_id: PostId::new(Uuid::from_u128(1)),
            deleted_by: None,
            by_admin: false,
        };
        assert_eq!(changes("2026-03-02T10:00:00Z", &deleted), vec![]);
    }

    #[test]
    fn a_task_is_published_per_model_claimed_and_finished() {
        let published = TaskEvent::TaskPublished {
            task_id: TASK,
            submitter_id: USER,
            model: ModelName::parse("sdxl").unwrap(),
            input: serde_json::json!({}),
            webhook_url: None,
            priority: 0,
            max_attempts: 3,
        };
        let t = "2026-03-01T10:00:00Z";
        assert_eq!(
            changes(t, &published),
            vec![
                count("2026-03-01", Metric::TasksPublished, "sdxl"),
                StatsChange::Active {
                    day: day("2026-03-01"),
                    user_id: USER
                },
                StatsChange::TaskPublished {
                    task_id: TASK,
                    model: "sdxl".into(),
                    at: at(t)
                },
            ]
        );
        let worker_id = domain::ids::WorkerId::new(Uuid::from_u128(4));
        let claimed = TaskEvent::TaskClaimed {
            task_id: TASK,
            worker_id,
            attempt: 1,
            lease_until: at(t),
        };
        assert_eq!(
            changes(t, &claimed),
            vec![StatsChange::TaskClaimed {
                task_id: TASK,
                at: at(t)
            }]
        );
        let requeued = TaskEvent::TaskRequeued {
            task_id: TASK,
            attempts: 1,
        };
        assert_eq!(changes(t, &requeued), vec![]);
        let ended = [
            (
                TaskEvent::TaskSucceeded {
                    task_id: TASK,
                    worker_id,
                    attempt: 1,
                    result: serde_json::json!(1),
                },
                FinalState::Succeeded,
            ),
            (
                TaskEvent::TaskFailed {
                    task_id: TASK,
                    attempts: 3,
                    reason: "r".into(),
                },
                FinalState::Failed,
            ),
            (
                TaskEvent::TaskCancelled {
                    task_id: TASK,
                    by: USER,
                },
                FinalState::Cancelled,
            ),
        ];
        for (event, state) in ended {
            assert_eq!(
                changes(t, &event),
                vec![StatsChange::TaskFinished {
                    task_id: TASK,
                    state,
                    at: at(t)
                }]
            );
        }
    }

    #[test]
    fn webhook_attempts_deliveries_and_abandonments() {
        let attempt = |delivered| TaskEvent::WebhookAttempted {
            task_id: TASK,
            attempt: 1,
            status: Some(500),
            error: None,
            delivered,
        };
        let t = "2026-03-01T10:00:00Z";
        assert_eq!(
            changes(t, &attempt(false)),
            vec![count("2026-03-01", Metric::WebhookAttempts, "")]
        );
        assert_eq!(
            changes(t, &attempt(true)),
            vec![
                count("2026-03-01", Metric::WebhookAttempts, ""),
                count("2026-03-01", Metric::WebhooksDelivered, "")
            ]
        );
        let abandoned = TaskEvent::WebhookAbandoned {
            task_id: TASK,
            attempts: 5,
        };
        assert_eq!(
            changes(t, &abandoned),
            vec![count("2026-03-01", Metric::WebhooksAbandoned, "")]
        );
    }

    #[test]
    fn a_batch_writes_each_counter_and_activity_mark_once() {
        let d = day("2026-03-01");
        let t = at("2026-03-01T10:00:00Z");
        let active = StatsChange::Active {
            day: d,
            user_id: USER,
        };
        let claimed = StatsChange::TaskClaimed {
            task_id: TASK,
            at: t,
        };
        let batch = [
            count("2026-03-01", Metric::Comments, ""),
            active.clone(),
            claimed.clone(),
            count("2026-03-01", Metric::Comments, ""),
            active.clone(),
            count("2026-03-02", Metric::Comments, ""),
        ];
        let merged = crate::change::coalesce(batch.into_iter().map(Change::Stats).collect());
        let twice = StatsChange::Count {
            day: d,
            metric: Metric::Comments,
            key: String::new(),
            delta: 2,
        };
        assert_eq!(
            merged,
            [
                claimed,
                twice,
                count("2026-03-02", Metric::Comments, ""),
                active
            ]
            .into_iter()
            .map(Change::Stats)
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn stored_names_read_back() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
        }
        for s in FinalState::ALL {
            assert_eq!(FinalState::parse(s.as_str()), Some(s));
        }
        assert_eq!(Metric::parse("nope"), None);
    }

    #[test]
    fn figures_add_up_per_model_and_in_total() {
        let mut f = Figures::default();
        f.add_count(Metric::TasksPublished, "sdxl", 2);
        f.add_count(Metric::TasksPublished, "whisper", 1);
        f.add_count(Metric::AnonymousPosts, "", 4);
        f.add_finished("sdxl", FinalState::Failed, 1);
        f.add_finished("whisper", FinalState::Failed, 2);
        assert_eq!((f.tasks.published, f.tasks.failed), (3, 3));
        assert_eq!(f.tasks_by_model["sdxl"].published, 2);
        assert_eq!(f.tasks_by_model["whisper"].failed, 2);
        assert_eq!(f.anonymous_posts, 4);
        f.tasks_of(Some("sdxl")).run_ms.samples = 1;
        assert_eq!(f.tasks_by_model["sdxl"].run_ms.samples, 1);
        assert_eq!(f.tasks.run_ms.samples, 0);
    }
}
