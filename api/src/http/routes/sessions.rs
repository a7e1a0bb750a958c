//! The caller's sessions, one per device: `GET /me/sessions` lists the live ones and
//! `DELETE /me/sessions/{id}` ends one. A session of someone else is never shown, and ending
//! one is answered exactly like ending a session that does not exist.

use async_trait::async_trait;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDate, Utc};
use commands::sessions::{self, EarlierSessions};
use commands::{CommandError, StoreError};
use domain::{SessionId, UserId};
use projections::{ForumQueries, ReadModelError};
use serde::Serialize;
use tower_http::request_id::RequestId;
use utoipa::ToSchema;

use crate::http::error::{ApiError, Problem};
use crate::http::extract::{After, Auth, projection_headers};
use crate::http::routes::auth::CommandDone;
use crate::http::routes::posts::parse_id;
use crate::http::routes::{consistent, context};
use crate::http::state::AppState;

/// The caller's live sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// Newest first; at most `sessions.max_per_user` of them (more only for an account whose
    /// sessions all date from before the cap and that has not logged in since).
    pub sessions: Vec<DeviceSession>,
}

/// One live session: a device the caller is logged in on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceSession {
    #[schema(value_type = String, format = Uuid)]
    pub session_id: SessionId,
    /// The label given at login, if any.
    pub device: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The last day (UTC) the session was used: today for the asking session, else as
    /// recorded, which may be up to `sessions.seen_flush_secs` behind.
    #[schema(value_type = String, format = Date)]
    pub last_seen: NaiveDate,
    pub expires_at: DateTime<Utc>,
    /// Whether this is the session of the token that asks.
    pub current: bool,
}

/// Your live sessions (not ended, not expired), newest first, with the one you ask from marked
/// `current`.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "auth", security(("bearer" = [])),
    params(("after" = Option<u64>, Query, description = "Answer once the sessions reflect this position")),
    responses((status = 200, body = SessionList), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    after: After,
    auth: Auth,
) -> Result<(HeaderMap, Json<SessionList>), ApiError> {
    let position = consistent(&state, after, &[projections::users::NAME]).await?;
    let now = Utc::now();
    let today = now.date_naive();
    let sessions = state
        .queries
        .sessions_of(auth.actor.user_id)
        .await?
        .into_iter()
        .filter(|s| s.expires_at > now)
        .map(|s| {
            let current = s.session_id == auth.session_id;
            DeviceSession {
                current,
                session_id: s.session_id,
                device: s.device,
                created_at: s.created_at,
                // This request sees it now; the record of that follows with the next flush.
                last_seen: if current { today } else { s.last_seen },
                expires_at: s.expires_at,
            }
        })
        .collect();
    Ok((projection_headers(position), Json(SessionList { sessions })))
}

/// Ends one of your live sessions, this one included: its token is refused from the next
/// request on. A session that is not one of your live ones (unknown, someone else's, ended,
/// expired, or an id that is not a canonical UUID) is 404, all alike. The answer's position,
/// as every write's, is what `?after=` takes to read the list without the ended session.
#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = CommandDone), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn end(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
) -> Result<Json<CommandDone>, ApiError> {
    let session_id = SessionId::new(parse_id(&id, "session")?);
    let ctx = context(Some(&auth.actor), request_id.as_deref(), None);
    let position = sessions::end(&state.handler, session_id, auth.actor.user_id, &ctx)
        .await
        .map_err(|e| match e {
            CommandError::Rejected(_) => ApiError::not_found("no such session"),
            other => other.into(),
        })?;
    // The ended token must be refused by the very next request, which this process answers
    // from its users projection (`session_cache`): wait until that has applied the end.
    let visible = state.hub.wait_for(
        &[projections::users::NAME],
        position,
        state.consistency_timeout(),
    );
    if let Err(e) = visible.await {
        tracing::warn!(error = %e, "a session end answered before the users projection caught up");
    }
    Ok(Json(CommandDone { position }))
}

/// A login's way to the sessions a user opened before user streams recorded them: the users
/// read model's rows of the user (each one's own stream then decides whether it is live).
pub struct ListedSessions<'a>(pub &'a dyn ForumQueries);

#[async_trait]
impl EarlierSessions for ListedSessions<'_> {
    async fn session_ids_of(&self, user: UserId) -> Result<Vec<SessionId>, StoreError> {
        let listed = self.0.sessions_of(user).await.map_err(|e| match e {
            ReadModelError::Unavailable(m) | ReadModelError::Transient(m) => {
                StoreError::Unavailable(m)
            }
            other => StoreError::Backend(other.to_string()),
        })?;
        Ok(listed.into_iter().map(|s| s.session_id).collect())
    }
}
