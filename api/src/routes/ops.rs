//! Operations: liveness, readiness and projection status.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use projections::{ProjectionState, ProjectionStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::extract::Auth;
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

/// The event store answers and no projection has failed.
#[utoipa::path(get, path = "/api/v1/readyz", tag = "ops", responses((status = 200, body = Health), (status = 503, body = Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.handler.store().head().await?;
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
    Ok(Json(Health { status: "ready" }))
}

#[derive(Serialize, ToSchema)]
pub struct ProjectionsDto {
    pub head: u64,
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
        projections: state.hub.statuses(),
    }))
}
