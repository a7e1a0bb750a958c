//! The query ports, once for both backends: each answer is a query of a table's file, mapped
//! by that file's row mapping.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::Position;
use domain::model::ModelName;
use domain::{CommentId, PostId, TaskId, UserId};
use projections::feed::HotFormula;
use projections::inbox::{
    FavouriteView, FolderView, FollowView, InboxQueries, InboxState, NotificationView,
};
use projections::moderation::{LogEntry, ModerationQueries, QueueItem};
use projections::ports::Page;
use projections::stats::{DayFigures, Figures, FinalState, Metric, Percentiles};
use projections::tasks::{HistoryLine, ModelView, TaskQueries, TaskView, WorkerView};
use projections::views::{
    CommentView, PostView, SanctionView, SessionSummary, SessionView, UserView,
};
use projections::{CommentQueries, FeedQueries, ReadModelError, StatsQueries, UserQueries};

use super::Store;
use super::sql::{Db, Map, Stmt, Value};
use super::tables::{
    comments, favourites, feed, feed_marks, follows, models, moderation, notifications, sanctions,
    sessions, stats_active, stats_counters, stats_tasks, task_history, tasks, users, workers,
};

#[allow(private_bounds)]
impl<D: Db> Store<D> {
    async fn one<T: Send + 'static>(
        &self,
        stmt: Stmt,
        map: Map<T>,
    ) -> Result<Option<T>, ReadModelError> {
        Ok(self.db.rows(stmt, map).await?.into_iter().next())
    }
}

#[async_trait]
impl<D: Db> FeedQueries for Store<D> {
    async fn feed(&self, page: Page) -> Result<Vec<PostView>, ReadModelError> {
        self.db
            .rows(feed::page(page.cursor, page.limit), feed::view)
            .await
    }

    async fn post(&self, id: PostId) -> Result<Option<PostView>, ReadModelError> {
        self.one(feed::by_id(id), feed::view).await
    }

    async fn marks(
        &self,
        post: PostId,
        handles: &[String],
    ) -> Result<Vec<(String, i64)>, ReadModelError> {
        if handles.is_empty() {
            return Ok(vec![]);
        }
        self.db
            .rows(feed_marks::of(post, handles), |row| {
                Ok((row.text(0)?, row.int(1)?))
            })
            .await
    }

    async fn hot(
        &self,
        formula: &HotFormula,
        limit: usize,
    ) -> Result<Vec<PostView>, ReadModelError> {
        self.db.rows(feed::hot(formula, limit), feed::view).await
    }
}

#[async_trait]
impl<D: Db> CommentQueries for Store<D> {
    async fn comments(&self, post: PostId, page: Page) -> Result<Vec<CommentView>, ReadModelError> {
        self.db
            .rows(
                comments::page(post, page.cursor, page.limit),
                comments::view,
            )
            .await
    }

    async fn comments_of_live_post(
        &self,
        post: PostId,
        page: Page,
    ) -> Result<Option<Vec<CommentView>>, ReadModelError> {
        self.db
            .rows_if(
                feed::exists(post),
                comments::page(post, page.cursor, page.limit),
                comments::view,
            )
            .await
    }

    async fn comment(&self, id: CommentId) -> Result<Option<CommentView>, ReadModelError> {
        self.one(comments::by_id(id), comments::view).await
    }
}

#[async_trait]
impl<D: Db> InboxQueries for Store<D> {
    async fn notifications(
        &self,
        user: UserId,
        page: Page,
    ) -> Result<Vec<NotificationView>, ReadModelError> {
        self.db
            .rows(
                notifications::page(user, page.cursor, page.limit),
                notifications::view,
            )
            .await
    }

    async fn inbox_state(&self, user: UserId) -> Result<InboxState, ReadModelError> {
        let state = self
            .one(notifications::state(user), |row| {
                Ok(InboxState {
                    read_up_to: row.int(0)? as Position,
                    unread: row.int(1)? as u64,
                })
            })
            .await?;
        Ok(state.unwrap_or_default())
    }

    async fn notifications_between(
        &self,
        user: UserId,
        after: Position,
        up_to: Position,
        limit: usize,
    ) -> Result<Vec<NotificationView>, ReadModelError> {
        self.db
            .rows(
                notifications::between(user, after, up_to, limit),
                notifications::view,
            )
            .await
    }

    async fn notifications_since(
        &self,
        after: Position,
        up_to: Position,
        limit: usize,
    ) -> Result<Vec<NotificationView>, ReadModelError> {
        self.db
            .rows(
                notifications::since(after, up_to, limit),
                notifications::view,
            )
            .await
    }

    async fn pruned_up_to(&self) -> Result<Position, ReadModelError> {
        let up_to = self
            .one(notifications::pruned(), |row| Ok(row.int(0)? as Position))
            .await?;
        Ok(up_to.unwrap_or(0))
    }

    async fn following(&self, user: UserId, page: Page) -> Result<Vec<FollowView>, ReadModelError> {
        self.db
            .rows(follows::page(user, page.cursor, page.limit), follows::view)
            .await
    }

