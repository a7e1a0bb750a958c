//! The Task aggregate: one job published to a model, its claims by workers under a lease, its
//! result, and the delivery of its webhook.
//!
//! Exactly-once claims come from here, not from a lock: a claim is decided on the task's
//! current state and appended with the stream's expected version, so of two workers racing for
//! one task, one appends `TaskClaimed` and the other gets a version conflict, reloads, and is
//! told the task is no longer claimable. A lease that runs out (the worker died) gives the task
//! back to the queue until it has used all its attempts.
//!
//! A claim also rests on the claiming worker: a revoked worker gets no task. The caller reads
//! the worker's own stream into a [`Claimant`] and appends the claim with that stream's version
//! as an expectation (`CommandHandler::execute_guarded`), so a revocation committed between the
//! read and the append turns the claim into a conflict, decided again as a refusal.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Aggregate, DomainEvent};
use crate::ids::{TaskId, UserId, WorkerId};
use crate::model::ModelName;
use crate::values::Actor;
use crate::worker::Worker;

/// Limits the decisions depend on.
#[derive(Debug, Clone)]
pub struct TaskServices {
    /// Attempts (claims) a task may use before it fails for good.
    pub max_attempts: u32,
    /// Largest accepted input, as compact JSON.
    pub max_input_bytes: usize,
}

impl Default for TaskServices {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            max_input_bytes: 64 * 1024,
        }
    }
}

/// The model a task is published to, as the caller found it.
#[derive(Debug, Clone)]
pub struct ModelRef {
    pub name: ModelName,
    pub enabled: bool,
}

/// The worker behind a claim, as its own stream shows it when the claim is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimant {
    pub id: WorkerId,
    /// Registered and not revoked.
    pub active: bool,
}

impl Claimant {
    /// Worker `id` as `worker` (the fold of its stream) shows it; a worker that was never
    /// registered is not active.
    pub fn of(id: WorkerId, worker: &Worker) -> Self {
        Self {
            id,
            active: worker.id == Some(id) && !worker.revoked,
        }
    }
}

#[derive(Debug, Clone)]
pub enum TaskCommand {
    /// `input` has been checked against the model's schema by the caller; `webhook_url` has
    /// passed the SSRF guard.
    Publish {
        task_id: TaskId,
        submitter: Actor,
        model: ModelRef,
        input: Value,
        webhook_url: Option<String>,
        priority: i32,
    },
    Claim {
        worker: Claimant,
        lease: Duration,
        at: DateTime<Utc>,
    },
    Heartbeat {
        worker: WorkerId,
        lease: Duration,
        at: DateTime<Utc>,
    },
    Complete {
        worker: WorkerId,
        result: Value,
    },
    Fail {
        worker: WorkerId,
        error: String,
        retryable: bool,
    },
    /// Requeues (or fails) the task if its lease ran out before `at`; nothing otherwise.
    ExpireLease {
        at: DateTime<Utc>,
    },
    Cancel {
        actor: Actor,
    },
    /// One delivery attempt of the webhook; `give_up` after the last one.
    RecordWebhook {
        status: Option<u16>,
        error: Option<String>,
        delivered: bool,
        give_up: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames)]
#[serde(tag = "type", content = "data")]
pub enum TaskEvent {
    TaskPublished {
        task_id: TaskId,
        submitter_id: UserId,
        model: ModelName,
        input: Value,
        webhook_url: Option<String>,
        priority: i32,
        max_attempts: u32,
    },
    TaskClaimed {
        task_id: TaskId,
        worker_id: WorkerId,
        attempt: u32,
        lease_until: DateTime<Utc>,
    },
    TaskLeaseExtended {
        task_id: TaskId,
        worker_id: WorkerId,
        lease_until: DateTime<Utc>,
    },
    TaskSucceeded {
        task_id: TaskId,
        worker_id: WorkerId,
        attempt: u32,
        result: Value,
    },
    /// One attempt ended without a result: the worker reported an error, or its lease ran out.
    TaskAttemptFailed {
        task_id: TaskId,
        worker_id: WorkerId,
        attempt: u32,
        error: String,
        retryable: bool,
        lease_expired: bool,
    },
    TaskRequeued {
        task_id: TaskId,
        attempts: u32,
    },
    TaskFailed {
        task_id: TaskId,
        attempts: u32,
        reason: String,
    },
    TaskCancelled {
        task_id: TaskId,
        by: UserId,
    },
    WebhookAttempted {
        task_id: TaskId,
        attempt: u32,
        status: Option<u16>,
        error: Option<String>,
        delivered: bool,
    },
    WebhookAbandoned {
        task_id: TaskId,
        attempts: u32,
    },
}

