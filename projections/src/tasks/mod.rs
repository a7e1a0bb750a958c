//! The `tasks` projection: registered models, worker credentials, and every task with its
//! history. Private tables: a task is shown to its submitter (and admins) only, and workers
//! are found by their token's hash.
//!
//! Besides answering `GET /tasks`, this model is where the dispatch loops look for work:
//! claimable tasks, leases that ran out, webhooks still to deliver. It may lag the log by a
//! batch; every decision it suggests is taken again by the Task aggregate, so a stale row costs
//! one refused command, never a double claim.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::model::{ModelEvent, ModelName, ModelSpec};
use domain::task::{TaskEvent, TaskState};
use domain::worker::WorkerEvent;
use domain::{Envelope, Event, Position, TaskId, UserId, WorkerId};
use serde::Serialize;
use serde_json::{Value, json};

use crate::ports::Page;
use crate::{Change, Projection, ReadModelError};

pub struct Tasks;

/// Where a task's webhook is, as stored in the `webhook_state` column and shown by the API:
/// `pending`, `delivered` or `abandoned`, the same by serde and by [`WebhookState::as_str`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    serde::Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum WebhookState {
    /// Owed since the task's final state.
    Pending,
    Delivered,
    Abandoned,
}

impl WebhookState {
    /// The stored and shown spelling; [`str::parse`] reads it back.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The writes of the `tasks` projection.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskChange {
    InsertModel {
        name: ModelName,
        spec: ModelSpec,
        enabled: bool,
        at: DateTime<Utc>,
    },
    UpdateModel {
        name: ModelName,
        spec: ModelSpec,
        at: DateTime<Utc>,
    },
    EnableModel {
        name: ModelName,
        enabled: bool,
        at: DateTime<Utc>,
    },
    InsertWorker {
        worker_id: WorkerId,
        name: String,
        models: Vec<ModelName>,
        token_hash: String,
        at: DateTime<Utc>,
    },
    RevokeWorker {
        worker_id: WorkerId,
    },
    InsertTask {
        task_id: TaskId,
        position: Position,
        submitter_id: UserId,
        model: ModelName,
        input: Value,
        webhook_url: Option<String>,
        priority: i32,
        max_attempts: u32,
        at: DateTime<Utc>,
    },
    /// A worker holds the task until `lease_until`.
    Running {
        task_id: TaskId,
        worker_id: WorkerId,
        attempt: u32,
        lease_until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    ExtendLease {
        task_id: TaskId,
        lease_until: DateTime<Utc>,
    },
    /// An attempt ended without a result; `error` becomes the task's last error.
    AttemptFailed {
        task_id: TaskId,
        error: String,
    },
    Requeued {
        task_id: TaskId,
    },
    /// A final state (succeeded, failed or cancelled); a webhook, if any, becomes due.
    Finished {
        task_id: TaskId,
        status: TaskState,
        result: Option<Value>,
        error: Option<String>,
        at: DateTime<Utc>,
    },
    WebhookAttempted {
        task_id: TaskId,
        attempt: u32,
        delivered: bool,
        at: DateTime<Utc>,
    },
    WebhookAbandoned {
        task_id: TaskId,
    },
    /// One line of a task's history: every event of its stream, in order.
    History {
        task_id: TaskId,
        position: Position,
        event: String,
        detail: Value,
        at: DateTime<Utc>,
    },
}

impl Projection for Tasks {
    fn name(&self) -> &'static str {
        "tasks"
    }

    fn version(&self) -> u32 {
        1
    }

    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change> {
        let at = envelope.occurred_at;
        let changes = match event {
            Event::Model(e) => model_changes(e, at),
            Event::Worker(e) => worker_changes(e, at),
            Event::Task(e) => {
                let mut changes = task_changes(e, envelope.position, at);
                changes.push(history(e, envelope));
                changes
            }
            Event::User(_)
            | Event::Sanction(_)
            | Event::Session(_)
            | Event::Reservation(_)
            | Event::Verification(_)
            | Event::Post(_) => vec![],
        };
        changes.into_iter().map(Change::Tasks).collect()
    }
}

fn model_changes(event: &ModelEvent, at: DateTime<Utc>) -> Vec<TaskChange> {
    vec![match event {
        ModelEvent::ModelRegistered {
            name,
            spec,
            enabled,
            ..
        } => TaskChange::InsertModel {
            name: name.clone(),
            spec: spec.clone(),
            enabled: *enabled,
            at,
        },
        ModelEvent::ModelUpdated { name, spec, .. } => TaskChange::UpdateModel {
            name: name.clone(),
            spec: spec.clone(),
            at,
        },
        ModelEvent::ModelDisabled { name, .. } => TaskChange::EnableModel {
            name: name.clone(),
            enabled: false,
            at,
        },
        ModelEvent::ModelEnabled { name, .. } => TaskChange::EnableModel {
            name: name.clone(),
            enabled: true,
            at,
        },
    }]
}

