//! The `stats` projection's tables and queries, one SQL for both backends.
//!
//! Its columns are text and integers only (days as `YYYY-MM-DD`, ids as text, times as epoch
//! milliseconds), so the same statements run on SQLite and PostgreSQL and task durations are
//! exact integer differences. Percentiles are nearest-rank (the smallest duration with at
//! least p% of the samples at or below it), ranked by the database with the window functions
//! both backends have, so a query never loads every task.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use async_trait::async_trait;
use chrono::NaiveDate;
use projections::stats::{DayFigures, Figures, FinalState, Metric, Percentiles, StatsChange};
use projections::{ReadModelError, StatsQueries};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Postgres, Sqlite, Type};

use super::{PostgresReadModels, SqliteReadModels, backend, retry_transient};

/// Column definitions, the same on both backends.
pub(super) const COUNTERS: &str = "day TEXT NOT NULL, metric TEXT NOT NULL, key TEXT NOT NULL, \
     value BIGINT NOT NULL, PRIMARY KEY (day, metric, key)";
/// Who was active on which day: private, only ever counted.
pub(super) const ACTIVE: &str =
    "day TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (day, user_id)";
/// One row per task: its model, and the times its wait and run are measured between.
pub(super) const TASKS: &str = "task_id TEXT PRIMARY KEY, model TEXT NOT NULL, \
     published_ms BIGINT NOT NULL, first_claimed_ms BIGINT, claimed_ms BIGINT, \
     finished_ms BIGINT, finished_day TEXT, state TEXT";

/// The days a query covers: all time (one bucket, named ""), or `from..=to` (one bucket per
/// day with any activity).
#[derive(Debug, Clone, Copy)]
enum Scope {
    AllTime,
    Days(NaiveDate, NaiveDate),
}

impl Scope {
    /// `SELECT` expression of the bucket, from the table's day column.
    fn bucket(self, day: &str) -> String {
        match self {
            Scope::AllTime => "''".into(),
            Scope::Days(..) => day.into(),
        }
    }

    /// The condition on the day column: any day at all (for tasks, finished at all), or
    /// between `$1` and `$2`, the first and last day.
    fn covers(self, day: &str) -> String {
        match self {
            Scope::AllTime => format!("{day} IS NOT NULL"),
            Scope::Days(..) => format!("{day} BETWEEN $1 AND $2"),
        }
    }

    /// What `GROUP BY` starts with.
    fn group(self, day: &str) -> String {
        match self {
            Scope::AllTime => String::new(),
            Scope::Days(..) => format!("{day}, "),
        }
    }

    /// The values of `$1` and `$2`, if the SQL has them.
    fn bounds(self) -> Option<(String, String)> {
        match self {
            Scope::AllTime => None,
            Scope::Days(from, to) => Some((from.to_string(), to.to_string())),
        }
    }
}

/// Per bucket of a [`Scope`]: counter totals.
fn counters_sql(scope: Scope) -> String {
    format!(
        "SELECT {}, metric, key, CAST(SUM(value) AS BIGINT) FROM stats_counters \
         WHERE {} GROUP BY {}metric, key",
        scope.bucket("day"),
        scope.covers("day"),
        scope.group("day")
    )
}

/// Per bucket: distinct active users.
fn active_sql(scope: Scope) -> String {
    let group = match scope {
        Scope::AllTime => String::new(),
        Scope::Days(..) => " GROUP BY day".into(),
    };
    format!(
        "SELECT {}, COUNT(DISTINCT user_id) FROM stats_active WHERE {}{group}",
        scope.bucket("day"),
        scope.covers("day")
    )
}

/// Per bucket, model and final state: tasks that ended there.
fn finished_sql(scope: Scope) -> String {
    format!(
        "SELECT {}, model, state, COUNT(*) FROM stats_tasks WHERE {} \
         GROUP BY {}model, state",
        scope.bucket("finished_day"),
        scope.covers("finished_day"),
        scope.group("finished_day")
    )
}

/// Per bucket, model (NULL: all models) and kind (`wait` or `run`): samples, p50 and p95 of
/// the durations of the tasks that ended there. The nearest rank of p in n samples is
/// ceil(p * n / 100), computed in integers.
fn durations_sql(scope: Scope) -> String {
    let (bucket, covers) = (scope.bucket("finished_day"), scope.covers("finished_day"));
    format!(
        "WITH durations AS ( \
             SELECT {bucket} AS day, model, 'wait' AS kind, first_claimed_ms - published_ms AS ms \
               FROM stats_tasks WHERE {covers} AND first_claimed_ms IS NOT NULL \
             UNION ALL \
             SELECT {bucket}, model, 'run', finished_ms - claimed_ms \
               FROM stats_tasks WHERE {covers} AND claimed_ms IS NOT NULL \
                 AND state <> 'cancelled' \
         ), samples AS ( \
             SELECT day, model, kind, ms FROM durations \
             UNION ALL \
             SELECT day, NULL, kind, ms FROM durations \
         ), ranked AS ( \
             SELECT day, model, kind, ms, \
                    ROW_NUMBER() OVER (PARTITION BY day, model, kind ORDER BY ms) AS nth, \
                    COUNT(*) OVER (PARTITION BY day, model, kind) AS n \
               FROM samples \
         ) \
         SELECT day, model, kind, MAX(n), \
                MAX(CASE WHEN nth = (n * 50 + 99) / 100 THEN ms END), \
                MAX(CASE WHEN nth = (n * 95 + 99) / 100 THEN ms END) \
           FROM ranked GROUP BY day, model, kind"
    )
}

