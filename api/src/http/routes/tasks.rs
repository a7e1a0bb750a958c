//! Models (admins register them) and tasks (users publish them; only the submitter and admins
//! see one). The worker side is in [`super::workers`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, Utc};
use domain::TaskId;
use domain::model::{Model, ModelCommand, ModelName, ModelSpec};
use domain::task::{ModelRef, Task, TaskCommand, TaskError, TaskEvent, TaskState};
use domain::{Position, WorkerId};
use projections::tasks::{HistoryLine, ModelView, TaskView, WebhookState};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower_http::request_id::RequestId;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::cursor::{Cursors, List};
use crate::http::error::{ApiError, Problem, Refusal};
use crate::http::extract::{After, ApiJson, ApiQuery, Auth, IdempotencyHeader, projection_headers};
use crate::http::routes::auth::CommandDone;
use crate::http::routes::posts::{ListParams, next_cursor, page};
use crate::http::routes::{consistent, context};
use crate::http::state::AppState;

/// Compiled input schemas of the registered models, by model and stream version: a model's
/// schema is compiled once per change, not per task.
#[derive(Default)]
pub struct Schemas(Mutex<HashMap<(ModelName, u64), Arc<jsonschema::Validator>>>);

impl Schemas {
    /// The validator of `model` at `version`, whose schema is `schema`.
    fn validator(
        &self,
        model: &ModelName,
        version: u64,
        schema: &Value,
    ) -> Result<Arc<jsonschema::Validator>, String> {
        let key = (model.clone(), version);
        if let Some(v) = self.0.lock().expect("schema cache lock").get(&key) {
            return Ok(v.clone());
        }
        let validator = Arc::new(compile(schema)?);
        let mut cache = self.0.lock().expect("schema cache lock");
        // Old versions of a model are never asked for again: drop them.
        cache.retain(|(name, _), _| name != model);
        cache.insert(key, validator.clone());
        Ok(validator)
    }
}

/// `schema` as a validator, or why it is not a usable JSON Schema.
fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

fn invalid(field: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "Invalid field",
        format!("{field}: {detail}"),
    )
}

