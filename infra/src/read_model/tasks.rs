//! The `tasks` projection's SQL, written once for both backends.
//!
//! Statements are templates whose placeholders say what they bind: `?` a plain value, `?u` a
//! UUID, `?t` a timestamp, `?j` JSON. Every value is bound as text or a number; SQLite keeps
//! them as such, PostgreSQL casts them to its native types (`$3::uuid`, `$4::timestamptz`,
//! `$5::jsonb`). Reads turn those columns back into text of one shape (`<uuid>`, RFC 3339 in
//! UTC with milliseconds), so one row mapping serves both. The two implementations are the
//! same code expanded twice by [`tasks_sql!`], because sqlx's query types differ per backend.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use domain::model::{ModelName, ModelSpec};
use domain::{Position, TaskId, UserId, WorkerId};
use projections::ReadModelError;

pub(crate) use super::{parse_ts, ts, uuid};
use projections::tasks::{
    HistoryLine, ModelView, TaskChange, TaskView, WEBHOOK_ABANDONED, WEBHOOK_DELIVERED,
    WEBHOOK_PENDING, WorkerView,
};
use serde_json::Value;
use uuid::Uuid;

#[derive(Clone, Copy)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// What kind of value a column holds, for reading it back as text.
#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Uuid,
    Time,
    Json,
}

impl Dialect {
    /// The template with this backend's placeholders.
    pub(crate) fn sql(self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 16);
        let mut n = 0;
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '?' {
                out.push(c);
                continue;
            }
            n += 1;
            let cast = match chars.peek() {
                Some('u') => Some("uuid"),
                Some('t') => Some("timestamptz"),
                Some('j') => Some("jsonb"),
                _ => None,
            };
            if cast.is_some() {
                chars.next();
            }
            match (self, cast) {
                (Dialect::Sqlite, _) => out.push('?'),
                (Dialect::Postgres, None) => out.push_str(&format!("${n}")),
                (Dialect::Postgres, Some(t)) => out.push_str(&format!("${n}::{t}")),
            }
        }
        out
    }

    /// A select list reading `columns` as text of one shape on both backends.
    fn select(self, columns: &[(&str, Kind)]) -> String {
        let each = |(name, kind): &(&str, Kind)| match (self, kind) {
            (Dialect::Sqlite, _) | (Dialect::Postgres, Kind::Plain) => (*name).to_owned(),
            (Dialect::Postgres, Kind::Uuid | Kind::Json) => format!("{name}::text AS {name}"),
            (Dialect::Postgres, Kind::Time) => format!(
                "to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS {name}"
            ),
        };
        columns.iter().map(each).collect::<Vec<_>>().join(", ")
    }
}

fn json(s: &str) -> Result<Value, ReadModelError> {
    serde_json::from_str(s).map_err(|e| ReadModelError::Backend(format!("bad JSON {s:?}: {e}")))
}

fn model_name(s: &str) -> Result<ModelName, ReadModelError> {
    ModelName::parse(s).map_err(|e| ReadModelError::Backend(e.to_string()))
}

const MODEL_COLUMNS: &[(&str, Kind)] = &[
    ("name", Kind::Plain),
    ("kind", Kind::Plain),
    ("input_schema", Kind::Json),
    ("max_concurrent", Kind::Plain),
    ("enabled", Kind::Plain),
    ("registered_at", Kind::Time),
    ("updated_at", Kind::Time),
];

const WORKER_COLUMNS: &[(&str, Kind)] = &[
    ("worker_id", Kind::Uuid),
    ("name", Kind::Plain),
    ("models", Kind::Json),
    ("revoked", Kind::Plain),
    ("registered_at", Kind::Time),
];