fn worker_changes(event: &WorkerEvent, at: DateTime<Utc>) -> Vec<TaskChange> {
    vec![match event {
        WorkerEvent::WorkerRegistered {
            worker_id,
            name,
            models,
            token_hash,
            ..
        } => TaskChange::InsertWorker {
            worker_id: *worker_id,
            name: name.clone(),
            models: models.clone(),
            token_hash: token_hash.clone(),
            at,
        },
        WorkerEvent::WorkerRevoked { worker_id, .. } => TaskChange::RevokeWorker {
            worker_id: *worker_id,
        },
    }]
}

fn task_changes(event: &TaskEvent, position: Position, at: DateTime<Utc>) -> Vec<TaskChange> {
    vec![match event {
        TaskEvent::TaskPublished {
            task_id,
            submitter_id,
            model,
            input,
            webhook_url,
            priority,
            max_attempts,
        } => TaskChange::InsertTask {
            task_id: *task_id,
            position,
            submitter_id: *submitter_id,
            model: model.clone(),
            input: input.clone(),
            webhook_url: webhook_url.clone(),
            priority: *priority,
            max_attempts: *max_attempts,
            at,
        },
        TaskEvent::TaskClaimed {
            task_id,
            worker_id,
            attempt,
            lease_until,
        } => TaskChange::Running {
            task_id: *task_id,
            worker_id: *worker_id,
            attempt: *attempt,
            lease_until: *lease_until,
            at,
        },
        TaskEvent::TaskLeaseExtended {
            task_id,
            lease_until,
            ..
        } => TaskChange::ExtendLease {
            task_id: *task_id,
            lease_until: *lease_until,
        },
        TaskEvent::TaskSucceeded {
            task_id, result, ..
        } => TaskChange::Finished {
            task_id: *task_id,
            status: TaskState::Succeeded,
            result: Some(result.clone()),
            error: None,
            at,
        },
        TaskEvent::TaskAttemptFailed { task_id, error, .. } => TaskChange::AttemptFailed {
            task_id: *task_id,
            error: error.clone(),
        },
        TaskEvent::TaskRequeued { task_id, .. } => TaskChange::Requeued { task_id: *task_id },
        TaskEvent::TaskFailed {
            task_id, reason, ..
        } => TaskChange::Finished {
            task_id: *task_id,
            status: TaskState::Failed,
            result: None,
            error: Some(reason.clone()),
            at,
        },
        TaskEvent::TaskCancelled { task_id, .. } => TaskChange::Finished {
            task_id: *task_id,
            status: TaskState::Cancelled,
            result: None,
            error: None,
            at,
        },
        TaskEvent::WebhookAttempted {
            task_id,
            attempt,
            delivered,
            ..
        } => TaskChange::WebhookAttempted {
            task_id: *task_id,
            attempt: *attempt,
            delivered: *delivered,
            at,
        },
        TaskEvent::WebhookAbandoned { task_id, .. } => {
            TaskChange::WebhookAbandoned { task_id: *task_id }
        }
    }]
}