impl DomainEvent for TaskEvent {
    fn into_event(self) -> crate::Event {
        crate::Event::Task(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("no such task")]
    NotFound,
    #[error("the task exists already")]
    AlreadyExists,
    #[error("model {0} is disabled")]
    ModelDisabled(String),
    #[error("the input is larger than {max} bytes")]
    InputTooLarge { max: usize },
    #[error("priority must be between -100 and 100")]
    BadPriority,
    #[error("the task is not queued")]
    NotClaimable,
    #[error("the worker is unknown or revoked")]
    WorkerRevoked,
    #[error("this worker does not hold the task's lease")]
    NotHolder,
    #[error("only its submitter or an admin may cancel a task")]
    NotSubmitter,
    #[error("only a queued task can be cancelled")]
    NotCancellable,
    #[error("the task has no webhook to deliver")]
    NoWebhook,
}

/// Where a task is in its life.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TaskStatus {
    #[default]
    Queued,
    Running {
        worker: WorkerId,
        lease_until: DateTime<Utc>,
    },
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// Where the task is, without the holder and lease of a running one.
    pub fn state(&self) -> TaskState {
        match self {
            Self::Queued => TaskState::Queued,
            Self::Running { .. } => TaskState::Running,
            Self::Succeeded => TaskState::Succeeded,
            Self::Failed => TaskState::Failed,
            Self::Cancelled => TaskState::Cancelled,
        }
    }
}

/// Where a task is, as the read side stores it and the API shows it: a [`TaskStatus`] without
/// the holder and lease of a running task (the read model keeps those in columns of their
/// own). Written `queued`, `running`, `succeeded`, `failed` or `cancelled`, the same by serde
/// and by [`TaskState::as_str`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    /// The stored and shown spelling; [`str::parse`] reads it back.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Task {
    pub id: Option<TaskId>,
    pub submitter: Option<UserId>,
    pub status: TaskStatus,
    /// Claims so far.
    pub attempts: u32,
    pub max_attempts: u32,
    pub webhook_url: Option<String>,
    pub webhook_attempts: u32,
    /// Delivered or abandoned.
    pub webhook_done: bool,
}

impl Task {
    fn holder(&self, worker: WorkerId) -> Result<u32, TaskError> {
        match self.status {
            TaskStatus::Running { worker: w, .. } if w == worker => Ok(self.attempts),
            _ => Err(TaskError::NotHolder),
        }
    }

    /// What ends an attempt without a result: back to the queue while attempts are left.
    fn end_attempt(
        &self,
        task_id: TaskId,
        worker_id: WorkerId,
        error: String,
        retryable: bool,
        lease_expired: bool,
    ) -> Vec<TaskEvent> {
        let attempt = self.attempts;
        let mut events = vec![TaskEvent::TaskAttemptFailed {
            task_id,
            worker_id,
            attempt,
            error: error.clone(),
            retryable,
            lease_expired,
        }];
        if retryable && attempt < self.max_attempts {
            events.push(TaskEvent::TaskRequeued {
                task_id,
                attempts: attempt,
            });
        } else {
            let reason = if retryable {
                format!("gave up after {attempt} attempts: {error}")
            } else {
                error
            };
            events.push(TaskEvent::TaskFailed {
                task_id,
                attempts: attempt,
                reason,
            });
        }
        events
    }
}

impl Aggregate for Task {
    type Command = TaskCommand;
    type Event = TaskEvent;
    type Error = TaskError;
    type Services = TaskServices;

