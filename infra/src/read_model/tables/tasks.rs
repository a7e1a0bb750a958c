//! `tasks`: every task, its state, its lease and its webhook's delivery.

use chrono::{DateTime, Utc};
use domain::model::ModelName;
use domain::task::TaskState;
use domain::{Position, TaskId, UserId, WorkerId};
use projections::tasks::{TaskChange, TaskView, WebhookState};
use projections::{Change, ReadModelError};

use super::{Table, limit, models, no_run};
use crate::read_model::sql::{Col, Insert, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("task_id", Ty::Uuid, "PRIMARY KEY"),
    col("position", Ty::Int, "NOT NULL UNIQUE"),
    col("submitter_id", Ty::Uuid, "NOT NULL"),
    col("model", Ty::Text, "NOT NULL"),
    col("input", Ty::Json, "NOT NULL"),
    col("webhook_url", Ty::Text, ""),
    col("priority", Ty::Int, "NOT NULL"),
    col("status", Ty::Text, "NOT NULL"),
    col("worker_id", Ty::Uuid, ""),
    col("attempts", Ty::Int, "NOT NULL"),
    col("max_attempts", Ty::Int, "NOT NULL"),
    col("lease_until", Ty::Time, ""),
    col("result", Ty::Json, ""),
    col("error", Ty::Text, ""),
    col("created_at", Ty::Time, "NOT NULL"),
    col("started_at", Ty::Time, ""),
    col("finished_at", Ty::Time, ""),
    col("webhook_state", Ty::Text, ""),
    col("webhook_attempts", Ty::Int, "NOT NULL"),
    col("webhook_last_at", Ty::Time, ""),
];

pub(crate) const TABLE: Table = Table {
    projection: "tasks",
    name: "tasks",
    columns: COLUMNS,
    constraints: "",
    indexes: &[
        "CREATE INDEX {t}_queue ON {t} (status, model, priority DESC, position)",
        "CREATE INDEX {t}_submitter ON {t} (submitter_id, position)",
        "CREATE INDEX {t}_lease ON {t} (status, lease_until)",
        "CREATE INDEX {t}_webhook ON {t} (webhook_state, finished_at)",
    ],
    order: "position",
    write,
    run: no_run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    let Change::Tasks(change) = change else {
        return;
    };
    let (sql, args) = match change {
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
        } => {
            out.push(Write::Insert(Insert {
                table: format!("tasks_g{g}"),
                columns: &[
                    ("task_id", Ty::Uuid),
                    ("position", Ty::Int),
                    ("submitter_id", Ty::Uuid),
                    ("model", Ty::Text),
                    ("input", Ty::Json),
                    ("webhook_url", Ty::Text),
                    ("priority", Ty::Int),
                    ("status", Ty::Text),
                    ("attempts", Ty::Int),
                    ("max_attempts", Ty::Int),
                    ("created_at", Ty::Time),
                    ("webhook_attempts", Ty::Int),
                ],
                row: vec![
                    Value::uuid(*task_id),
                    Value::int(*position as i64),
                    Value::uuid(*submitter_id),
                    Value::text(model.as_str()),
                    Value::Json(Some(input.clone())),
                    Value::Text(webhook_url.clone()),
                    Value::int(*priority),
                    Value::text(TaskState::Queued.as_str()),
                    Value::int(0),
                    Value::int(*max_attempts),
                    Value::time(at),
                    Value::int(0),
                ],
            }));
            return;
        }
        TaskChange::Running {
            task_id,
            worker_id,
            attempt,
            lease_until,
            at,
        } => (
            format!(
                "UPDATE tasks_g{g} SET status = '{}', worker_id = $1, attempts = $2, \
                 lease_until = $3, started_at = $4 WHERE task_id = $5",
                TaskState::Running
            ),
            vec![
                Value::uuid(*worker_id),
                Value::int(*attempt),
                Value::time(lease_until),
                Value::time(at),
                Value::uuid(*task_id),
            ],
        ),
        TaskChange::ExtendLease {
            task_id,
            lease_until,
        } => (
            format!("UPDATE tasks_g{g} SET lease_until = $1 WHERE task_id = $2"),
            vec![Value::time(lease_until), Value::uuid(*task_id)],
        ),
        TaskChange::AttemptFailed { task_id, error } => (
            format!("UPDATE tasks_g{g} SET error = $1 WHERE task_id = $2"),
            vec![Value::text(error), Value::uuid(*task_id)],
        ),
        TaskChange::Requeued { task_id } => (
            format!(
                "UPDATE tasks_g{g} SET status = '{}', worker_id = NULL, lease_until = NULL \
                 WHERE task_id = $1",
                TaskState::Queued
            ),
            vec![Value::uuid(*task_id)],
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
                "UPDATE tasks_g{g} SET status = $1, result = $2, error = COALESCE($3, error), \
                 lease_until = NULL, finished_at = $4, \
                 webhook_state = CASE WHEN webhook_url IS NULL THEN NULL ELSE '{}' END \
                 WHERE task_id = $5",
                WebhookState::Pending
            ),
            vec![
                Value::text(status.as_str()),
                Value::Json(result.clone()),
                Value::Text(error.clone()),
                Value::time(at),
                Value::uuid(*task_id),
            ],
        ),
        TaskChange::WebhookAttempted {
            task_id,
            attempt,
            delivered,
            at,
        } => (
            format!(
                "UPDATE tasks_g{g} SET webhook_attempts = $1, webhook_last_at = $2, \
                 webhook_state = $3 WHERE task_id = $4"
            ),
            vec![
                Value::int(*attempt),
                Value::time(at),
                Value::text(if *delivered {
                    WebhookState::Delivered.as_str()
                } else {
                    WebhookState::Pending.as_str()
                }),
                Value::uuid(*task_id),
            ],
        ),
        TaskChange::WebhookAbandoned { task_id } => (
            format!("UPDATE tasks_g{g} SET webhook_state = $1 WHERE task_id = $2"),
            vec![
                Value::text(WebhookState::Abandoned.as_str()),
                Value::uuid(*task_id),
            ],
        ),
        _ => return,
    };
    out.push(Write::Stmt(Stmt::new(sql, args)));
}