fn model_name(raw: &str) -> Result<ModelName, ApiError> {
    Ok(ModelName::parse(raw)?)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    /// Free-form kind, e.g. `text-to-image` (1 to 64 characters).
    pub kind: String,
    /// The JSON Schema every task input must satisfy.
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// At most this many of its tasks run at once (1 to 10 000).
    pub max_concurrent: u32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModel {
    /// 1 to 64 of a-z, 0-9, `-`, `_`, `.`.
    pub name: String,
    #[serde(flatten)]
    pub spec: ModelBody,
    /// Default true.
    pub enabled: Option<bool>,
}

impl ModelBody {
    fn spec(self) -> Result<ModelSpec, ApiError> {
        let kind = self.kind.trim();
        if !(1..=64).contains(&kind.chars().count()) {
            return Err(invalid("kind", "must be 1 to 64 characters"));
        }
        if !(1..=10_000).contains(&self.max_concurrent) {
            return Err(invalid("max_concurrent", "must be between 1 and 10000"));
        }
        // `true` and `false` are JSON Schemas too, but the API promises an object: a schema
        // that describes the input, not one that takes or refuses everything.
        if !self.input_schema.is_object() {
            return Err(invalid("input_schema", "must be a JSON Schema object"));
        }
        compile(&self.input_schema)
            .map_err(|e| invalid("input_schema", format!("not a valid JSON Schema: {e}")))?;
        Ok(ModelSpec {
            kind: kind.to_owned(),
            input_schema: self.input_schema,
            max_concurrent: self.max_concurrent,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDto {
    pub name: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub input_schema: Value,
    pub max_concurrent: u32,
    pub enabled: bool,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ModelView> for ModelDto {
    fn from(v: ModelView) -> Self {
        Self {
            name: v.name.as_str().to_owned(),
            kind: v.kind,
            input_schema: v.input_schema,
            max_concurrent: v.max_concurrent,
            enabled: v.enabled,
            registered_at: v.registered_at,
            updated_at: v.updated_at,
        }
    }
}

async fn run_on_model(
    state: &AppState,
    auth: &Auth,
    request_id: Option<&RequestId>,
    name: &ModelName,
    command: ModelCommand,
) -> Result<Position, ApiError> {
    let ctx = context(Some(&auth.actor), request_id, None);
    let outcome = state
        .handler
        .execute::<Model>(&name.stream(), &command, &(), &ctx)
        .await?;
    Ok(outcome.position)
}

/// Registers a model (admins).
#[utoipa::path(post, path = "/api/v1/models", tag = "tasks", request_body = NewModel, security(("bearer" = [])),
    responses((status = 201, body = CommandDone), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn register_model(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<NewModel>,
) -> Result<(StatusCode, HeaderMap, Json<CommandDone>), ApiError> {
    if !auth.actor.is_admin {
        return Err(ApiError::forbidden("only admins manage models"));
    }
    let name = model_name(&body.name)?;
    let command = ModelCommand::Register {
        name: name.clone(),
        spec: body.spec.spec()?,
        enabled: body.enabled.unwrap_or(true),
        by: auth.actor.clone(),
    };
    let position = run_on_model(&state, &auth, request_id.as_deref(), &name, command).await?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/models/{}", name.as_str())) {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::CREATED, headers, Json(CommandDone { position })))
}

/// Replaces a model's kind, input schema and concurrency (admins).
#[utoipa::path(put, path = "/api/v1/models/{name}", tag = "tasks", request_body = ModelBody, security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = CommandDone), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update_model(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ModelBody>,
) -> Result<Json<CommandDone>, ApiError> {
    if !auth.actor.is_admin {
        return Err(ApiError::forbidden("only admins manage models"));
    }
    let name = ModelName::parse(&name).map_err(|_| ApiError::not_found("no such model"))?;
    let command = ModelCommand::Update {
        spec: body.spec()?,
        by: auth.actor.clone(),
    };
    let position = run_on_model(&state, &auth, request_id.as_deref(), &name, command).await?;
    Ok(Json(CommandDone { position }))
}

async fn switch_model(
    state: AppState,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    name: String,
    enable: bool,
) -> Result<Json<CommandDone>, ApiError> {
    let name = ModelName::parse(&name).map_err(|_| ApiError::not_found("no such model"))?;
    let by = auth.actor.clone();
    let command = if enable {
        ModelCommand::Enable { by }
    } else {
        ModelCommand::Disable { by }
    };
    let position = run_on_model(&state, &auth, request_id.as_deref(), &name, command).await?;
    Ok(Json(CommandDone { position }))
}

/// Stops a model from taking new tasks (admins). Queued tasks stay queued, unclaimed.
#[utoipa::path(post, path = "/api/v1/models/{name}/disable", tag = "tasks", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = CommandDone), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn disable_model(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(name): Path<String>,
) -> Result<Json<CommandDone>, ApiError> {
    switch_model(state, auth, request_id, name, false).await
}

/// Lets a disabled model take tasks again (admins).
#[utoipa::path(post, path = "/api/v1/models/{name}/enable", tag = "tasks", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = CommandDone), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn enable_model(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(name): Path<String>,
) -> Result<Json<CommandDone>, ApiError> {
    switch_model(state, auth, request_id, name, true).await
}

/// Every registered model, enabled or not.
#[utoipa::path(get, path = "/api/v1/models", tag = "tasks", params(("after" = Option<u64>, Query)),
    responses((status = 200, body = [ModelDto])))]
pub async fn list_models(
    State(state): State<AppState>,
    after: After,
) -> Result<(HeaderMap, Json<Vec<ModelDto>>), ApiError> {
    let position = consistent(&state, after, &["tasks"]).await?;
    let models = state.tasks.models().await?;
    Ok((
        projection_headers(position),
        Json(models.into_iter().map(ModelDto::from).collect()),
    ))
}

/// One model.
#[utoipa::path(get, path = "/api/v1/models/{name}", tag = "tasks",
    params(("name" = String, Path), ("after" = Option<u64>, Query)),
    responses((status = 200, body = ModelDto), (status = 404, body = Problem)))]