    fn decide(
        &self,
        command: &TaskCommand,
        services: &TaskServices,
    ) -> Result<Vec<TaskEvent>, TaskError> {
        let Some(task_id) = self.id else {
            return match command {
                TaskCommand::Publish {
                    task_id,
                    submitter,
                    model,
                    input,
                    webhook_url,
                    priority,
                } => {
                    if !model.enabled {
                        return Err(TaskError::ModelDisabled(model.name.as_str().to_owned()));
                    }
                    if input.to_string().len() > services.max_input_bytes {
                        return Err(TaskError::InputTooLarge {
                            max: services.max_input_bytes,
                        });
                    }
                    if !(-100..=100).contains(priority) {
                        return Err(TaskError::BadPriority);
                    }
                    Ok(vec![TaskEvent::TaskPublished {
                        task_id: *task_id,
                        submitter_id: submitter.user_id,
                        model: model.name.clone(),
                        input: input.clone(),
                        webhook_url: webhook_url.clone(),
                        priority: *priority,
                        max_attempts: services.max_attempts,
                    }])
                }
                _ => Err(TaskError::NotFound),
            };
        };
        match command {
            TaskCommand::Publish { .. } => Err(TaskError::AlreadyExists),
            TaskCommand::Claim { worker, .. } if !worker.active => Err(TaskError::WorkerRevoked),
            TaskCommand::Claim { worker, lease, at } => match self.status {
                TaskStatus::Queued => Ok(vec![TaskEvent::TaskClaimed {
                    task_id,
                    worker_id: worker.id,
                    attempt: self.attempts + 1,
                    lease_until: *at + *lease,
                }]),
                _ => Err(TaskError::NotClaimable),
            },
            TaskCommand::Heartbeat { worker, lease, at } => match self.status {
                TaskStatus::Running {
                    worker: w,
                    lease_until,
                } if w == *worker && lease_until > *at => Ok(vec![TaskEvent::TaskLeaseExtended {
                    task_id,
                    worker_id: *worker,
                    lease_until: *at + *lease,
                }]),
                _ => Err(TaskError::NotHolder),
            },
            TaskCommand::Complete { worker, result } => {
                // A late result from the holder is still taken while nobody else has the task.
                let attempt = self.holder(*worker)?;
                Ok(vec![TaskEvent::TaskSucceeded {
                    task_id,
                    worker_id: *worker,
                    attempt,
                    result: result.clone(),
                }])
            }
            TaskCommand::Fail {
                worker,
                error,
                retryable,
            } => {
                self.holder(*worker)?;
                Ok(self.end_attempt(task_id, *worker, error.clone(), *retryable, false))
            }
            TaskCommand::ExpireLease { at } => match self.status {
                TaskStatus::Running {
                    worker,
                    lease_until,
                } if lease_until <= *at => Ok(self.end_attempt(
                    task_id,
                    worker,
                    "the worker's lease expired".into(),
                    true,
                    true,
                )),
                _ => Ok(vec![]),
            },
            TaskCommand::Cancel { actor } => {
                if Some(actor.user_id) != self.submitter && !actor.is_admin {
                    return Err(TaskError::NotSubmitter);
                }
                match self.status {
                    TaskStatus::Queued => Ok(vec![TaskEvent::TaskCancelled {
                        task_id,
                        by: actor.user_id,
                    }]),
                    _ => Err(TaskError::NotCancellable),
                }
            }
            TaskCommand::RecordWebhook {
                status,
                error,
                delivered,
                give_up,
            } => {
                if self.webhook_url.is_none() || self.webhook_done || !self.status.is_final() {
                    return Err(TaskError::NoWebhook);
                }
                let attempt = self.webhook_attempts + 1;
                let mut events = vec![TaskEvent::WebhookAttempted {
                    task_id,
                    attempt,
                    status: *status,
                    error: error.clone(),
                    delivered: *delivered,
                }];
                if !delivered && *give_up {
                    events.push(TaskEvent::WebhookAbandoned {
                        task_id,
                        attempts: attempt,
                    });
                }
                Ok(events)
            }
        }
    }