const SELECT: &str = "task_id, position, submitter_id, model, input, webhook_url, priority, \
     status, worker_id, attempts, max_attempts, lease_until, result, error, created_at, \
     started_at, finished_at, webhook_state, webhook_attempts, webhook_last_at";

pub(crate) fn by_id(id: TaskId) -> Stmt {
    Stmt::new(
        format!("SELECT {SELECT} FROM tasks WHERE task_id = $1"),
        vec![Value::uuid(id)],
    )
}

/// A page of a submitter's tasks: those before `before`, newest first.
pub(crate) fn of_submitter(submitter: UserId, before: Option<Position>, size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT {SELECT} FROM tasks WHERE submitter_id = $1 AND position < $2 \
             ORDER BY position DESC LIMIT $3"
        ),
        vec![
            Value::uuid(submitter),
            Value::int(before.map_or(i64::MAX, |c| c as i64)),
            limit(size),
        ],
    )
}

/// Queued tasks of enabled `models` (at least one) whose model has a free slot, by priority
/// then age.
pub(crate) fn claimable(models: &[ModelName], size: usize) -> Stmt {
    let list: Vec<String> = (1..=models.len()).map(|i| format!("${i}")).collect();
    let mut args: Vec<Value> = models.iter().map(|m| Value::text(m.as_str())).collect();
    args.push(limit(size));
    Stmt::new(
        format!(
            "SELECT t.task_id FROM tasks t JOIN models m ON m.name = t.model \
             WHERE t.status = '{queued}' AND m.enabled = TRUE AND t.model IN ({}) \
             AND (SELECT COUNT(*) FROM tasks r WHERE r.model = t.model AND r.status = '{running}') \
                 < m.max_concurrent \
             ORDER BY t.priority DESC, t.position ASC LIMIT ${}",
            list.join(", "),
            models.len() + 1,
            queued = TaskState::Queued,
            running = TaskState::Running,
        ),
        args,
    )
}

/// Running tasks whose lease ended before `now`, soonest first.
pub(crate) fn expired(now: &DateTime<Utc>, size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT task_id FROM tasks WHERE status = '{}' AND lease_until < $1 \
             ORDER BY lease_until LIMIT $2",
            TaskState::Running
        ),
        vec![Value::time(now), limit(size)],
    )
}

/// Finished tasks that owe their webhook, oldest first.
pub(crate) fn owing_webhooks(size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT {SELECT} FROM tasks WHERE webhook_state = '{pending}' \
             ORDER BY finished_at, position LIMIT $1",
            pending = WebhookState::Pending
        ),
        vec![limit(size)],
    )
}

pub(crate) fn id(row: &dyn Row) -> Result<TaskId, ReadModelError> {
    Ok(TaskId::new(row.uuid(0)?))
}

fn webhook_state(s: &str) -> Result<WebhookState, ReadModelError> {
    s.parse().map_err(|_| {
        ReadModelError::Backend(format!("tasks.webhook_state: {s:?} is not a webhook state"))
    })
}

fn state(s: &str) -> Result<TaskState, ReadModelError> {
    s.parse()
        .map_err(|_| ReadModelError::Backend(format!("tasks.status: {s:?} is not a task state")))
}

pub(crate) fn view(row: &dyn Row) -> Result<TaskView, ReadModelError> {
    Ok(TaskView {
        task_id: TaskId::new(row.uuid(0)?),
        position: row.int(1)? as Position,
        submitter_id: UserId::new(row.uuid(2)?),
        model: models::name(&row.text(3)?)?,
        input: row.json(4)?,
        webhook_url: row.opt_text(5)?,
        priority: i32::try_from(row.int(6)?)
            .map_err(|e| ReadModelError::Backend(format!("tasks.priority: {e}")))?,
        status: state(&row.text(7)?)?,
        worker_id: row.opt_uuid(8)?.map(WorkerId::new),
        attempts: row.count(9)?,
        max_attempts: row.count(10)?,
        lease_until: row.opt_time(11)?,
        result: row.opt_json(12)?,
        error: row.opt_text(13)?,
        created_at: row.time(14)?,
        started_at: row.opt_time(15)?,
        finished_at: row.opt_time(16)?,
        webhook_state: row
            .opt_text(17)?
            .as_deref()
            .map(webhook_state)
            .transpose()?,
        webhook_attempts: row.count(18)?,
        webhook_last_at: row.opt_time(19)?,
    })
}
