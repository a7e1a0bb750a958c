//! The HTTP API under `/api/v1` (ARCHITECTURE.md §7).

pub mod auth;
pub mod inbox;
pub mod me;
pub mod moderation;
pub mod ops;
pub mod posts;
pub mod search;
pub mod sessions;
pub mod stats;
pub mod tasks;
pub mod web;
pub mod workers;

use axum::Router;
use axum::http::{HeaderName, StatusCode};
use axum::routing::{delete, get, post, put};
use chrono::Utc;
use commands::CommandContext;
use domain::values::Actor;
use domain::{Metadata, Position};
use tower_http::request_id::RequestId;

use crate::http::error::ApiError;
use crate::http::extract::After;
use crate::http::state::AppState;

/// Every route of the API, each at its full path under `/api/v1` (one flat router: no nested
/// router to strip a prefix and clone a boxed service on every request).
pub fn api() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/codes", post(auth::request_code))
        .route("/api/v1/users", post(auth::register))
        .route("/api/v1/sessions", post(auth::login))
        .route("/api/v1/sessions/current", delete(auth::logout))
        .route("/api/v1/me", get(auth::me).delete(me::unregister))
        .route("/api/v1/me/export", get(me::export))
        .route("/api/v1/me/sessions", get(sessions::list))
        .route("/api/v1/me/sessions/{id}", delete(sessions::end))
        .route("/api/v1/me/following", get(inbox::following))
        .route("/api/v1/me/favourites", get(inbox::favourites))
        .route(
            "/api/v1/me/favourites/{post_id}",
            put(inbox::favourite).delete(inbox::unfavourite),
        )
        .route("/api/v1/me/notifications", get(inbox::notifications))
        .route("/api/v1/me/notifications/read", post(inbox::mark_read))
        .route("/api/v1/me/notifications/stream", get(inbox::stream))
        .route("/api/v1/posts/{id}/follow", put(inbox::follow_post))
        .route(
            "/api/v1/posts",
            post(posts::create_post).get(posts::list_posts),
        )
        .route(
            "/api/v1/posts/{id}",
            get(posts::get_post).delete(posts::delete_post),
        )
        .route(
            "/api/v1/posts/{id}/comments",
            post(posts::add_comment).get(posts::list_comments),
        )
        .route(
            "/api/v1/posts/{id}/comments/{comment_id}",
            delete(posts::delete_comment),
        )
        .route("/api/v1/posts/hot", get(posts::hot_posts))
        .route("/api/v1/posts/{id}/reaction", put(posts::react_to_post))
        .route("/api/v1/posts/{id}/poll/votes", post(posts::vote))
        .route(
            "/api/v1/posts/{id}/comments/{comment_id}/reaction",
            put(posts::react_to_comment_of_post),
        )
        .route(
            "/api/v1/comments/{id}/reaction",
            put(posts::react_to_comment),
        )
        .route("/api/v1/search", get(search::search))
        .route("/api/v1/posts/{id}/reports", post(moderation::report_post))
        .route(
            "/api/v1/comments/{id}/reports",
            post(moderation::report_comment),
        )
        .route(
            "/api/v1/moderation/posts/{id}/acts",
            post(moderation::act_on_post),
        )
        .route(
            "/api/v1/moderation/comments/{id}/acts",
            post(moderation::act_on_comment),
        )
        .route("/api/v1/moderation/log", get(moderation::log))
        .route("/api/v1/moderation/queue", get(moderation::queue))
        .route("/api/v1/moderation/appeals", get(moderation::appeals))
        .route(
            "/api/v1/moderation/sanctions/{id}/decision",
            post(moderation::decide),
        )
        .route("/api/v1/me/sanctions", get(moderation::my_sanctions))
        .route("/api/v1/me/sanctions/{id}/appeal", post(moderation::appeal))
        .route(
            "/api/v1/admin/users/{id}/moderator",
            put(moderation::set_moderator),
        )
        .route(
            "/api/v1/models",
            post(tasks::register_model).get(tasks::list_models),
        )
        .route(
            "/api/v1/models/{name}",
            get(tasks::get_model).put(tasks::update_model),
        )
        .route("/api/v1/models/{name}/disable", post(tasks::disable_model))
        .route("/api/v1/models/{name}/enable", post(tasks::enable_model))
        .route(
            "/api/v1/tasks",
            post(tasks::publish_task).get(tasks::list_tasks),
        )
        .route("/api/v1/tasks/{id}", get(tasks::get_task))
        .route("/api/v1/tasks/{id}/cancel", post(tasks::cancel_task))
        .route(
            "/api/v1/workers",
            post(workers::register_worker).get(workers::list_workers),
        )
        .route("/api/v1/workers/{id}", delete(workers::revoke_worker))
        .route("/api/v1/workers/claim", post(workers::claim))
        .route(
            "/api/v1/workers/tasks/{id}/heartbeat",
            post(workers::heartbeat),
        )
        .route(
            "/api/v1/workers/tasks/{id}/complete",
            post(workers::complete),
        )
        .route("/api/v1/workers/tasks/{id}/fail", post(workers::fail))
        .route("/api/v1/stats/overview", get(stats::overview))
        .route("/api/v1/stats/daily", get(stats::daily))
        .route("/api/v1/healthz", get(ops::healthz))
        .route("/api/v1/readyz", get(ops::readyz))
        .route("/api/v1/admin/projections", get(ops::projections))
        .route("/api/v1/admin/events", get(ops::events))
        .route(
            "/api/v1/admin/projections/{name}/rebuild",
            post(ops::rebuild),
        )
        .route("/api/v1/metrics", get(crate::http::metrics::render))
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