const TASK_COLUMNS: &[(&str, Kind)] = &[
    ("task_id", Kind::Uuid),
    ("position", Kind::Plain),
    ("submitter_id", Kind::Uuid),
    ("model", Kind::Plain),
    ("input", Kind::Json),
    ("webhook_url", Kind::Plain),
    ("priority", Kind::Plain),
    ("status", Kind::Plain),
    ("worker_id", Kind::Uuid),
    ("attempts", Kind::Plain),
    ("max_attempts", Kind::Plain),
    ("lease_until", Kind::Time),
    ("result", Kind::Json),
    ("error", Kind::Plain),
    ("created_at", Kind::Time),
    ("started_at", Kind::Time),
    ("finished_at", Kind::Time),
    ("webhook_state", Kind::Plain),
    ("webhook_attempts", Kind::Plain),
    ("webhook_last_at", Kind::Time),
];

const HISTORY_COLUMNS: &[(&str, Kind)] = &[
    ("position", Kind::Plain),
    ("event", Kind::Plain),
    ("detail", Kind::Json),
    ("at", Kind::Time),
];

/// One statement of a change: its template and what it binds, in order.
pub(crate) struct Statement {
    pub template: String,
    pub binds: Vec<Bind>,
}

#[derive(Clone)]
pub(crate) enum Bind {
    Text(Option<String>),
    Int(i64),
    Bool(bool),
}

pub(crate) fn text(s: impl Into<String>) -> Bind {
    Bind::Text(Some(s.into()))
}

fn opt_text(s: Option<impl Into<String>>) -> Bind {
    Bind::Text(s.map(Into::into))
}

fn time(t: &DateTime<Utc>) -> Bind {
    text(ts(t))
}

fn json_text(v: &Value) -> Bind {
    text(v.to_string())
}

fn spec_binds(spec: &ModelSpec) -> [Bind; 3] {
    [
        text(&spec.kind),
        json_text(&spec.input_schema),
        Bind::Int(i64::from(spec.max_concurrent)),
    ]
}

