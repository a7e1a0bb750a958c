//! The HTTP API under `/api/v1` (ARCHITECTURE.md §7).

pub mod auth;
pub mod me;
pub mod ops;
pub mod posts;
pub mod search;
pub mod stats;
pub mod tasks;
pub mod workers;

use axum::Router;
use axum::http::{HeaderName, StatusCode};
use axum::routing::{delete, get, post};
use chrono::Utc;
use commands::CommandContext;
use domain::values::Actor;
use domain::{Metadata, Position};
use tower_http::request_id::RequestId;

use crate::error::ApiError;
use crate::extract::After;
use crate::state::AppState;

pub fn api() -> Router<AppState> {
    Router::new()
        .route("/auth/codes", post(auth::request_code))
        .route("/users", post(auth::register))
        .route("/sessions", post(auth::login))
        .route("/sessions/current", delete(auth::logout))
        .route("/me", get(auth::me).delete(me::unregister))
        .route("/me/export", get(me::export))
        .route("/posts", post(posts::create_post).get(posts::list_posts))
        .route(
            "/posts/{id}",
            get(posts::get_post).delete(posts::delete_post),
        )
        .route(
            "/posts/{id}/comments",
            post(posts::add_comment).get(posts::list_comments),
        )
        .route(
            "/posts/{id}/comments/{comment_id}",
            delete(posts::delete_comment),
        )
        .route("/search", get(search::search))
        .route(
            "/models",
            post(tasks::register_model).get(tasks::list_models),
        )
        .route(
            "/models/{name}",
            get(tasks::get_model).put(tasks::update_model),
        )
        .route("/models/{name}/disable", post(tasks::disable_model))
        .route("/models/{name}/enable", post(tasks::enable_model))
        .route("/tasks", post(tasks::publish_task).get(tasks::list_tasks))
        .route("/tasks/{id}", get(tasks::get_task))
        .route("/tasks/{id}/cancel", post(tasks::cancel_task))
        .route(
            "/workers",
            post(workers::register_worker).get(workers::list_workers),
        )
        .route("/workers/{id}", delete(workers::revoke_worker))
        .route("/workers/claim", post(workers::claim))
        .route("/workers/tasks/{id}/heartbeat", post(workers::heartbeat))
        .route("/workers/tasks/{id}/complete", post(workers::complete))
        .route("/workers/tasks/{id}/fail", post(workers::fail))
        .route("/stats/overview", get(stats::overview))
        .route("/stats/daily", get(stats::daily))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/admin/projections", get(ops::projections))
        .route("/admin/projections/{name}/rebuild", post(ops::rebuild))
        .route("/metrics", get(crate::metrics::render))
}

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The context of a command: now, who, in answer to which request, and its idempotency key.
pub fn context(
    actor: Option<&Actor>,
    request_id: Option<&RequestId>,
    idempotency: Option<commands::IdempotencyKey>,
) -> CommandContext {
    let request_id = request_id
        .and_then(|r| r.header_value().to_str().ok())
        .map(str::to_owned);
    CommandContext {
        at: Utc::now(),
        metadata: Metadata {
            correlation_id: request_id.clone(),
            causation_id: request_id,
            actor: actor.map(|a| a.user_id.to_string()),
        },
        idempotency,
    }
}

/// Waits until the named projections have applied `after` (if given) and returns the position
/// they have reached, for `X-Projection-Position`.
pub async fn consistent(
    state: &AppState,
    after: After,
    names: &[&str],
) -> Result<Position, ApiError> {
    if let After(Some(wanted)) = after {
        let head = state.handler.store().head().await?;
        if wanted > head {
            return Err(ApiError::bad_request(format!(
                "after: position {wanted} has not been written (the log ends at {head})"
            )));
        }
        state
            .hub
            .wait_for(names, wanted, state.consistency_timeout())
            .await?;
    }
    Ok(state.hub.position(names))
}

/// A page size from `?limit=`: default 20, 1 to `max`.
pub fn page_limit(limit: Option<u32>, max: u32) -> Result<usize, ApiError> {
    match limit {
        None => Ok(20),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit: must be between 1 and {max}"
        ))),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /api/v1/docs")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this endpoint does not accept that method",
    )
}