    async fn follows(&self, user: UserId, post: PostId) -> Result<bool, ReadModelError> {
        Ok(self
            .one(follows::one(user, post), |_| Ok(()))
            .await?
            .is_some())
    }

    async fn favourites(
        &self,
        user: UserId,
        folder: Option<&str>,
        page: Page,
    ) -> Result<Vec<FavouriteView>, ReadModelError> {
        self.db
            .rows(
                favourites::page(user, folder, page.cursor, page.limit),
                favourites::view,
            )
            .await
    }

    async fn folders(&self, user: UserId) -> Result<Vec<FolderView>, ReadModelError> {
        self.db
            .rows(favourites::folders(user), favourites::folder)
            .await
    }
}

#[async_trait]
impl<D: Db> UserQueries for Store<D> {
    async fn user(&self, id: UserId) -> Result<Option<UserView>, ReadModelError> {
        let Some(mut user) = self.one(users::by_id(id), users::view).await? else {
            return Ok(None);
        };
        user.sanctions = self
            .db
            .rows(sanctions::terms_of(id), sanctions::term)
            .await?;
        Ok(Some(user))
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionView>, ReadModelError> {
        let Some(mut session) = self
            .one(sessions::by_token(token_hash), sessions::view)
            .await?
        else {
            return Ok(None);
        };
        session.user.sanctions = self
            .db
            .rows(sanctions::terms_of(session.user.user_id), sanctions::term)
            .await?;
        Ok(Some(session))
    }

    async fn sanctions_of(&self, user: UserId) -> Result<Vec<SanctionView>, ReadModelError> {
        self.db
            .rows(sanctions::of_user(user), sanctions::view)
            .await
    }

    async fn appeals(&self, limit: usize) -> Result<Vec<SanctionView>, ReadModelError> {
        self.db
            .rows(sanctions::appeals(limit), sanctions::view)
            .await
    }

    async fn sessions_of(&self, user: UserId) -> Result<Vec<SessionSummary>, ReadModelError> {
        self.db
            .rows(sessions::of_user(user), sessions::summary)
            .await
    }
}

#[async_trait]
impl<D: Db> ModerationQueries for Store<D> {
    async fn moderation_log(&self, page: Page) -> Result<Vec<LogEntry>, ReadModelError> {
        self.db
            .rows(
                moderation::log_page(page.cursor, page.limit),
                moderation::log_entry,
            )
            .await
    }