/// The statement a change makes on generation `g`.
pub(crate) fn statement(g: u32, change: &TaskChange) -> Statement {
    let (template, binds) = match change {
        TaskChange::InsertModel {
            name,
            spec,
            enabled,
            at,
        } => {
            let [kind, schema, max] = spec_binds(spec);
            (
                format!(
                    "INSERT INTO models_g{g} (name, kind, input_schema, max_concurrent, enabled, \
                     registered_at, updated_at) VALUES (?, ?, ?j, ?, ?, ?t, ?t) ON CONFLICT DO NOTHING"
                ),
                vec![
                    text(name.as_str()),
                    kind,
                    schema,
                    max,
                    Bind::Bool(*enabled),
                    time(at),
                    time(at),
                ],
            )
        }
        TaskChange::UpdateModel { name, spec, at } => {
            let [kind, schema, max] = spec_binds(spec);
            (
                format!(
                    "UPDATE models_g{g} SET kind = ?, input_schema = ?j, max_concurrent = ?, \
                     updated_at = ?t WHERE name = ?"
                ),
                vec![kind, schema, max, time(at), text(name.as_str())],
            )
        }
        TaskChange::EnableModel { name, enabled, at } => (
            format!("UPDATE models_g{g} SET enabled = ?, updated_at = ?t WHERE name = ?"),
            vec![Bind::Bool(*enabled), time(at), text(name.as_str())],
        ),
        TaskChange::InsertWorker {
            worker_id,
            name,
            models,
            token_hash,
            at,
        } => (
            format!(
                "INSERT INTO workers_g{g} (worker_id, name, models, token_hash, registered_at) \
                 VALUES (?u, ?, ?j, ?, ?t) ON CONFLICT DO NOTHING"
            ),
            vec![
                text(worker_id.to_string()),
                text(name),
                text(serde_json::to_string(models).unwrap_or_else(|_| "[]".into())),
                text(token_hash),
                time(at),
            ],
        ),
        TaskChange::RevokeWorker { worker_id } => (
            format!("UPDATE workers_g{g} SET revoked = ? WHERE worker_id = ?u"),
            vec![Bind::Bool(true), text(worker_id.to_string())],
        ),
        TaskChange::InsertTask {
            task_id,
            position,
            submitter_id,
            model,
            input,
            webhook_url,
            priority,
            max_attempts,
            at,
        } => (
            format!(
                "INSERT INTO tasks_g{g} (task_id, position, submitter_id, model, input, \
                 webhook_url, priority, status, attempts, max_attempts, created_at, \
                 webhook_attempts) VALUES (?u, ?, ?u, ?, ?j, ?, ?, 'queued', 0, ?, ?t, 0) \
                 ON CONFLICT DO NOTHING"
            ),
            vec![
                text(task_id.to_string()),
                Bind::Int(*position as i64),
                text(submitter_id.to_string()),
                text(model.as_str()),
                json_text(input),
                opt_text(webhook_url.clone()),
                Bind::Int(i64::from(*priority)),
                Bind::Int(i64::from(*max_attempts)),
                time(at),
            ],
        ),
        TaskChange::Running {
            task_id,
            worker_id,
            attempt,
            lease_until,
            at,
        } => (
            format!(
                "UPDATE tasks_g{g} SET status = 'running', worker_id = ?u, attempts = ?, \
                 lease_until = ?t, started_at = ?t WHERE task_id = ?u"
            ),
            vec![
                text(worker_id.to_string()),
                Bind::Int(i64::from(*attempt)),
                time(lease_until),
                time(at),
                text(task_id.to_string()),
            ],
        ),
        TaskChange::ExtendLease {
            task_id,
            lease_until,
        } => (
            format!("UPDATE tasks_g{g} SET lease_until = ?t WHERE task_id = ?u"),
            vec![time(lease_until), text(task_id.to_string())],
        ),
        TaskChange::AttemptFailed { task_id, error } => (
            format!("UPDATE tasks_g{g} SET error = ? WHERE task_id = ?u"),
            vec![text(error), text(task_id.to_string())],
        ),
        TaskChange::Requeued { task_id } => (
            format!(
                "UPDATE tasks_g{g} SET status = 'queued', worker_id = NULL, lease_until = NULL \
                 WHERE task_id = ?u"
            ),
            vec![text(task_id.to_string())],
        ),
        TaskChange::Finished {
            task_id,
            status,
            result,
            error,
            at,
        } => (
            // A task with a webhook owes one from now on.
            format!(
                "UPDATE tasks_g{g} SET status = ?, result = ?j, error = COALESCE(?, error), \
                 lease_until = NULL, finished_at = ?t, \
                 webhook_state = CASE WHEN webhook_url IS NULL THEN NULL ELSE '{WEBHOOK_PENDING}' END \
                 WHERE task_id = ?u"
            ),
            vec![
                text(*status),
                opt_text(result.as_ref().map(Value::to_string)),
                opt_text(error.clone()),
                time(at),
                text(task_id.to_string()),
            ],
        ),
        TaskChange::WebhookAttempted {
            task_id,
            attempt,
            delivered,
            at,
        } => (
            format!(
                "UPDATE tasks_g{g} SET webhook_attempts = ?, webhook_last_at = ?t, \
                 webhook_state = ? WHERE task_id = ?u"
            ),
            vec![
                Bind::Int(i64::from(*attempt)),
                time(at),
                text(if *delivered {
                    WEBHOOK_DELIVERED
                } else {
                    WEBHOOK_PENDING
                }),
                text(task_id.to_string()),
            ],
        ),
        TaskChange::WebhookAbandoned { task_id } => (
            format!("UPDATE tasks_g{g} SET webhook_state = ? WHERE task_id = ?u"),
            vec![text(WEBHOOK_ABANDONED), text(task_id.to_string())],
        ),
        TaskChange::History {
            task_id,
            position,
            event,
            detail,
            at,
        } => (
            format!(
                "INSERT INTO task_history_g{g} (position, task_id, event, detail, at) \
                 VALUES (?, ?u, ?, ?j, ?t) ON CONFLICT DO NOTHING"
            ),
            vec![
                Bind::Int(*position as i64),
                text(task_id.to_string()),
                text(event),
                json_text(detail),
                time(at),
            ],
        ),
    };
    Statement { template, binds }
}