    fn evolve(&mut self, event: &TaskEvent) {
        match event {
            TaskEvent::TaskPublished {
                task_id,
                submitter_id,
                webhook_url,
                max_attempts,
                ..
            } => {
                self.id = Some(*task_id);
                self.submitter = Some(*submitter_id);
                self.webhook_url = webhook_url.clone();
                self.max_attempts = *max_attempts;
            }
            TaskEvent::TaskClaimed {
                worker_id,
                attempt,
                lease_until,
                ..
            } => {
                self.attempts = *attempt;
                self.status = TaskStatus::Running {
                    worker: *worker_id,
                    lease_until: *lease_until,
                };
            }
            TaskEvent::TaskLeaseExtended { lease_until, .. } => {
                if let TaskStatus::Running { lease_until: l, .. } = &mut self.status {
                    *l = *lease_until;
                }
            }
            TaskEvent::TaskSucceeded { .. } => self.status = TaskStatus::Succeeded,
            TaskEvent::TaskAttemptFailed { .. } => {}
            TaskEvent::TaskRequeued { .. } => self.status = TaskStatus::Queued,
            TaskEvent::TaskFailed { .. } => self.status = TaskStatus::Failed,
            TaskEvent::TaskCancelled { .. } => self.status = TaskStatus::Cancelled,
            TaskEvent::WebhookAttempted {
                attempt, delivered, ..
            } => {
                self.webhook_attempts = *attempt;
                self.webhook_done |= *delivered;
            }
            TaskEvent::WebhookAbandoned { .. } => self.webhook_done = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::given;
    use crate::worker::WorkerEvent;
    use serde_json::json;
    use uuid::Uuid;

    fn actor(n: u128, is_admin: bool) -> Actor {
        Actor {
            user_id: UserId::new(Uuid::from_u128(n)),
            username: format!("user{n}"),
            is_admin,
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn worker(n: u128) -> WorkerId {
        WorkerId::new(Uuid::from_u128(n))
    }

    fn task_id() -> TaskId {
        TaskId::new(Uuid::from_u128(1))
    }

    fn sdxl() -> ModelName {
        ModelName::parse("sdxl").unwrap()
    }

    fn webhook_url(webhook: bool) -> Option<String> {
        webhook.then(|| "https://hooks.example.edu/t".to_owned())
    }

    fn publish(webhook: bool) -> TaskCommand {
        TaskCommand::Publish {
            task_id: task_id(),
            submitter: actor(1, false),
            model: ModelRef {
                name: sdxl(),
                enabled: true,
            },
            input: json!({"prompt": "a cat"}),
            webhook_url: webhook_url(webhook),
            priority: 0,
        }
    }

    /// What `publish(webhook)` records under the default services.
    fn published(webhook: bool) -> TaskEvent {
        TaskEvent::TaskPublished {
            task_id: task_id(),
            submitter_id: actor(1, false).user_id,
            model: sdxl(),
            input: json!({"prompt": "a cat"}),
            webhook_url: webhook_url(webhook),
            priority: 0,
            max_attempts: 3,
        }
    }

    fn claim(w: u128, s: i64) -> TaskCommand {
        TaskCommand::Claim {
            worker: Claimant {
                id: worker(w),
                active: true,
            },
            lease: Duration::seconds(30),
            at: at(s),
        }
    }

    /// A claim by worker `w` as its stream shows it after `history`.
    fn claim_by(w: u128, history: Vec<WorkerEvent>, s: i64) -> TaskCommand {
        TaskCommand::Claim {
            worker: Claimant::of(worker(w), given::<Worker>(history).state()),
            lease: Duration::seconds(30),
            at: at(s),
        }
    }

    /// Attempt `attempt`, claimed by `w` at `s` under a 30-second lease.
    fn claimed(w: u128, attempt: u32, s: i64) -> TaskEvent {
        TaskEvent::TaskClaimed {
            task_id: task_id(),
            worker_id: worker(w),
            attempt,
            lease_until: at(s + 30),
        }
    }

    fn attempt_failed(w: u128, attempt: u32, error: &str, lease_expired: bool) -> TaskEvent {
        TaskEvent::TaskAttemptFailed {
            task_id: task_id(),
            worker_id: worker(w),
            attempt,
            error: error.into(),
            retryable: true,
            lease_expired,
        }
    }

    const EXPIRED: &str = "the worker's lease expired";

    /// The lease of attempt `attempt` by `w` ran out with attempts left.
    fn expired(w: u128, attempt: u32) -> [TaskEvent; 2] {
        [
            attempt_failed(w, attempt, EXPIRED, true),
            TaskEvent::TaskRequeued {
                task_id: task_id(),
                attempts: attempt,
            },
        ]
    }

    fn registered(w: u128) -> WorkerEvent {
        WorkerEvent::WorkerRegistered {
            worker_id: worker(w),
            name: "gpu-1".into(),
            models: vec![sdxl()],
            token_hash: "h".into(),
            by: UserId::new(Uuid::from_u128(7)),
        }
    }

    fn revoked(w: u128) -> WorkerEvent {
        WorkerEvent::WorkerRevoked {
            worker_id: worker(w),
            by: UserId::new(Uuid::from_u128(7)),
        }
    }

    #[test]
    fn a_revoked_worker_claims_nothing() {
        let g = given::<Task>([published(false)])
            .when(&claim_by(1, vec![registered(1), revoked(1)], 0))
            .then_error(TaskError::WorkerRevoked);
        assert_eq!(g.state().status, TaskStatus::Queued);
        assert_eq!(g.state().attempts, 0);
        // Revoked before the task was even there, or after an attempt of its own: the same.
        let [failed, requeued] = expired(1, 1);
        given::<Task>([published(false), claimed(1, 1, 0), failed, requeued])
            .when(&claim_by(1, vec![registered(1), revoked(1)], 31))
            .then_error(TaskError::WorkerRevoked)
            // Another worker's revocation is no concern of this one.
            .when(&claim_by(2, vec![registered(2)], 32))
            .then([claimed(2, 2, 32)]);
    }

    #[test]
    fn a_worker_that_was_never_registered_claims_nothing() {
        given::<Task>([published(false)])
            .when(&claim_by(1, vec![], 0))
            .then_error(TaskError::WorkerRevoked)
            // Its id must be the one registered on the stream it was read from.
            .when(&claim_by(1, vec![registered(2)], 0))
            .then_error(TaskError::WorkerRevoked);
    }

    #[test]
    fn a_task_is_claimed_once() {
        let g = given::<Task>([published(false)])
            .when(&claim(1, 0))
            .then([claimed(1, 1, 0)])
            .when(&claim(2, 1))
            .then_error(TaskError::NotClaimable);
        assert_eq!(g.state().attempts, 1);
    }

    #[test]
    fn an_expired_lease_requeues_until_the_attempts_are_used_up() {
        // The dead worker's late heartbeat is refused; another worker takes the task.
        let late = TaskCommand::Heartbeat {
            worker: worker(1),
            lease: Duration::seconds(30),
            at: at(31),
        };
        let g = given::<Task>([published(false), claimed(1, 1, 0)])
            .when(&TaskCommand::ExpireLease { at: at(29) })
            .then([])
            .when(&TaskCommand::ExpireLease { at: at(30) })
            .then(expired(1, 1))
            .when(&late)
            .then_error(TaskError::NotHolder)
            .when(&claim(2, 31))
            .then([claimed(2, 2, 31)])
            .when(&TaskCommand::ExpireLease { at: at(70) })
            .then(expired(2, 2))
            .when(&claim(3, 71))
            .then([claimed(3, 3, 71)])
            .when(&TaskCommand::ExpireLease { at: at(200) })
            .then([
                attempt_failed(3, 3, EXPIRED, true),
                TaskEvent::TaskFailed {
                    task_id: task_id(),
                    attempts: 3,
                    reason: format!("gave up after 3 attempts: {EXPIRED}"),
                },
            ]);
        assert_eq!(g.state().status, TaskStatus::Failed);
    }

    #[test]
    fn heartbeats_extend_and_only_the_holder_completes() {
        let other = TaskCommand::Complete {
            worker: worker(2),
            result: json!("x"),
        };
        let g = given::<Task>([published(false), claimed(1, 1, 0)])
            .when(&TaskCommand::Heartbeat {
                worker: worker(1),
                lease: Duration::seconds(30),
                at: at(20),
            })
            .then([TaskEvent::TaskLeaseExtended {
                task_id: task_id(),
                worker_id: worker(1),
                lease_until: at(50),
            }])
            .when(&TaskCommand::ExpireLease { at: at(40) })
            .then([])
            .when(&other)
            .then_error(TaskError::NotHolder)
            .when(&TaskCommand::Complete {
                worker: worker(1),
                result: json!({"url": "s3://x"}),
            })
            .then([TaskEvent::TaskSucceeded {
                task_id: task_id(),
                worker_id: worker(1),
                attempt: 1,
                result: json!({"url": "s3://x"}),
            }]);
        assert_eq!(g.state().status, TaskStatus::Succeeded);
        g.when(&claim(2, 50)).then_error(TaskError::NotClaimable);
    }

    #[test]
    fn failures_retry_or_end() {
        const OOM: &str = "CUDA out of memory";
        let fail = |retryable| TaskCommand::Fail {
            worker: worker(1),
            error: OOM.into(),
            retryable,
        };
        given::<Task>([published(false), claimed(1, 1, 0)])
            .when(&fail(true))
            .then([
                attempt_failed(1, 1, OOM, false),
                TaskEvent::TaskRequeued {
                    task_id: task_id(),
                    attempts: 1,
                },
            ])
            .when(&claim(1, 5))
            .then([claimed(1, 2, 5)])
            .when(&fail(false))
            .then([
                TaskEvent::TaskAttemptFailed {
                    task_id: task_id(),
                    worker_id: worker(1),
                    attempt: 2,
                    error: OOM.into(),
                    retryable: false,
                    lease_expired: false,
                },
                TaskEvent::TaskFailed {
                    task_id: task_id(),
                    attempts: 2,
                    reason: OOM.into(),
                },
            ]);
    }

    #[test]
    fn publishing_checks_model_size_and_priority() {
        let mut disabled = publish(false);
        if let TaskCommand::Publish { model, .. } = &mut disabled {
            model.enabled = false;
        }
        let mut too_large = publish(false);
        if let TaskCommand::Publish { input, .. } = &mut too_large {
            *input = json!({"prompt": "x".repeat(70_000)});
        }
        let mut bad_priority = publish(false);
        if let TaskCommand::Publish { priority, .. } = &mut bad_priority {
            *priority = 101;
        }
        given::<Task>([])
            .when(&disabled)
            .then_error(TaskError::ModelDisabled("sdxl".into()))
            .when(&too_large)
            .then_error(TaskError::InputTooLarge { max: 64 * 1024 })
            .when(&bad_priority)
            .then_error(TaskError::BadPriority)
            .when(&publish(false))
            .then([published(false)])
            .when(&publish(false))
            .then_error(TaskError::AlreadyExists);
    }

    #[test]
    fn only_the_submitter_cancels_a_queued_task() {
        let cancel = |a| TaskCommand::Cancel { actor: a };
        let g = given::<Task>([published(false)])
            .when(&cancel(actor(2, false)))
            .then_error(TaskError::NotSubmitter)
            .when(&cancel(actor(1, false)))
            .then([TaskEvent::TaskCancelled {
                task_id: task_id(),
                by: actor(1, false).user_id,
            }]);
        assert_eq!(g.state().status, TaskStatus::Cancelled);
        given::<Task>([published(false), claimed(1, 1, 0)])
            .when(&cancel(actor(1, false)))
            .then_error(TaskError::NotCancellable);
    }

    #[test]
    fn webhooks_are_recorded_after_a_final_state_until_delivered() {
        let attempt = |delivered, give_up| TaskCommand::RecordWebhook {
            status: Some(if delivered { 200 } else { 500 }),
            error: None,
            delivered,
            give_up,
        };
        let attempted = |attempt, delivered| TaskEvent::WebhookAttempted {
            task_id: task_id(),
            attempt,
            status: Some(if delivered { 200 } else { 500 }),
            error: None,
            delivered,
        };
        given::<Task>([published(true), claimed(1, 1, 0)])
            .when(&attempt(true, false))
            .then_error(TaskError::NoWebhook);
        let succeeded = TaskEvent::TaskSucceeded {
            task_id: task_id(),
            worker_id: worker(1),
            attempt: 1,
            result: json!(1),
        };
        given::<Task>([published(true), claimed(1, 1, 0), succeeded])
            .when(&attempt(false, false))
            .then([attempted(1, false)])
            .when(&attempt(false, false))
            .then([attempted(2, false)])
            .when(&attempt(true, false))
            .then([attempted(3, true)])
            .when(&attempt(true, false))
            .then_error(TaskError::NoWebhook);
        let cancelled = TaskEvent::TaskCancelled {
            task_id: task_id(),
            by: actor(1, false).user_id,
        };
        given::<Task>([published(true), cancelled])
            .when(&attempt(false, true))
            .then([
                attempted(1, false),
                TaskEvent::WebhookAbandoned {
                    task_id: task_id(),
                    attempts: 1,
                },
            ]);
    }

    #[test]
    fn task_states_are_spelled_alike_by_serde_and_as_str() {
        for (state, name) in [
            (TaskState::Queued, "queued"),
            (TaskState::Running, "running"),
            (TaskState::Succeeded, "succeeded"),
            (TaskState::Failed, "failed"),
            (TaskState::Cancelled, "cancelled"),
        ] {
            assert_eq!(state.as_str(), name);
            assert_eq!(serde_json::to_value(state).unwrap(), name);
            assert_eq!(name.parse::<TaskState>(), Ok(state));
            assert_eq!(
                serde_json::from_value::<TaskState>(name.into()).unwrap(),
                state
            );
        }
        assert!("Queued".parse::<TaskState>().is_err());
    }
}
