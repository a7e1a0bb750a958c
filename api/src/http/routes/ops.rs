//! Operations: liveness, readiness and projection status.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use projections::{ProjectionState, ProjectionStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::background::projector::RebuildRefused;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::ApiQuery;
use crate::http::extract::Auth;
use crate::http::state::AppState;

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
    if let Some(stopped) = state.loops.stopped().into_iter().next() {
        return Err(ApiError::unavailable(format!(
            "the background loop {} has stopped: {}",
            stopped.name, stopped.reason
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

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Events after this position (default 0). Not `after`, which on every query means "wait
    /// until the read models have this position".
    pub start_after: Option<u64>,
    /// Events up to this position.
    pub until: Option<u64>,
    /// 1 to 100 (default 50).
    pub limit: Option<u32>,
    /// Only this stream, as the pseudonymised log names it.
    pub stream: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Only events of this correlation id: the events of one request.
    pub correlation: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    /// Pseudonymised as `treehole events export` writes them (ARCHITECTURE.md §2, §6).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<domain::Envelope>,
    /// Where the next page starts (`?start_after=`): the last position looked at, which may be
    /// past the last item when a filter left events out; `null` at the head.
    pub next_start_after: Option<u64>,
    pub head: u64,
}

/// Events the page looks at, at most, to fill one page of a filtered view.
const EVENT_SCAN: usize = 2_000;

/// The event log as analysts see it, pseudonymised, oldest first (admins only).
#[utoipa::path(get, path = "/api/v1/admin/events", tag = "ops", security(("bearer" = [])),
    params(EventParams),
    responses((status = 200, body = EventPage), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn events(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<EventParams>,
) -> Result<Json<EventPage>, ApiError> {
    if !auth.actor.is_admin {
        return Err(ApiError::forbidden("admins only"));
    }
    let limit = crate::http::routes::page_limit(params.limit, 100)?;
    for (name, value) in [("start_after", params.start_after), ("until", params.until)] {
        if value.is_some_and(|v| i64::try_from(v).is_err()) {
            return Err(ApiError::bad_request(format!(
                "{name}: a position is at most 9223372036854775807"
            )));
        }
    }
    let limit = if params.limit.is_none() { 50 } else { limit };
    let store = state.handler.store();
    let head = store.head().await?;
    let end = params.until.map_or(head, |u| u.min(head));
    let mut after = params.start_after.unwrap_or(0);
    let mut items = Vec::new();
    let mut looked = 0;
    while after < end && items.len() < limit && looked < EVENT_SCAN {
        let page = store.read_all(after, 500).await?;
        let Some(last) = page.last() else { break };
        for envelope in page.iter().filter(|e| e.position <= end) {
            after = envelope.position;
            looked += 1;
            let Ok(out) = state.pseudonymiser.envelope(envelope) else {
                continue;
            };
            let admits = params
                .stream
                .as_ref()
                .is_none_or(|s| out.stream.as_str() == s)
                && params
                    .event_type
                    .as_ref()
                    .is_none_or(|t| &out.event_type == t)
                && params
                    .correlation
                    .as_ref()
                    .is_none_or(|c| out.metadata.correlation_id.as_ref() == Some(c));
            if admits {
                items.push(out);
                if items.len() == limit {
                    break;
                }
            }
        }
        if last.position >= end {
            break;
        }
    }
    Ok(Json(EventPage {
        items,
        next_start_after: (after < end).then_some(after),
        head,
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