/// The history line of a task event: its type and its data without what the task row already
/// shows at length (input and result) or what only the submitter gave (the webhook URL).
fn history(event: &TaskEvent, envelope: &Envelope) -> TaskChange {
    let task_id = match event {
        TaskEvent::TaskPublished { task_id, .. }
        | TaskEvent::TaskClaimed { task_id, .. }
        | TaskEvent::TaskLeaseExtended { task_id, .. }
        | TaskEvent::TaskSucceeded { task_id, .. }
        | TaskEvent::TaskAttemptFailed { task_id, .. }
        | TaskEvent::TaskRequeued { task_id, .. }
        | TaskEvent::TaskFailed { task_id, .. }
        | TaskEvent::TaskCancelled { task_id, .. }
        | TaskEvent::WebhookAttempted { task_id, .. }
        | TaskEvent::WebhookAbandoned { task_id, .. } => *task_id,
    };
    let mut detail = serde_json::to_value(event)
        .ok()
        .and_then(|v| v.get("data").cloned())
        .unwrap_or_else(|| json!({}));
    if let Some(fields) = detail.as_object_mut() {
        for noisy in ["task_id", "input", "result", "webhook_url", "submitter_id"] {
            fields.remove(noisy);
        }
    }
    TaskChange::History {
        task_id,
        position: envelope.position,
        event: envelope.event_type.clone(),
        detail,
        at: envelope.occurred_at,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelView {
    pub name: ModelName,
    pub kind: String,
    pub input_schema: Value,
    pub max_concurrent: u32,
    pub enabled: bool,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerView {
    pub worker_id: WorkerId,
    pub name: String,
    pub models: Vec<ModelName>,
    pub revoked: bool,
    pub registered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    pub task_id: TaskId,
    pub position: Position,
    pub submitter_id: UserId,
    pub model: ModelName,
    pub input: Value,
    pub webhook_url: Option<String>,
    pub priority: i32,
    /// Stored in the `status` column as [`TaskState::as_str`] spells it.
    pub status: TaskState,
    pub worker_id: Option<WorkerId>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub lease_until: Option<DateTime<Utc>>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the current or last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `pending` (owed since the final state), `delivered` or `abandoned`; none before the
    /// final state or without a URL.
    pub webhook_state: Option<WebhookState>,
    pub webhook_attempts: u32,
    pub webhook_last_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryLine {
    pub position: Position,
    pub event: String,
    pub detail: Value,
    pub at: DateTime<Utc>,
}

/// What the task routes and the dispatch loops read.
#[async_trait]
pub trait TaskQueries: Send + Sync + 'static {
    async fn model(&self, name: &ModelName) -> Result<Option<ModelView>, ReadModelError>;
    async fn models(&self) -> Result<Vec<ModelView>, ReadModelError>;
    /// A worker by its token's hash (revoked ones included; the caller refuses them).
    async fn worker_by_token(&self, token_hash: &str)
    -> Result<Option<WorkerView>, ReadModelError>;
    async fn workers(&self) -> Result<Vec<WorkerView>, ReadModelError>;
    async fn task(&self, id: TaskId) -> Result<Option<TaskView>, ReadModelError>;
    async fn task_history(&self, id: TaskId) -> Result<Vec<HistoryLine>, ReadModelError>;
    /// A submitter's tasks, newest first; `cursor` is the position of the last one seen.
    async fn tasks_of(
        &self,
        submitter: UserId,
        page: Page,
    ) -> Result<Vec<TaskView>, ReadModelError>;
    /// Queued tasks of enabled models among `models` whose model has fewer than its
    /// `max_concurrent` tasks running: highest priority first, then oldest.
    async fn claimable(
        &self,
        models: &[ModelName],
        limit: usize,
    ) -> Result<Vec<TaskId>, ReadModelError>;
    /// Running tasks whose lease ended before `now`.
    async fn expired_leases(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<TaskId>, ReadModelError>;
    /// Final tasks whose webhook is neither delivered nor abandoned, oldest first.
    async fn pending_webhooks(&self, limit: usize) -> Result<Vec<TaskView>, ReadModelError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_states_are_spelled_alike_by_serde_and_as_str() {
        for (state, name) in [
            (WebhookState::Pending, "pending"),
            (WebhookState::Delivered, "delivered"),
            (WebhookState::Abandoned, "abandoned"),
        ] {
            assert_eq!(state.as_str(), name);
            assert_eq!(serde_json::to_value(state).unwrap(), name);
            assert_eq!(name.parse::<WebhookState>(), Ok(state));
        }
    }
    use domain::envelope::Metadata;
    use uuid::Uuid;

    fn envelope(position: Position, event: &TaskEvent) -> Envelope {
        let v = serde_json::to_value(event).expect("serialisable");
        Envelope {
            position,
            stream: TaskId::new(Uuid::from_u128(1)).stream(),
            version: position,
            event_id: Uuid::now_v7(),
            event_type: v["type"].as_str().expect("a type").to_owned(),
            schema: 1,
            data: v["data"].clone(),
            metadata: Metadata::default(),
            occurred_at: DateTime::from_timestamp(1_700_000_000 + position as i64, 0)
                .expect("a time"),
        }
    }

    #[test]
    fn a_task_event_changes_its_row_and_adds_a_history_line_without_input_or_result() {
        let task_id = TaskId::new(Uuid::from_u128(1));
        let worker_id = WorkerId::new(Uuid::from_u128(2));
        let event = TaskEvent::TaskSucceeded {
            task_id,
            worker_id,
            attempt: 2,
            result: json!({"url": "https://img.example/1.png"}),
        };
        let env = envelope(7, &event);
        let changes = Tasks.apply(&env, &Event::Task(event));
        assert_eq!(changes.len(), 2);
        assert!(matches!(
            &changes[0],
            Change::Tasks(TaskChange::Finished { status: TaskState::Succeeded, result: Some(r), .. })
                if r["url"] == "https://img.example/1.png"
        ));
        let Change::Tasks(TaskChange::History { event, detail, .. }) = &changes[1] else {
            panic!("a history line: {changes:?}");
        };
        assert_eq!(event, "TaskSucceeded");
        assert_eq!(detail, &json!({"worker_id": worker_id, "attempt": 2}));
    }

    #[test]
    fn a_publication_keeps_its_position_for_cursors() {
        let task_id = TaskId::new(Uuid::from_u128(1));
        let event = TaskEvent::TaskPublished {
            task_id,
            submitter_id: UserId::new(Uuid::from_u128(3)),
            model: ModelName::parse("sdxl").expect("a name"),
            input: json!({"prompt": "a cat"}),
            webhook_url: Some("https://hooks.example/secret-path".into()),
            priority: 5,
            max_attempts: 3,
        };
        let changes = Tasks.apply(&envelope(42, &event), &Event::Task(event));
        assert!(matches!(
            &changes[0],
            Change::Tasks(TaskChange::InsertTask {
                position: 42,
                priority: 5,
                ..
            })
        ));
        let Change::Tasks(TaskChange::History { detail, .. }) = &changes[1] else {
            panic!("a history line");
        };
        assert!(detail.get("webhook_url").is_none() && detail.get("input").is_none());
    }
}