pub async fn get_model(
    State(state): State<AppState>,
    after: After,
    Path(name): Path<String>,
) -> Result<(HeaderMap, Json<ModelDto>), ApiError> {
    let name = ModelName::parse(&name).map_err(|_| ApiError::not_found("no such model"))?;
    let position = consistent(&state, after, &["tasks"]).await?;
    let model = state
        .tasks
        .model(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("no such model"))?;
    Ok((projection_headers(position), Json(model.into())))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub model: String,
    /// Checked against the model's input schema.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Receives a signed POST when the task reaches a final state. Must resolve to public
    /// addresses unless the operator allows internal ones.
    pub webhook_url: Option<String>,
    /// -100 to 100, default 0; higher is claimed first.
    pub priority: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPublished {
    #[schema(value_type = String, format = Uuid)]
    pub task_id: TaskId,
    #[schema(value_type = String)]
    pub status: TaskState,
    pub position: Position,
}

/// How many schema violations an answer lists.
const VIOLATIONS_SHOWN: usize = 5;

/// Publishes a task to a model. The input is checked against the model's current schema (as
/// the model's own stream has it, not a possibly lagging read model).
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = NewTask, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "repeat-safe key")),
    responses((status = 201, body = TaskPublished), (status = 401, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn publish_task(
    State(state): State<AppState>,
    auth: Auth,
    idempotency: IdempotencyHeader,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<NewTask>,
) -> Result<(StatusCode, HeaderMap, Json<TaskPublished>), ApiError> {
    let name = model_name(&body.model)?;
    let services = state.settings.tasks.services();
    let size = body.input.to_string().len();
    if size > services.max_input_bytes {
        return Err(TaskError::InputTooLarge {
            max: services.max_input_bytes,
        }
        .to_api());
    }
    let loaded = state.handler.load_cached::<Model>(&name.stream()).await?;
    let model = loaded.state;
    let Some(spec) = model.spec.as_ref() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-model",
            "Unknown model",
            format!("model: no model is registered as {:?}", name.as_str()),
        ));
    };
    let validator = state
        .schemas
        .validator(&name, loaded.version, &spec.input_schema)
        .map_err(ApiError::internal)?;
    let violations: Vec<String> = validator
        .iter_errors(&body.input)
        .take(VIOLATIONS_SHOWN)
        .map(|e| {
            let path = e.instance_path().to_string();
            let at = if path.is_empty() { "/".into() } else { path };
            format!("{at}: {e}")
        })
        .collect();
    if !violations.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "schema-violation",
            "Input does not match the model's schema",
            format!("input: {}", violations.join("; ")),
        ));
    }
    let webhook_url = match body.webhook_url.as_deref() {
        None => None,
        Some(raw) => {
            let (url, _) = state.webhooks.check(raw.trim()).await.map_err(|refused| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "webhook-refused",
                    "Webhook URL refused",
                    refused.to_string(),
                )
            })?;
            Some(url.to_string())
        }
    };
    let task_id = TaskId::new(Uuid::now_v7());
    let command = TaskCommand::Publish {
        task_id,
        submitter: auth.actor.clone(),
        model: ModelRef {
            name,
            enabled: model.enabled,
        },
        input: body.input.clone(),
        webhook_url,
        priority: body.priority.unwrap_or(0),
    };
    let key = idempotency.scoped(
        &state.secret,
        &auth.actor.user_id.to_string(),
        "POST /tasks",
        &body,
    );
    let ctx = context(Some(&auth.actor), request_id.as_deref(), key);
    let outcome = state
        .handler
        .execute::<Task>(&task_id.stream(), &command, &services, &ctx)
        .await?;
    // A repeated request answers with the task it created the first time.
    let task_id = outcome
        .events
        .iter()
        .find_map(|r| match &r.event {
            TaskEvent::TaskPublished { task_id, .. } => Some(*task_id),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal("publishing produced no TaskPublished event"))?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/tasks/{task_id}")) {
        headers.insert(header::LOCATION, v);
    }
    let status = if outcome.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        headers,
        Json(TaskPublished {
            task_id,
            status: TaskState::Queued,
            position: outcome.position,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttemptDto {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub delivered: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDto {
    pub url: String,
    /// `pending` (owed since the final state), `delivered` or `abandoned`; absent before the
    /// task's final state.
    #[schema(value_type = Option<String>)]
    pub state: Option<WebhookState>,
    pub attempts: Vec<WebhookAttemptDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryDto {
    pub position: Position,
    /// The event's type, e.g. `TaskClaimed`.
    pub event: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDto {
    #[schema(value_type = String, format = Uuid)]
    pub task_id: TaskId,
    pub model: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    #[schema(value_type = String)]
    pub status: TaskState,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// The last attempt's error, or why the task failed.
    pub error: Option<String>,
    pub priority: i32,
    /// Claims so far, and how many it may use.
    pub attempts: u32,
    pub max_attempts: u32,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub worker_id: Option<WorkerId>,
    pub lease_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub webhook: Option<WebhookDto>,
    /// Every event of the task, oldest first (only in `GET /tasks/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryDto>>,
}

impl TaskDto {
    pub(crate) fn new(v: TaskView, history: Option<Vec<HistoryLine>>) -> Self {
        let attempts = history
            .iter()
            .flatten()
            .filter(|h| h.event == "WebhookAttempted")
            .map(|h| WebhookAttemptDto {
                attempt: u32::try_from(h.detail["attempt"].as_u64().unwrap_or(0))
                    .unwrap_or(u32::MAX),
                at: h.at,
                status: h.detail["status"]
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok()),
                error: h.detail["error"].as_str().map(str::to_owned),
                delivered: h.detail["delivered"].as_bool().unwrap_or(false),
            })
            .collect();
        Self {
            task_id: v.task_id,
            model: v.model.as_str().to_owned(),
            status: v.status,
            input: v.input,
            result: v.result,
            error: v.error,
            priority: v.priority,
            attempts: v.attempts,
            max_attempts: v.max_attempts,
            worker_id: v.worker_id,
            lease_until: v.lease_until,
            created_at: v.created_at,
            started_at: v.started_at,
            finished_at: v.finished_at,
            webhook: v.webhook_url.map(|url| WebhookDto {
                url,
                state: v.webhook_state,
                attempts,
            }),
            history: history.map(|lines| {
                lines
                    .into_iter()
                    .map(|h| HistoryDto {
                        position: h.position,
                        event: h.event,
                        detail: h.detail,
                        at: h.at,
                    })
                    .collect()
            }),
        }
    }
}

pub(crate) fn parse_task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).map_err(|_| ApiError::not_found("no such task"))
}

/// One of your tasks (admins see every task), with its history and webhook attempts.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("after" = Option<u64>, Query)),
    responses((status = 200, body = TaskDto), (status = 404, body = Problem)))]