/// A row read as text and numbers, whichever backend it came from.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<Option<String>, ReadModelError>;
    fn int(&self, column: &str) -> Result<i64, ReadModelError>;
    fn flag(&self, column: &str) -> Result<bool, ReadModelError>;

    fn required(&self, column: &str) -> Result<String, ReadModelError> {
        self.text(column)?
            .ok_or_else(|| ReadModelError::Backend(format!("{column} is NULL")))
    }
    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, ReadModelError> {
        self.text(column)?.as_deref().map(parse_ts).transpose()
    }
    fn uuid(&self, column: &str) -> Result<Option<Uuid>, ReadModelError> {
        self.text(column)?.as_deref().map(uuid).transpose()
    }
    fn json(&self, column: &str) -> Result<Option<Value>, ReadModelError> {
        self.text(column)?.as_deref().map(json).transpose()
    }
    fn count(&self, column: &str) -> Result<u32, ReadModelError> {
        u32::try_from(self.int(column)?).map_err(|e| ReadModelError::Backend(e.to_string()))
    }
}

fn missing(column: &str) -> ReadModelError {
    ReadModelError::Backend(format!("{column} is NULL"))
}

pub(crate) fn model_view(row: &impl Columns) -> Result<ModelView, ReadModelError> {
    Ok(ModelView {
        name: model_name(&row.required("name")?)?,
        kind: row.required("kind")?,
        input_schema: row
            .json("input_schema")?
            .ok_or_else(|| missing("input_schema"))?,
        max_concurrent: row.count("max_concurrent")?,
        enabled: row.flag("enabled")?,
        registered_at: row
            .time("registered_at")?
            .ok_or_else(|| missing("registered_at"))?,
        updated_at: row
            .time("updated_at")?
            .ok_or_else(|| missing("updated_at"))?,
    })
}

pub(crate) fn worker_view(row: &impl Columns) -> Result<WorkerView, ReadModelError> {
    let models: Vec<String> =
        serde_json::from_value(row.json("models")?.ok_or_else(|| missing("models"))?)
            .map_err(|e| ReadModelError::Backend(e.to_string()))?;
    Ok(WorkerView {
        worker_id: WorkerId::new(row.uuid("worker_id")?.ok_or_else(|| missing("worker_id"))?),
        name: row.required("name")?,
        models: models
            .iter()
            .map(|m| model_name(m))
            .collect::<Result<_, _>>()?,
        revoked: row.flag("revoked")?,
        registered_at: row
            .time("registered_at")?
            .ok_or_else(|| missing("registered_at"))?,
    })
}

pub(crate) fn task_view(row: &impl Columns) -> Result<TaskView, ReadModelError> {
    Ok(TaskView {
        task_id: TaskId::new(row.uuid("task_id")?.ok_or_else(|| missing("task_id"))?),
        position: row.int("position")? as Position,
        submitter_id: UserId::new(
            row.uuid("submitter_id")?
                .ok_or_else(|| missing("submitter_id"))?,
        ),
        model: model_name(&row.required("model")?)?,
        input: row.json("input")?.ok_or_else(|| missing("input"))?,
        webhook_url: row.text("webhook_url")?,
        priority: i32::try_from(row.int("priority")?)
            .map_err(|e| ReadModelError::Backend(e.to_string()))?,
        status: row.required("status")?,
        worker_id: row.uuid("worker_id")?.map(WorkerId::new),
        attempts: row.count("attempts")?,
        max_attempts: row.count("max_attempts")?,
        lease_until: row.time("lease_until")?,
        result: row.json("result")?,
        error: row.text("error")?,
        created_at: row
            .time("created_at")?
            .ok_or_else(|| missing("created_at"))?,
        started_at: row.time("started_at")?,
        finished_at: row.time("finished_at")?,
        webhook_state: row.text("webhook_state")?,
        webhook_attempts: row.count("webhook_attempts")?,
        webhook_last_at: row.time("webhook_last_at")?,
    })
}

