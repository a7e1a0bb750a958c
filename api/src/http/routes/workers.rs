//! Workers: admins register them (a credential for some models, shown once); workers claim
//! tasks under a lease, extend it, and report a result or a failure.
//!
//! Worker tokens are not user sessions: they start with `thw_`, are looked up in the
//! `workers` read model, and open only the routes under `/workers/` below.
//!
//! Revocation is decided by the write model, not by that read model, which may lag: every
//! worker request checks the worker's own stream, a waiting claim checks it again each round,
//! and a claim is appended with the worker stream's version as an expectation
//! (`CommandHandler::execute_guarded`), so a revocation committed at any moment before the
//! claim's append makes the claim conflict and be refused by the Task aggregate.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::model::{Model, ModelName};
use domain::task::{Claimant, Task, TaskCommand, TaskError, TaskEvent, TaskState};
use domain::worker::{Worker, WorkerCommand};
use domain::{Position, TaskId, WorkerId};
use projections::tasks::WorkerView;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower_http::request_id::RequestId;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::error::{ApiError, Problem};
use crate::http::extract::{After, ApiJson, Auth, projection_headers};
use crate::http::routes::auth::CommandDone;
use crate::http::routes::tasks::parse_task_id;
use crate::http::routes::{consistent, context};
use crate::http::state::AppState;

/// The prefix that tells a worker token from a user's bearer token.
pub const TOKEN_PREFIX: &str = "thw_";

/// A registered worker, from `Authorization: Bearer thw_...`, unrevoked as of its own stream.
#[derive(Debug, Clone)]
pub struct WorkerAuth(pub WorkerView);

impl FromRequestParts<AppState> for WorkerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let after = After::from_request_parts(parts, state).await?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(TOKEN_PREFIX) && t.len() <= 200)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "send Authorization: Bearer thw_... (a worker token from POST /api/v1/workers)",
                )
            })?;
        consistent(state, after, &["tasks"]).await?;
        let worker = state
            .tasks
            .worker_by_token(&commands::sessions::token_hash(token))
            .await?
            .filter(|w| !w.revoked)
            .ok_or_else(revoked)?;
        if !active(state, worker.worker_id).await? {
            return Err(revoked());
        }
        Ok(Self(worker))
    }
}

fn revoked() -> ApiError {
    ApiError::unauthorized("the worker token is unknown or revoked")
}