pub async fn get_task(
    State(state): State<AppState>,
    after: After,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(HeaderMap, Json<TaskDto>), ApiError> {
    let id = parse_task_id(&id)?;
    let position = consistent(&state, after, &["tasks"]).await?;
    let task = state
        .tasks
        .task(id)
        .await?
        .filter(|t| t.submitter_id == auth.actor.user_id || auth.actor.is_admin)
        .ok_or_else(|| ApiError::not_found("no such task"))?;
    let history = state.tasks.task_history(id).await?;
    Ok((
        projection_headers(position),
        Json(TaskDto::new(task, Some(history))),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Your tasks, newest first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = TaskPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    after: After,
    auth: Auth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<(HeaderMap, Json<TaskPage>), ApiError> {
    let cursors = Cursors::new(&state.secret, List::Tasks(auth.actor.user_id));
    let page = page(&params, &cursors)?;
    let position = consistent(&state, after, &["tasks"]).await?;
    let views = state.tasks.tasks_of(auth.actor.user_id, page).await?;
    let positions: Vec<Position> = views.iter().map(|v| v.position).collect();
    let next_cursor = next_cursor(&positions, page.limit, &cursors);
    let items = views.into_iter().map(|v| TaskDto::new(v, None)).collect();
    Ok((
        projection_headers(position),
        Json(TaskPage { items, next_cursor }),
    ))
}

/// Cancels one of your tasks while it is still queued.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = CommandDone), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel_task(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = parse_task_id(&id)?;
    let ctx = context(Some(&auth.actor), request_id.as_deref(), None);
    let command = TaskCommand::Cancel {
        actor: auth.actor.clone(),
    };
    let outcome = state
        .handler
        .execute::<Task>(
            &id.stream(),
            &command,
            &state.settings.tasks.services(),
            &ctx,
        )
        .await?;
    Ok(Json(CommandDone {
        position: outcome.position,
    }))
}