pub(crate) fn history_line(row: &impl Columns) -> Result<HistoryLine, ReadModelError> {
    Ok(HistoryLine {
        position: row.int("position")? as Position,
        event: row.required("event")?,
        detail: row.json("detail")?.ok_or_else(|| missing("detail"))?,
        at: row.time("at")?.ok_or_else(|| missing("at"))?,
    })
}

/// The queries, as templates for a dialect.
pub(crate) struct Queries {
    pub model: String,
    pub models: String,
    pub worker_by_token: String,
    pub workers: String,
    pub task: String,
    pub history: String,
    pub tasks_of: String,
    pub expired: String,
    pub webhooks: String,
}

impl Queries {
    fn new(d: Dialect) -> Self {
        let (models, workers, tasks, history) = (
            d.select(MODEL_COLUMNS),
            d.select(WORKER_COLUMNS),
            d.select(TASK_COLUMNS),
            d.select(HISTORY_COLUMNS),
        );
        Self {
            model: d.sql(&format!("SELECT {models} FROM models WHERE name = ?")),
            models: format!("SELECT {models} FROM models ORDER BY name"),
            worker_by_token: d.sql(&format!(
                "SELECT {workers} FROM workers WHERE token_hash = ?"
            )),
            workers: format!("SELECT {workers} FROM workers ORDER BY registered_at, worker_id"),
            task: d.sql(&format!("SELECT {tasks} FROM tasks WHERE task_id = ?u")),
            history: d.sql(&format!(
                "SELECT {history} FROM task_history WHERE task_id = ?u ORDER BY position"
            )),
            tasks_of: d.sql(&format!(
                "SELECT {tasks} FROM tasks WHERE submitter_id = ?u AND position < ? \
                 ORDER BY position DESC LIMIT ?"
            )),
            expired: d.sql(&format!(
                "SELECT {} FROM tasks WHERE status = 'running' AND lease_until < ?t \
                 ORDER BY lease_until LIMIT ?",
                d.select(&[("task_id", Kind::Uuid)])
            )),
            webhooks: d.sql(&format!(
                "SELECT {tasks} FROM tasks WHERE webhook_state = '{WEBHOOK_PENDING}' \
                 ORDER BY finished_at, position LIMIT ?"
            )),
        }
    }
}

/// The read queries of a dialect, built once.
pub(crate) fn queries(d: Dialect) -> &'static Queries {
    static SQLITE: OnceLock<Queries> = OnceLock::new();
    static POSTGRES: OnceLock<Queries> = OnceLock::new();
    match d {
        Dialect::Sqlite => SQLITE.get_or_init(|| Queries::new(d)),
        Dialect::Postgres => POSTGRES.get_or_init(|| Queries::new(d)),
    }
}

/// Claimable tasks among `n` models: binds the `n` model names, then the limit.
pub(crate) fn claimable_query(d: Dialect, n: usize) -> String {
    let list = vec!["?"; n.max(1)].join(", ");
    let id = match d {
        Dialect::Sqlite => "t.task_id",
        Dialect::Postgres => "t.task_id::text AS task_id",
    };
    d.sql(&format!(
        "SELECT {id} FROM tasks t JOIN models m ON m.name = t.model \
             WHERE t.status = 'queued' AND m.enabled = TRUE AND t.model IN ({list}) \
             AND (SELECT COUNT(*) FROM tasks r WHERE r.model = t.model AND r.status = 'running') \
                 < m.max_concurrent \
             ORDER BY t.priority DESC, t.position ASC LIMIT ?"
    ))
}

