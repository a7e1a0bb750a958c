//! Operations: liveness, readiness and projection status.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use projections::{ProjectionState, ProjectionStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::extract::Auth;
use crate::projector::RebuildRefused;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/api/v1/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The event store and the search engine answer, and no projection has failed.
#[utoipa::path(get, path = "/api/v1/readyz", tag = "ops", responses((status = 200, body = Health), (status = 503, body = Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.handler.store().head().await?;
    // Reading the live checkpoint is the cheapest request that needs the engine (Meilisearch is
    // a server of its own that can go away while this process runs).
    if let Err(e) = state.search.live(projections::search::NAME).await {
        return Err(ApiError::unavailable(format!(
            "the search engine is not available: {e}"
        )));
    }
    if let Some(failed) = state
        .hub
        .statuses()
        .into_iter()
        .find(|s| s.state == ProjectionState::Failed)
    {
        return Err(ApiError::unavailable(format!(
            "projection {} has failed",
            failed.name
        )));
    }
    if let Some(relay) = &state.relay {
        let status = relay.borrow().clone();
        if let Some(since) = status.failing_since
            && chrono::Utc::now() - since > chrono::TimeDelta::seconds(RELAY_GRACE_SECONDS)
        {
            return Err(ApiError::unavailable(format!(
                "the Kafka relay has been failing since {since}: {}",
                status.last_error.unwrap_or_default()
            )));
        }
    }
    Ok(Json(Health { status: "ready" }))
}

/// How long the relay may fail (e.g. a broker restart) before the instance reports not ready.
const RELAY_GRACE_SECONDS: i64 = 5;

#[derive(Serialize, ToSchema)]
pub struct ProjectionsDto {
    pub head: u64,
    /// The in-process Kafka relay, if this instance runs one.
    #[schema(value_type = Option<Object>)]
    pub relay: Option<infra::kafka::RelayStatus>,
    #[schema(value_type = Vec<Object>)]
    pub projections: Vec<ProjectionStatus>,
}

/// Every projection's version, position, lag, rate, state and last error (admins only).
#[utoipa::path(get, path = "/api/v1/admin/projections", tag = "ops", security(("bearer" = [])),
    responses((status = 200, body = ProjectionsDto), (status = 403, body = Problem)))]
pub async fn projections(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<ProjectionsDto>, ApiError> {
    if !auth.actor.is_admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "admins only",
        ));
    }
    let head = state.handler.store().head().await?;
    Ok(Json(ProjectionsDto {
        head,
        relay: state.relay.as_ref().map(|r| r.borrow().clone()),
        projections: state.hub.statuses(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct RebuildStarted {
    pub projection: String,
    /// Follow the rebuild in `GET /api/v1/admin/projections` (state `rebuilding`).
    pub status: &'static str,
}

/// Rebuilds a projection beside the live one and swaps atomically (admins only). Queries keep
/// answering from the live model until the swap.
#[utoipa::path(post, path = "/api/v1/admin/projections/{name}/rebuild", tag = "ops", security(("bearer" = [])),
    params(("name" = String, Path, description = "users, feed or comments")),
    responses((status = 202, body = RebuildStarted), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn rebuild(
    State(state): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<RebuildStarted>), ApiError> {
    if !auth.actor.is_admin {
        return Err(ApiError::forbidden("admins only"));
    }
    match state.projectors.spawn_rebuild(&name) {
        Ok(_) => Ok((
            StatusCode::ACCEPTED,
            Json(RebuildStarted {
                projection: name,
                status: "rebuilding",
            }),
        )),
        Err(e @ RebuildRefused::Unknown(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ RebuildRefused::AlreadyRunning(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "Conflict",
            e.to_string(),
        )),
    }
}