    async fn queue(&self, limit: usize) -> Result<Vec<QueueItem>, ReadModelError> {
        let rows = self
            .db
            .rows(moderation::queue(limit), moderation::queue_item)
            .await?;
        let reports = self
            .db
            .rows(moderation::reports_of_queue(limit), |row| {
                Ok((row.uuid(0)?, row.text(1)?, row.opt_text(2)?))
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (mut item, id) in rows {
            let mut reasons: BTreeMap<String, i64> = BTreeMap::new();
            for (_, reason, text) in reports.iter().filter(|(of, _, _)| *of == id) {
                *reasons.entry(reason.clone()).or_default() += 1;
                item.texts.extend(text.clone());
            }
            item.reasons = reasons.into_iter().collect();
            item.reasons
                .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            out.push(item);
        }
        Ok(out)
    }

    async fn sanctions_due(
        &self,
        limit: usize,
    ) -> Result<
        Vec<(
            domain::moderation::Item,
            domain::moderation::Reason,
            domain::moderation::Role,
        )>,
        ReadModelError,
    > {
        self.db
            .rows(moderation::due(limit), moderation::due_item)
            .await
    }
}

#[async_trait]
impl<D: Db> TaskQueries for Store<D> {
    async fn model(&self, name: &ModelName) -> Result<Option<ModelView>, ReadModelError> {
        self.one(models::by_name(name), models::view).await
    }

    async fn models(&self) -> Result<Vec<ModelView>, ReadModelError> {
        self.db.rows(models::all(), models::view).await
    }

    async fn worker_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<WorkerView>, ReadModelError> {
        self.one(workers::by_token(token_hash), workers::view).await
    }

    async fn workers(&self) -> Result<Vec<WorkerView>, ReadModelError> {
        self.db.rows(workers::all(), workers::view).await
    }

    async fn task(&self, id: TaskId) -> Result<Option<TaskView>, ReadModelError> {
        self.one(tasks::by_id(id), tasks::view).await
    }

    async fn task_history(&self, id: TaskId) -> Result<Vec<HistoryLine>, ReadModelError> {
        self.db
            .rows(task_history::of_task(id), task_history::line)
            .await
    }

    async fn tasks_of(
        &self,
        submitter: UserId,
        page: Page,
    ) -> Result<Vec<TaskView>, ReadModelError> {
        self.db
            .rows(
                tasks::of_submitter(submitter, page.cursor, page.limit),
                tasks::view,
            )
            .await
    }

    async fn claimable(
        &self,
        models: &[ModelName],
        limit: usize,
    ) -> Result<Vec<TaskId>, ReadModelError> {
        if models.is_empty() {
            return Ok(vec![]);
        }
        self.db
            .rows(tasks::claimable(models, limit), tasks::id)
            .await
    }

    async fn expired_leases(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<TaskId>, ReadModelError> {
        self.db.rows(tasks::expired(&now, limit), tasks::id).await
    }

    async fn pending_webhooks(&self, limit: usize) -> Result<Vec<TaskView>, ReadModelError> {
        self.db
            .rows(tasks::owing_webhooks(limit), tasks::view)
            .await
    }
}

/// The days a statistics query covers: all time (one bucket, named ""), or `from..=to` (one
/// bucket per day with any activity).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    AllTime,
    Days(NaiveDate, NaiveDate),
}

impl Scope {
    /// `SELECT` expression of the bucket, from the table's day column.
    pub(crate) fn bucket(self, day: &str) -> String {
        match self {
            Scope::AllTime => "''".into(),
            Scope::Days(..) => day.into(),
        }
    }

    /// The condition on the day column: any day at all (for tasks, finished at all), or
    /// between `$1` and `$2`, the first and last day.
    pub(crate) fn covers(self, day: &str) -> String {
        match self {
            Scope::AllTime => format!("{day} IS NOT NULL"),
            Scope::Days(..) => format!("{day} BETWEEN $1 AND $2"),
        }
    }

    /// What `GROUP BY` starts with.
    pub(crate) fn group(self, day: &str) -> String {
        match self {
            Scope::AllTime => String::new(),
            Scope::Days(..) => format!("{day}, "),
        }
    }

    /// `sql` with the values of `$1` and `$2`, if it has them.
    pub(crate) fn stmt(self, sql: String) -> Stmt {
        let args = match self {
            Scope::AllTime => vec![],
            Scope::Days(from, to) => {
                vec![Value::text(from.to_string()), Value::text(to.to_string())]
            }
        };
        Stmt::new(sql, args)
    }
}

fn unexpected(what: &str, value: &str) -> ReadModelError {
    ReadModelError::Backend(format!("stats: unexpected {what} {value:?}"))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

type Counter = (String, String, String, i64);
type Duration = (String, Option<String>, String, i64, i64, i64);

#[allow(private_bounds)]
impl<D: Db> Store<D> {
    /// The figures of each bucket of `scope` that saw any activity.
    async fn figures(&self, scope: Scope) -> Result<BTreeMap<String, Figures>, ReadModelError> {
        let mut buckets: BTreeMap<String, Figures> = BTreeMap::new();
        let four: Map<Counter> = |r| Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.int(3)?));
        for (day, metric, key, value) in self.db.rows(stats_counters::totals(scope), four).await? {
            let metric = Metric::parse(&metric).ok_or_else(|| unexpected("metric", &metric))?;
            buckets
                .entry(day)
                .or_default()
                .add_count(metric, &key, count(value));
        }
        let users = self
            .db
            .rows(stats_active::users(scope), |r| Ok((r.text(0)?, r.int(1)?)))
            .await?;
        for (day, users) in users {
            buckets.entry(day).or_default().active_users = count(users);
        }
        for (day, model, state, tasks) in self.db.rows(stats_tasks::finished(scope), four).await? {
            let state = FinalState::parse(&state).ok_or_else(|| unexpected("state", &state))?;
            buckets
                .entry(day)
                .or_default()
                .add_finished(&model, state, count(tasks));
        }
        let durations: Map<Duration> = |r| {
            Ok((
                r.text(0)?,
                r.opt_text(1)?,
                r.text(2)?,
                r.int(3)?,
                r.int(4)?,
                r.int(5)?,
            ))
        };
        for (day, model, kind, samples, p50, p95) in self
            .db
            .rows(stats_tasks::durations(scope), durations)
            .await?
        {
            let percentiles = Percentiles {
                samples: count(samples),
                p50: Some(count(p50)),
                p95: Some(count(p95)),
            };
            let tasks = buckets.entry(day).or_default().tasks_of(model.as_deref());
            match kind.as_str() {
                "wait" => tasks.wait_ms = percentiles,
                "run" => tasks.run_ms = percentiles,
                other => return Err(unexpected("duration kind", other)),
            }
        }
        Ok(buckets)
    }
}

#[async_trait]
impl<D: Db> StatsQueries for Store<D> {
    async fn overview(&self) -> Result<Figures, ReadModelError> {
        let mut buckets = self.figures(Scope::AllTime).await?;
        Ok(buckets.remove("").unwrap_or_default())
    }

    async fn daily(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayFigures>, ReadModelError> {
        let mut buckets = self.figures(Scope::Days(from, to)).await?;
        Ok(from
            .iter_days()
            .take_while(|day| *day <= to)
            .map(|day| DayFigures {
                day,
                figures: buckets.remove(&day.to_string()).unwrap_or_default(),
            })
            .collect())
    }
}
