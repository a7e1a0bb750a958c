//! The caller's own data: unregistering (`DELETE /me`) and "my data" (`GET /me/export`).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDate, Utc};
use commands::unregister::{self, Unregistration};
use domain::model::ModelEvent;
use domain::post::{Author, PostEvent};
use domain::user::User;
use domain::values::{Password, VerificationCode};
use domain::{AuthorToken, CommentId, DomainEvent, Position, PostId, SessionId, UserId};
use projections::ports::Page;
use serde::{Deserialize, Serialize};
use tower_http::request_id::RequestId;
use utoipa::ToSchema;

use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, Auth, ClientIp, projection_headers};
use crate::http::routes::auth::CommandDone;
use crate::http::routes::context;
use crate::http::routes::tasks::TaskDto;
use crate::http::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnregisterRequest {
    pub password: String,
    /// A code from `POST /auth/codes` for the account's e-mail address (valid 5 minutes).
    #[schema(example = "042517")]
    pub code: String,
}

/// Unregisters the account and destroys its data key. Every session ends; the e-mail address
/// and the username are released (anyone may register them again, as a new account). Named
/// posts and comments stay and show `已注销用户`; anonymous ones keep their pseudonyms. Nobody
/// can recover the e-mail address, the username or the authorship of the anonymous content
/// afterwards, the operators included.
#[utoipa::path(delete, path = "/api/v1/me", tag = "auth", request_body = UnregisterRequest,
    security(("bearer" = [])),
    responses((status = 200, body = CommandDone), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn unregister(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<UnregisterRequest>,
) -> Result<Json<CommandDone>, ApiError> {
    // Password guesses count like login attempts.
    state.limits.check(
        &state.limits.logins_per_ip,
        &ip,
        "login attempts from this address",
    )?;
    let request = Unregistration {
        password: Password::parse(&body.password).map_err(|_| wrong_password())?,
        code: VerificationCode::parse(&body.code)?,
    };
    let ctx = context(Some(&auth.actor), request_id.as_deref(), None);
    let position = unregister::unregister(
        &state.handler,
        &state.passwords,
        &state.secret,
        &state.keys,
        auth.actor.user_id,
        request,
        &ctx,
    )
    .await?;
    // The sessions go with the users projection's next batch: wait for it, so that the token
    // is refused from the very next request.
    let visible = state
        .hub
        .wait_for(&["users"], position, state.consistency_timeout());
    if let Err(e) = visible.await {
        tracing::warn!(error = %e, "unregistering answered before the users projection caught up");
    }
    Ok(Json(CommandDone { position }))
}

fn wrong_password() -> ApiError {
    unregister::UnregisterError::WrongPassword.into()
}

/// Everything treehole holds about the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyData {
    pub profile: Profile,
    pub sessions: Vec<MySession>,
    /// Posts and comments, anonymous ones included (marked), deleted ones included (marked).
    pub posts: Vec<MyPost>,
    pub comments: Vec<MyComment>,
    pub tasks: Vec<TaskDto>,
    /// Models you registered (admins).
    pub models: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    pub username: String,
    pub email: String,
    pub is_admin: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MySession {
    #[schema(value_type = String, format = Uuid)]
    pub session_id: SessionId,
    pub expires_at: DateTime<Utc>,
    pub device: Option<String>,
    pub created_at: DateTime<Utc>,
    #[schema(value_type = String, format = Date)]
    pub last_seen: NaiveDate,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyPost {
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    pub anonymous: bool,
    /// The name the post shows: your username, or the host name.
    pub shown_as: String,
    pub title: Option<String>,
    pub body: String,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub deleted: bool,
    pub position: Position,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyComment {
    #[schema(value_type = String, format = Uuid)]
    pub comment_id: CommentId,
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    pub anonymous: bool,
    /// The name the comment shows: your username, your pseudonym or the host name.
    pub shown_as: String,
    pub body: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub reply_to: Option<CommentId>,
    pub created_at: DateTime<Utc>,
    pub deleted: bool,
    pub position: Position,
}

/// "My data": your profile, sessions, posts and comments (anonymous ones included), tasks and
/// models, as JSON. Posts and comments are read from the log itself, so deleted ones are
/// listed too; the rest from the read models.
#[utoipa::path(get, path = "/api/v1/me/export", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MyData), (status = 401, body = Problem)))]
pub async fn export(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<(HeaderMap, Json<MyData>), ApiError> {
    let me = auth.actor.user_id;
    let store = state.handler.store();
    let user = state.handler.load::<User>(&me.stream()).await?.state;
    let profile = Profile {
        user_id: me,
        username: user.username,
        email: user.email,
        is_admin: user.is_admin,
    };
    let sessions = state
        .queries
        .sessions_of(me)
        .await?
        .into_iter()
        .map(|s| MySession {
            session_id: s.session_id,
            expires_at: s.expires_at,
            device: s.device,
            created_at: s.created_at,
            last_seen: s.last_seen,
        })
        .collect();

    let mut posts = Vec::new();
    let mut comments = Vec::new();
    for post_id in state.keys.posts_of(me).await? {
        let token = state.keys.author_token(me, post_id).await?;
        let mine = |author: &Author| match author {
            Author::Named { user_id, .. } => *user_id == me,
            Author::Anonymous { token: t, .. } => *t == token || *t == AuthorToken::legacy(me),
        };
        for envelope in store.read_stream(&post_id.stream(), 1).await? {
            let event = PostEvent::decode(&envelope.event_type, envelope.schema, &envelope.data)?;
            match event {
                PostEvent::PostPublished {
                    author,
                    anonymous,
                    title,
                    body,
                    tags,
                    ..
                } if mine(&author) => posts.push(MyPost {
                    post_id,
                    anonymous,
                    shown_as: author.display_name().unwrap_or_default().to_owned(),
                    title,
                    body,
                    tags,
                    created_at: envelope.occurred_at,
                    deleted: false,
                    position: envelope.position,
                }),
                PostEvent::CommentAdded {
                    comment_id,
                    author,
                    anonymous,
                    body,
                    reply_to,
                    ..
                } if mine(&author) => comments.push(MyComment {
                    comment_id,
                    post_id,
                    anonymous,
                    shown_as: author.display_name().unwrap_or_default().to_owned(),
                    body,
                    reply_to,
                    created_at: envelope.occurred_at,
                    deleted: false,
                    position: envelope.position,
                }),
                PostEvent::PostDeleted { .. } => {
                    for p in posts.iter_mut().filter(|p| p.post_id == post_id) {
                        p.deleted = true;
                    }
                    for c in comments.iter_mut().filter(|c| c.post_id == post_id) {
                        c.deleted = true;
                    }
                }
                PostEvent::CommentDeleted { comment_id, .. } => {
                    for c in comments.iter_mut().filter(|c| c.comment_id == comment_id) {
                        c.deleted = true;
                    }
                }
                _ => {}
            }
        }
    }
    posts.sort_by_key(|p| p.position);
    comments.sort_by_key(|c| c.position);

    let mut tasks = Vec::new();
    let mut cursor = None;
    loop {
        let page = Page { cursor, limit: 100 };
        let views = state.tasks.tasks_of(me, page).await?;
        let done = views.len() < page.limit;
        cursor = views.last().map(|v| v.position);
        tasks.extend(views.into_iter().map(|v| TaskDto::new(v, None)));
        if done {
            break;
        }
    }
    let mut models = Vec::new();
    for model in state.tasks.models().await? {
        let events = store.read_stream(&model.name.stream(), 1).await?;
        let registered = events.iter().any(|e| {
            matches!(
                ModelEvent::decode(&e.event_type, e.schema, &e.data),
                Ok(ModelEvent::ModelRegistered { by, .. }) if by == me
            )
        });
        if registered {
            models.push(model.name.as_str().to_owned());
        }
    }
    let position = store.head().await?;
    Ok((
        projection_headers(position),
        Json(MyData {
            profile,
            sessions,
            posts,
            comments,
            tasks,
            models,
        }),
    ))
}