/// Whether the worker's own stream shows it registered and unrevoked (the read model may not
/// have applied a revocation yet).
async fn active(state: &AppState, worker_id: WorkerId) -> Result<bool, ApiError> {
    let worker = state
        .handler
        .load_cached::<Worker>(&worker_id.stream())
        .await?;
    Ok(Claimant::of(worker_id, &worker.state).active)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorker {
    /// A label for operators (1 to 64 characters).
    pub name: String,
    /// The registered models it serves (1 to 32).
    pub models: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerRegistered {
    #[schema(value_type = String, format = Uuid)]
    pub worker_id: WorkerId,
    /// Shown once: only its hash is kept.
    pub token: String,
    pub position: Position,
}

/// Registers a worker for some models and returns its token (admins).
#[utoipa::path(post, path = "/api/v1/workers", tag = "workers", request_body = NewWorker, security(("bearer" = [])),
    responses((status = 201, body = WorkerRegistered), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn register_worker(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<NewWorker>,
) -> Result<(StatusCode, Json<WorkerRegistered>), ApiError> {
    if !auth.actor.is_admin {
        return Err(ApiError::forbidden("only admins manage workers"));
    }
    let name = body.name.trim();
    if !(1..=64).contains(&name.chars().count()) {
        return Err(ApiError::from(domain::values::InvalidValue {
            field: "name",
            reason: "must be 1 to 64 characters".into(),
        }));
    }
    let mut models = BTreeSet::new();
    for raw in &body.models {
        let model = ModelName::parse(raw)?;
        if !state
            .handler
            .load_cached::<Model>(&model.stream())
            .await?
            .state
            .exists()
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-model",
                "Unknown model",
                format!("models: no model is registered as {:?}", model.as_str()),
            ));
        }
        models.insert(model);
    }
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let worker_id = WorkerId::new(Uuid::now_v7());
    let command = WorkerCommand::Register {
        worker_id,
        name: name.to_owned(),
        models: models.into_iter().collect(),
        token_hash: commands::sessions::token_hash(&token),
        by: auth.actor.clone(),
    };
    let ctx = context(Some(&auth.actor), request_id.as_deref(), None);
    let outcome = state
        .handler
        .execute::<Worker>(&worker_id.stream(), &command, &(), &ctx)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(WorkerRegistered {
            worker_id,
            token,
            position: outcome.position,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerDto {
    #[schema(value_type = String, format = Uuid)]
    pub worker_id: WorkerId,
    pub name: String,
    pub models: Vec<String>,
    pub revoked: bool,
    pub registered_at: DateTime<Utc>,
}

/// Every worker credential (admins).
#[utoipa::path(get, path = "/api/v1/workers", tag = "workers", security(("bearer" = [])),
    params(("after" = Option<u64>, Query)),
    responses((status = 200, body = [WorkerDto]), (status = 403, body = Problem)))]
pub async fn list_workers(
    State(state): State<AppState>,
    after: After,
    auth: Auth,
) -> Result<(HeaderMap, Json<Vec<WorkerDto>>), ApiError> {
    if !auth.actor.is_admin {
        return Err(ApiError::forbidden("only admins manage workers"));
    }
    let position = consistent(&state, after, &["tasks"]).await?;
    let workers = state.tasks.workers().await?;
    let dtos = workers
        .into_iter()
        .map(|w| WorkerDto {
            worker_id: w.worker_id,
            name: w.name,
            models: w.models.iter().map(|m| m.as_str().to_owned()).collect(),
            revoked: w.revoked,
            registered_at: w.registered_at,
        })
        .collect();
    Ok((projection_headers(position), Json(dtos)))
}

/// Revokes a worker's token (admins). Tasks it holds come back when their leases run out.
#[utoipa::path(delete, path = "/api/v1/workers/{id}", tag = "workers", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = CommandDone), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke_worker(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = WorkerId::parse(&id).map_err(|_| ApiError::not_found("no such worker"))?;
    let ctx = context(Some(&auth.actor), request_id.as_deref(), None);
    let command = WorkerCommand::Revoke {
        by: auth.actor.clone(),
    };
    let outcome = state
        .handler
        .execute::<Worker>(&id.stream(), &command, &(), &ctx)
        .await?;
    Ok(Json(CommandDone {
        position: outcome.position,
    }))
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
/// Send `{}` for the defaults.
pub struct ClaimRequest {
    /// Only these of the worker's models (default: all of them).
    pub models: Option<Vec<String>>,
    /// The lease in seconds (default and maximum are the server's `tasks` settings).
    pub lease_secs: Option<u32>,
    /// Wait up to this many seconds (0 to 30, default 0) for a task before answering 204.
    pub wait_secs: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimedTask {
    #[schema(value_type = String, format = Uuid)]
    pub task_id: TaskId,
    pub model: String,
    #[schema(value_type = Object)]
    pub input: Value,
    /// 1 for the first claim of the task, 2 after one failed attempt, and so on.
    pub attempt: u32,
    pub lease_until: DateTime<Utc>,
    pub position: Position,
}

/// The longest a claim waits for work.
const MAX_WAIT_SECS: u32 = 30;
/// Candidates read per round, most urgent first.
const CANDIDATES: usize = 32;

fn lease(state: &AppState, secs: Option<u32>) -> Result<chrono::Duration, ApiError> {
    let tasks = &state.settings.tasks;
    let secs = secs.unwrap_or(tasks.default_lease_secs);
    if !(1..=tasks.max_lease_secs).contains(&secs) {
        return Err(ApiError::bad_request(format!(
            "lease_secs: must be between 1 and {}",
            tasks.max_lease_secs
        )));
    }
    Ok(chrono::Duration::seconds(i64::from(secs)))
}

/// Claims the most urgent queued task of the worker's models, under a lease. Exactly one
/// worker gets each claim: the Task aggregate takes it on the task's stream version, and a
/// worker that lost the race moves on to the next candidate. 204 when there is none. A
/// revoked worker gets 401, also when the revocation lands while its claim waits.
#[utoipa::path(post, path = "/api/v1/workers/claim", tag = "workers", request_body = ClaimRequest,
    security(("worker" = [])),
    responses((status = 200, body = ClaimedTask), (status = 204, description = "no task within wait_secs"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn claim(
    State(state): State<AppState>,
    WorkerAuth(worker): WorkerAuth,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<ClaimRequest>,
) -> Result<Response, ApiError> {
    let lease = lease(&state, body.lease_secs)?;
    let wait = body.wait_secs.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::bad_request(format!(
            "wait_secs: must be between 0 and {MAX_WAIT_SECS}"
        )));
    }
    let models = match body.models {
        None => worker.models.clone(),
        Some(wanted) => {
            let mut models = Vec::new();
            for raw in wanted {
                let model = ModelName::parse(&raw)?;
                if !worker.models.contains(&model) {
                    return Err(ApiError::forbidden(format!(
                        "models: this worker does not serve {:?}",
                        model.as_str()
                    )));
                }
                models.push(model);
            }
            models
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(wait));
    let services = state.settings.tasks.services();
    let worker_stream = worker.worker_id.stream();
    loop {
        let seen = state.hub.position(&["tasks"]);
        // In order: a worker that loses the race for one moves on to the next.
        for task_id in state.tasks.claimable(&models, CANDIDATES).await? {
            // Each claim's own time, for its lease and its events alike (a long poll runs
            // for seconds).
            let ctx = context(None, request_id.as_deref(), None);
            let at = ctx.at;
            let command = |current: &Worker| TaskCommand::Claim {
                worker: Claimant::of(worker.worker_id, current),
                lease,
                at,
            };
            match state
                .handler
                .execute_guarded::<Task, Worker>(
                    &task_id.stream(),
                    &worker_stream,
                    command,
                    &services,
                    &ctx,
                )
                .await
            {
                Ok(outcome) => {
                    if let Some(claimed) = claimed(&state, &outcome).await? {
                        return Ok((StatusCode::OK, Json(claimed)).into_response());
                    }
                }
                // Someone else got it first (the read model had not seen that yet).
                Err(commands::CommandError::Rejected(TaskError::NotClaimable)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // Wake up when the tasks model moves (a new task, a finished one), or after a while
        // in any case (a lease may have run out without any event yet).
        let nap = (deadline - now).min(Duration::from_millis(500));
        let _ = state.hub.wait_for(&["tasks"], seen + 1, nap).await;
        // A waiting claim sees a revocation when it wakes (the tasks model moves with it),
        // not only when work comes; `WorkerAuth` checked the first round.
        if !active(&state, worker.worker_id).await? {
            return Err(revoked());
        }
    }
}

/// The task a claim took, with its model and input from the task's own stream (the read
/// model may not have the task yet when a claim follows its publication at once).
async fn claimed(
    state: &AppState,
    outcome: &commands::Outcome<TaskEvent>,
) -> Result<Option<ClaimedTask>, ApiError> {
    let Some((task_id, attempt, lease_until)) = outcome.events.iter().find_map(|r| match r.event {
        TaskEvent::TaskClaimed {
            task_id,
            attempt,
            lease_until,
            ..
        } => Some((task_id, attempt, lease_until)),
        _ => None,
    }) else {
        return Ok(None);
    };
    let envelopes = state
        .handler
        .store()
        .read_stream(&task_id.stream(), 1)
        .await?;
    match envelopes.first().map(domain::Event::decode) {
        Some(Ok(domain::Event::Task(TaskEvent::TaskPublished { model, input, .. }))) => {
            Ok(Some(ClaimedTask {
                task_id,
                model: model.as_str().to_owned(),
                input,
                attempt,
                lease_until,
                position: outcome.position,
            }))
        }
        _ => Err(ApiError::internal(format!(
            "task {task_id} was claimed but its stream does not start with its publication"
        ))),
    }
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub lease_secs: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseExtended {
    pub lease_until: DateTime<Utc>,
    pub position: Position,
}

/// Runs a worker's command on a task. `command` is given the command's time, which is also
/// its events' time.
async fn run_as_worker(
    state: &AppState,
    request_id: Option<&RequestId>,
    task_id: TaskId,
    command: impl FnOnce(DateTime<Utc>) -> TaskCommand,
) -> Result<commands::Outcome<TaskEvent>, ApiError> {
    let ctx = context(None, request_id, None);
    let command = command(ctx.at);
    Ok(state
        .handler
        .execute::<Task>(
            &task_id.stream(),
            &command,
            &state.settings.tasks.services(),
            &ctx,
        )
        .await?)
}

/// Extends the lease of a task this worker holds. 409 `lease-lost` once it has run out.
#[utoipa::path(post, path = "/api/v1/workers/tasks/{id}/heartbeat", tag = "workers",
    request_body = HeartbeatRequest, security(("worker" = [])), params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = LeaseExtended), (status = 409, body = Problem)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    WorkerAuth(worker): WorkerAuth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<HeartbeatRequest>,
) -> Result<Json<LeaseExtended>, ApiError> {
    let task_id = parse_task_id(&id)?;
    let lease = lease(&state, body.lease_secs)?;
    let command = |at| TaskCommand::Heartbeat {
        worker: worker.worker_id,
        lease,
        at,
    };
    let outcome = run_as_worker(&state, request_id.as_deref(), task_id, command).await?;
    let lease_until = outcome
        .events
        .iter()
        .find_map(|r| match &r.event {
            TaskEvent::TaskLeaseExtended { lease_until, .. } => Some(*lease_until),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal("a heartbeat without TaskLeaseExtended"))?;
    Ok(Json(LeaseExtended {
        lease_until,
        position: outcome.position,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The task's result, any JSON.
    #[schema(value_type = Object)]
    pub result: Value,
}

/// Reports a task's result. 409 `lease-lost` if the worker no longer holds it.
#[utoipa::path(post, path = "/api/v1/workers/tasks/{id}/complete", tag = "workers",
    request_body = CompleteRequest, security(("worker" = [])), params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = CommandDone), (status = 409, body = Problem)))]
pub async fn complete(
    State(state): State<AppState>,
    WorkerAuth(worker): WorkerAuth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CompleteRequest>,
) -> Result<Json<CommandDone>, ApiError> {
    let task_id = parse_task_id(&id)?;
    let command = |_| TaskCommand::Complete {
        worker: worker.worker_id,
        result: body.result,
    };
    let outcome = run_as_worker(&state, request_id.as_deref(), task_id, command).await?;
    Ok(Json(CommandDone {
        position: outcome.position,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// What went wrong (1 to 2000 characters).
    pub error: String,
    /// Whether another attempt may succeed (the task is queued again while it has attempts
    /// left); false fails it for good.
    pub retryable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailReported {
    /// `queued` (it will be tried again) or `failed`.
    #[schema(value_type = String)]
    pub status: TaskState,
    pub position: Position,
}

/// Reports that an attempt failed. 409 `lease-lost` if the worker no longer holds the task.
#[utoipa::path(post, path = "/api/v1/workers/tasks/{id}/fail", tag = "workers",
    request_body = FailRequest, security(("worker" = [])), params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = FailReported), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn fail(
    State(state): State<AppState>,
    WorkerAuth(worker): WorkerAuth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FailRequest>,
) -> Result<Json<FailReported>, ApiError> {
    let task_id = parse_task_id(&id)?;
    let error = body.error.trim();
    if !(1..=2000).contains(&error.chars().count()) {
        return Err(ApiError::from(domain::values::InvalidValue {
            field: "error",
            reason: "must be 1 to 2000 characters".into(),
        }));
    }
    let command = |_| TaskCommand::Fail {
        worker: worker.worker_id,
        error: error.to_owned(),
        retryable: body.retryable,
    };
    let outcome = run_as_worker(&state, request_id.as_deref(), task_id, command).await?;
    let requeued = outcome
        .events
        .iter()
        .any(|r| matches!(r.event, TaskEvent::TaskRequeued { .. }));
    Ok(Json(FailReported {
        status: if requeued {
            TaskState::Queued
        } else {
            TaskState::Failed
        },
        position: outcome.position,
    }))
}