/// Expands the store side and the query side of the `tasks` projection for one backend.
macro_rules! tasks_sql {
    ($store:ty, $db:ty, $row:ty, $dialect:expr, $pool:ident) => {
        impl $crate::read_model::tasks::Columns for $row {
            fn text(&self, column: &str) -> Result<Option<String>, ReadModelError> {
                sqlx::Row::try_get(self, column).map_err($crate::read_model::backend)
            }
            fn int(&self, column: &str) -> Result<i64, ReadModelError> {
                sqlx::Row::try_get(self, column).map_err($crate::read_model::backend)
            }
            fn flag(&self, column: &str) -> Result<bool, ReadModelError> {
                sqlx::Row::try_get(self, column).map_err($crate::read_model::backend)
            }
        }

        fn bind_all<'q>(
            mut query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            binds: &[$crate::read_model::tasks::Bind],
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            use $crate::read_model::tasks::Bind;
            for bind in binds {
                query = match bind {
                    Bind::Text(t) => query.bind(t.clone()),
                    Bind::Int(i) => query.bind(*i),
                    Bind::Bool(b) => query.bind(*b),
                };
            }
            query
        }

        /// Applies one change of the `tasks` projection in the batch's transaction.
        pub(crate) async fn apply_task_change(
            tx: &mut sqlx::Transaction<'_, $db>,
            g: u32,
            change: &projections::tasks::TaskChange,
        ) -> Result<(), sqlx::Error> {
            let statement = $crate::read_model::tasks::statement(g, change);
            let sql = $dialect.sql(&statement.template);
            bind_all(sqlx::query(&sql), &statement.binds)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        impl $store {
            /// Rows of a read query, retried when a view switch got in the way.
            async fn task_rows(
                &self,
                sql: &str,
                binds: Vec<$crate::read_model::tasks::Bind>,
            ) -> Result<Vec<$row>, ReadModelError> {
                $crate::read_model::retry_transient(|| async {
                    bind_all(sqlx::query(sql), &binds)
                        .fetch_all(&self.$pool)
                        .await
                        .map_err($crate::read_model::backend)
                })
                .await
            }
        }

        #[async_trait::async_trait]
        impl projections::tasks::TaskQueries for $store {
            async fn model(
                &self,
                name: &domain::model::ModelName,
            ) -> Result<Option<projections::tasks::ModelView>, ReadModelError> {
                let q = $crate::read_model::tasks::queries($dialect);
                let rows = self
                    .task_rows(
                        &q.model,
                        vec![$crate::read_model::tasks::text(name.as_str())],
                    )
                    .await?;
                rows.first()
                    .map($crate::read_model::tasks::model_view)
                    .transpose()
            }

            async fn models(&self) -> Result<Vec<projections::tasks::ModelView>, ReadModelError> {
                let q = $crate::read_model::tasks::queries($dialect);
                let rows = self.task_rows(&q.models, vec![]).await?;
                rows.iter()
                    .map($crate::read_model::tasks::model_view)
                    .collect()
            }

            async fn worker_by_token(
                &self,
                token_hash: &str,
            ) -> Result<Option<projections::tasks::WorkerView>, ReadModelError> {
                let q = $crate::read_model::tasks::queries($dialect);
                let rows = self
                    .task_rows(
                        &q.worker_by_token,
                        vec![$crate::read_model::tasks::text(token_hash)],
                    )
                    .await?;
                rows.first()
                    .map($crate::read_model::tasks::worker_view)
                    .transpose()
            }

            async fn workers(&self) -> Result<Vec<projections::tasks::WorkerView>, ReadModelError> {
                let q = $crate::read_model::tasks::queries($dialect);
                let rows = self.task_rows(&q.workers, vec![]).await?;
                rows.iter()
                    .map($crate::read_model::tasks::worker_view)
                    .collect()
            }

            async fn task(
                &self,
                id: domain::TaskId,
            ) -> Result<Option<projections::tasks::TaskView>, ReadModelError> {
                let q = $crate::read_model::tasks::queries($dialect);
                let rows = self
                    .task_rows(
                        &q.task,
                        vec![$crate::read_model::tasks::text(id.to_string())],
                    )
                    .await?;
                rows.first()
                    .map($crate::read_model::tasks::task_view)
                    .transpose()
            }

            async fn task_history(
                &self,
                id: domain::TaskId,
            ) -> Result<Vec<projections::tasks::HistoryLine>, ReadModelError> {
                let q = $crate::read_model::tasks::queries($dialect);
                let rows = self
                    .task_rows(
                        &q.history,
                        vec![$crate::read_model::tasks::text(id.to_string())],
                    )
                    .await?;
                rows.iter()
                    .map($crate::read_model::tasks::history_line)
                    .collect()
            }

            async fn tasks_of(
                &self,
                submitter: domain::UserId,
                page: projections::ports::Page,
            ) -> Result<Vec<projections::tasks::TaskView>, ReadModelError> {
                use $crate::read_model::tasks::{Bind, text};
                let q = $crate::read_model::tasks::queries($dialect);
                let binds = vec![
                    text(submitter.to_string()),
                    Bind::Int(page.cursor.map_or(i64::MAX, |c| c as i64)),
                    Bind::Int(page.limit.clamp(1, 1000) as i64),
                ];
                let rows = self.task_rows(&q.tasks_of, binds).await?;
                rows.iter()
                    .map($crate::read_model::tasks::task_view)
                    .collect()
            }

            async fn claimable(
                &self,
                models: &[domain::model::ModelName],
                limit: usize,
            ) -> Result<Vec<domain::TaskId>, ReadModelError> {
                use $crate::read_model::tasks::{Bind, text};
                if models.is_empty() {
                    return Ok(vec![]);
                }
                let sql = $crate::read_model::tasks::claimable_query($dialect, models.len());
                let mut binds: Vec<Bind> = models.iter().map(|m| text(m.as_str())).collect();
                binds.push(Bind::Int(limit.clamp(1, 1000) as i64));
                let rows = self.task_rows(&sql, binds).await?;
                rows.iter()
                    .map($crate::read_model::tasks::task_id)
                    .collect()
            }

            async fn expired_leases(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: usize,
            ) -> Result<Vec<domain::TaskId>, ReadModelError> {
                use $crate::read_model::tasks::{Bind, text, ts};
                let q = $crate::read_model::tasks::queries($dialect);
                let binds = vec![text(ts(&now)), Bind::Int(limit.clamp(1, 1000) as i64)];
                let rows = self.task_rows(&q.expired, binds).await?;
                rows.iter()
                    .map($crate::read_model::tasks::task_id)
                    .collect()
            }

            async fn pending_webhooks(
                &self,
                limit: usize,
            ) -> Result<Vec<projections::tasks::TaskView>, ReadModelError> {
                use $crate::read_model::tasks::Bind;
                let q = $crate::read_model::tasks::queries($dialect);
                let rows = self
                    .task_rows(&q.webhooks, vec![Bind::Int(limit.clamp(1, 1000) as i64)])
                    .await?;
                rows.iter()
                    .map($crate::read_model::tasks::task_view)
                    .collect()
            }
        }
    };
}

pub(crate) use tasks_sql;

pub(crate) fn task_id(row: &impl Columns) -> Result<TaskId, ReadModelError> {
    Ok(TaskId::new(
        row.uuid("task_id")?.ok_or_else(|| missing("task_id"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_and_cast_on_postgres_only() {
        let t = "UPDATE t SET a = ?, b = ?u, c = ?t, d = ?j WHERE e = ?";
        assert_eq!(
            Dialect::Sqlite.sql(t),
            "UPDATE t SET a = ?, b = ?, c = ?, d = ? WHERE e = ?"
        );
        assert_eq!(
            Dialect::Postgres.sql(t),
            "UPDATE t SET a = $1, b = $2::uuid, c = $3::timestamptz, d = $4::jsonb WHERE e = $5"
        );
    }
}