fn unexpected(what: &str, value: &str) -> ReadModelError {
    ReadModelError::Backend(format!("stats: unexpected {what} {value:?}"))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The statistics SQL on the backend `DB`.
pub(super) struct Stats<DB>(PhantomData<DB>);

impl<DB> Stats<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> (String, i64): FromRow<'r, DB::Row>,
    for<'r> (String, String, String, i64): FromRow<'r, DB::Row>,
    for<'r> (String, Option<String>, String, i64, i64, i64): FromRow<'r, DB::Row>,
{
    /// Applies one change to generation `g`. Counters add up, so each event must be applied
    /// once: the runner commits the checkpoint in the same transaction.
    pub(super) async fn apply(
        conn: &mut DB::Connection,
        g: u32,
        change: &StatsChange,
    ) -> Result<(), sqlx::Error> {
        match change {
            StatsChange::Count {
                day,
                metric,
                key,
                delta,
            } => sqlx::query(&format!(
                "INSERT INTO stats_counters_g{g} (day, metric, key, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (day, metric, key) DO UPDATE \
                 SET value = stats_counters_g{g}.value + excluded.value"
            ))
            .bind(day.to_string())
            .bind(metric.as_str().to_owned())
            .bind(key.clone())
            .bind(*delta)
            .execute(&mut *conn)
            .await?,
            StatsChange::Active { day, user_id } => sqlx::query(&format!(
                "INSERT INTO stats_active_g{g} (day, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            ))
            .bind(day.to_string())
            .bind(user_id.to_string())
            .execute(&mut *conn)
            .await?,
            StatsChange::TaskPublished { task_id, model, at } => sqlx::query(&format!(
                "INSERT INTO stats_tasks_g{g} (task_id, model, published_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(task_id.to_string())
            .bind(model.clone())
            .bind(at.timestamp_millis())
            .execute(&mut *conn)
            .await?,
            StatsChange::TaskClaimed { task_id, at } => sqlx::query(&format!(
                "UPDATE stats_tasks_g{g} \
                 SET first_claimed_ms = COALESCE(first_claimed_ms, $2), claimed_ms = $2 \
                 WHERE task_id = $1"
            ))
            .bind(task_id.to_string())
            .bind(at.timestamp_millis())
            .execute(&mut *conn)
            .await?,
            StatsChange::TaskFinished { task_id, state, at } => sqlx::query(&format!(
                "UPDATE stats_tasks_g{g} SET finished_ms = $2, finished_day = $3, state = $4 \
                 WHERE task_id = $1"
            ))
            .bind(task_id.to_string())
            .bind(at.timestamp_millis())
            .bind(at.date_naive().to_string())
            .bind(state.as_str().to_owned())
            .execute(&mut *conn)
            .await?,
        };
        Ok(())
    }

    pub(super) async fn overview(pool: &Pool<DB>) -> Result<Figures, ReadModelError> {
        let mut buckets = Self::figures(pool, Scope::AllTime).await?;
        Ok(buckets.remove("").unwrap_or_default())
    }

    pub(super) async fn daily(
        pool: &Pool<DB>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayFigures>, ReadModelError> {
        let mut buckets = Self::figures(pool, Scope::Days(from, to)).await?;
        Ok(from
            .iter_days()
            .take_while(|day| *day <= to)
            .map(|day| DayFigures {
                day,
                figures: buckets.remove(&day.to_string()).unwrap_or_default(),
            })
            .collect())
    }

    /// The figures of each bucket of `scope` that saw any activity.
    async fn figures(
        pool: &Pool<DB>,
        scope: Scope,
    ) -> Result<BTreeMap<String, Figures>, ReadModelError> {
        let mut buckets: BTreeMap<String, Figures> = BTreeMap::new();
        for (day, metric, key, value) in
            Self::rows::<(String, String, String, i64)>(pool, &counters_sql(scope), scope).await?
        {
            let metric = Metric::parse(&metric).ok_or_else(|| unexpected("metric", &metric))?;
            buckets
                .entry(day)
                .or_default()
                .add_count(metric, &key, count(value));
        }
        for (day, users) in Self::rows::<(String, i64)>(pool, &active_sql(scope), scope).await? {
            buckets.entry(day).or_default().active_users = count(users);
        }
        for (day, model, state, tasks) in
            Self::rows::<(String, String, String, i64)>(pool, &finished_sql(scope), scope).await?
        {
            let state = FinalState::parse(&state).ok_or_else(|| unexpected("state", &state))?;
            buckets
                .entry(day)
                .or_default()
                .add_finished(&model, state, count(tasks));
        }
        let durations = Self::rows::<(String, Option<String>, String, i64, i64, i64)>(
            pool,
            &durations_sql(scope),
            scope,
        )
        .await?;
        for (day, model, kind, samples, p50, p95) in durations {
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

    async fn rows<R>(pool: &Pool<DB>, sql: &str, scope: Scope) -> Result<Vec<R>, ReadModelError>
    where
        R: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    {
        let mut query = sqlx::query_as::<DB, R>(sql);
        if let Some((first, last)) = scope.bounds() {
            query = query.bind(first).bind(last);
        }
        query.fetch_all(pool).await.map_err(backend)
    }
}

#[async_trait]
impl StatsQueries for SqliteReadModels {
    async fn overview(&self) -> Result<Figures, ReadModelError> {
        Stats::<Sqlite>::overview(&self.reader).await
    }

    async fn daily(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayFigures>, ReadModelError> {
        Stats::<Sqlite>::daily(&self.reader, from, to).await
    }
}

#[async_trait]
impl StatsQueries for PostgresReadModels {
    async fn overview(&self) -> Result<Figures, ReadModelError> {
        retry_transient(|| Stats::<Postgres>::overview(&self.pool)).await
    }

    async fn daily(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DayFigures>, ReadModelError> {
        retry_transient(|| Stats::<Postgres>::daily(&self.pool, from, to)).await
    }
}
