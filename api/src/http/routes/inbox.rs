//! Follows and the notification inbox: `PUT /posts/{id}/follow`, `GET /me/following`,
//! `GET /me/notifications`, `POST /me/notifications/read` and the live stream
//! `GET /me/notifications/stream` (Server-Sent Events).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::post::{PostCommand, PostEvent};
use domain::user::{User, UserCommand};
use domain::{CommentId, Personal, Position, PostId};
use projections::inbox::{self, NotificationView};
use projections::users;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tower_http::request_id::RequestId;
use utoipa::{IntoParams, ToSchema};

use crate::http::cursor::{Cursors, List};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{After, ApiJson, ApiQuery, Auth, projection_headers};
use crate::http::routes::posts::{ListParams, next_cursor, page, parse_id, run_on_post};
use crate::http::routes::{consistent, context};
use crate::http::state::AppState;

/// The heartbeat comment's interval on a notification stream.
pub const HEARTBEAT: Duration = Duration::from_secs(25);
/// How often an open stream checks that its session still stands, beside each move of the
/// users projection.
const SESSION_CHECK: Duration = Duration::from_secs(1);
/// Notifications a resuming stream reads per query.
const REPLAY_PAGE: usize = 500;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFollow {
    /// `true` to follow the post, `false` to stop (also when following came from posting or
    /// commenting).
    pub following: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FollowDone {
    pub following: bool,
    /// How many users chose to follow the post, after this.
    pub followers: u64,
    /// The position of the follow's event; 0 when the choice was already made (nothing was
    /// recorded).
    pub position: Position,
}

/// Follows a post, or stops following it. Authors follow their posts, and commenters the
/// posts they comment on, without asking; this overrides that, either way, for good.
#[utoipa::path(put, path = "/api/v1/posts/{id}/follow", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = NewFollow,
    responses((status = 200, body = FollowDone), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn follow_post(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewFollow>,
) -> Result<Json<FollowDone>, ApiError> {
    let post_id = PostId::new(parse_id(&id, "post")?);
    state.limits.check(
        &state.limits.follows_per_user,
        &auth.actor.user_id,
        "follows",
    )?;
    let handle = state
        .keys
        .follow_handle(auth.actor.user_id, post_id)
        .await?;
    let command = PostCommand::Follow {
        follower: Personal::new(handle, auth.actor.user_id),
        following: body.following,
    };
    // Unnamed: the log records the follower sealed under their handle for this post only.
    let outcome = run_on_post(
        &state,
        &auth,
        request_id.as_deref(),
        post_id,
        &command,
        None,
        false,
    )
    .await?;
    let set = outcome.events.iter().find_map(|r| match &r.event {
        PostEvent::FollowSet { followers, .. } => Some(*followers),
        _ => None,
    });
    let (followers, position) = match set {
        Some(n) => (n, outcome.position),
        None => {
            let loaded = state
                .handler
                .load_cached::<domain::post::Post>(&post_id.stream())
                .await?;
            (loaded.state.followers(), 0)
        }
    };
    Ok(Json(FollowDone {
        following: body.following,
        followers,
        position,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FollowDto {
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    /// Whether the caller chose to follow (rather than by posting or commenting).
    pub explicit: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FollowPage {
    pub items: Vec<FollowDto>,
    pub next_cursor: Option<String>,
}

/// The posts the caller follows, most recently followed first.
#[utoipa::path(get, path = "/api/v1/me/following", tag = "inbox", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = FollowPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn following(
    State(state): State<AppState>,
    auth: Auth,
    after: After,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let cursors = Cursors::new(&state.secret, List::Following(auth.actor.user_id));
    let page = page(&params, &cursors)?;
    let position = consistent(&state, after, &[inbox::NAME]).await?;
    let rows = state.queries.following(auth.actor.user_id, page).await?;
    let positions: Vec<Position> = rows.iter().map(|r| r.position).collect();
    let answer = FollowPage {
        items: rows
            .into_iter()
            .map(|r| FollowDto {
                post_id: r.post_id,
                explicit: r.explicit,
            })
            .collect(),
        next_cursor: next_cursor(&positions, page.limit, &cursors),
    };
    Ok((projection_headers(position), Json(answer)).into_response())
}

/// One notification. It names the commenter as their comment does (pseudonym or public
/// name), never by id.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationDto {
    /// The inbox sequence number: the SSE event id, and what `POST /me/notifications/read`
    /// takes.
    pub seq: Position,
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    /// The comment; `null` for a moderation notice about a post.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub comment_id: Option<CommentId>,
    /// The commenter's pseudonym or public name (empty for a notice).
    pub name: String,
    /// The start of the comment, 80 characters at most (empty for a notice).
    pub excerpt: String,
    /// `reply` (the comment answers yours), `followed` (you follow the post), or both; or
    /// `moderation` for a notice.
    pub reasons: Vec<String>,
    /// What moderation did to your post or comment, or to you for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<NoticeDto>,
    pub read: bool,
    pub created_at: DateTime<Utc>,
}

/// A moderation notice: only the item's author is told, and nobody is told who they are.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeDto {
    /// `folded`, `unfolded`, `removed`, `restored` or `sanctioned`.
    pub act: String,
    pub reason: String,
    /// When a sanction ends; `null` for a permanent one (and for the other acts).
    pub ends_at: Option<DateTime<Utc>>,
}

impl NotificationDto {
    fn new(n: &NotificationView, read_up_to: Position) -> Self {
        Self {
            seq: n.seq,
            post_id: n.post_id,
            comment_id: n.comment_id,
            name: n.name.clone(),
            excerpt: n.excerpt.clone(),
            reasons: n.reasons.iter().map(|r| (*r).to_owned()).collect(),
            notice: n.notice.as_ref().map(|x| NoticeDto {
                act: x.act.clone(),
                reason: x.reason.clone(),
                ends_at: x.ends_at,
            }),
            read: n.seq <= read_up_to,
            created_at: n.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<NotificationDto>,
    /// Notifications after `read_up_to`, counted up to 1 000: 1 000 means that many or more.
    pub unread: u64,
    pub read_up_to: Position,
    pub next_cursor: Option<String>,
}

/// The caller's notifications, newest first, with the unread count. Notifications are kept
/// for 30 days.
#[utoipa::path(get, path = "/api/v1/me/notifications", tag = "inbox", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = NotificationPage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn notifications(
    State(state): State<AppState>,
    auth: Auth,
    after: After,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let user = auth.actor.user_id;
    let cursors = Cursors::new(&state.secret, List::Notifications(user));
    let page = page(&params, &cursors)?;
    let position = consistent(&state, after, &[inbox::NAME]).await?;
    let rows = state.queries.notifications(user, page).await?;
    let inbox_state = state.queries.inbox_state(user).await?;
    let positions: Vec<Position> = rows.iter().map(|r| r.seq).collect();
    let answer = NotificationPage {
        items: rows
            .iter()
            .map(|n| NotificationDto::new(n, inbox_state.read_up_to))
            .collect(),
        unread: inbox_state.unread,
        read_up_to: inbox_state.read_up_to,
        next_cursor: next_cursor(&positions, page.limit, &cursors),
    };
    Ok((projection_headers(position), Json(answer)).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// Marks every notification up to this sequence number read.
    pub up_to: Position,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarkReadDone {
    pub read_up_to: Position,
    /// The position of the mark's event; 0 when the mark was there already.
    pub position: Position,
}

/// Marks the caller's notifications read, up to a sequence number. The mark only moves
/// forward.
#[utoipa::path(post, path = "/api/v1/me/notifications/read", tag = "inbox", security(("bearer" = [])),
    request_body = MarkRead,
    responses((status = 200, body = MarkReadDone), (status = 400, body = Problem), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn mark_read(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<MarkRead>,
) -> Result<Json<MarkReadDone>, ApiError> {
    let head = state.handler.store().head().await?;
    if body.up_to > head {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid field",
            format!(
                "up_to: {} is beyond the last notification there can be ({head})",
                body.up_to
            ),
        ));
    }
    let user = auth.actor.user_id;
    let outcome = run_on_user(
        &state,
        &auth,
        request_id.as_deref(),
        &UserCommand::MarkNotificationsRead { up_to: body.up_to },
    )
    .await?;
    let read_up_to = if !outcome.events.is_empty() {
        body.up_to
    } else {
        state
            .handler
            .load_cached::<User>(&user.stream())
            .await?
            .state
            .notifications_read
    };
    Ok(Json(MarkReadDone {
        read_up_to,
        position: recorded_at(&outcome),
    }))
}

/// `?after=` of the stream: the sequence number to resume after (as `Last-Event-ID`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Resume after this sequence number (the last `id:` received), like the `Last-Event-ID`
    /// header; when both are given they must agree.
    pub after: Option<u64>,
}

/// The caller's notifications, live, as Server-Sent Events: `event: notification`, `id:` its
/// sequence number, `data:` the notification as JSON. With `Last-Event-ID` (or `?after=`) the
/// stream first sends every notification after that id, then live ones, each exactly once. A
/// client further behind than the 30 days kept gets `event: reset` first (reload
/// `GET /me/notifications`), then live ones. A comment line (`: heartbeat`) comes every 25 s.
/// The stream ends when the session does (logout, anywhere). At most
/// `rate_limits.streams_per_user` streams per user are open at once (429 beyond).
#[utoipa::path(get, path = "/api/v1/me/notifications/stream", tag = "inbox", security(("bearer" = [])),
    params(StreamParams, ("Last-Event-ID" = Option<u64>, Header, description = "The last sequence number received")),
    responses((status = 200, description = "text/event-stream"), (status = 400, body = Problem), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn stream(
    State(state): State<AppState>,
    auth: Auth,
    after: After,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resume = resume_point(&headers, after)?;
    let user = auth.actor.user_id;
    let subscription = state
        .notifier
        .subscribe(user, state.limits.streams_per_user)
        .ok_or_else(|| {
            ApiError::too_many_requests(
                format!(
                    "too many notification streams open; at most {} per user",
                    state.limits.streams_per_user
                ),
                5,
            )
        })?;
    // Subscribed first: whatever the projection applies from here on reaches the queue; the
    // replay covers what it had applied before.
    let reached = match resume {
        Some(after) => consistent(&state, After(Some(after)), &[inbox::NAME]).await?,
        None => state.hub.position(&[inbox::NAME]),
    };
    let reset = match resume {
        Some(after) => after < state.queries.pruned_up_to().await?,
        None => false,
    };
    let (tx, rx) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(feed_stream(
        state.clone(),
        auth,
        subscription,
        resume.filter(|_| !reset),
        reset,
        reached,
        tx,
    ));
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"));
    Ok(sse.into_response())
}

/// Where a stream resumes: `Last-Event-ID` or `?after=`, which must agree when both are given.
fn resume_point(headers: &HeaderMap, after: After) -> Result<Option<Position>, ApiError> {
    let mut ids = headers.get_all("last-event-id").iter();
    let header = match (ids.next(), ids.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("send one Last-Event-ID header"));
        }
        (Some(v), None) => Some(
            v.to_str()
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<Position>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "Last-Event-ID: not a sequence number; send the last id: received",
                    )
                })?,
        ),
    };
    match (header, after.0) {
        (Some(h), Some(a)) if h != a => Err(ApiError::bad_request(format!(
            "Last-Event-ID {h} and after={a} disagree; send one"
        ))),
        (h, a) => Ok(h.or(a)),
    }
}

/// Writes one stream: the reset or the replay, then live rows, until the client leaves or the
/// session ends.
async fn feed_stream(
    state: AppState,
    auth: Auth,
    mut subscription: crate::background::notifier::Subscription,
    resume: Option<Position>,
    reset: bool,
    reached: Position,
    tx: mpsc::Sender<SseEvent>,
) {
    let user = auth.actor.user_id;
    let mut sent: Position = reached;
    if reset {
        let data = serde_json::json!({"detail": "further behind than the notifications kept; reload GET /api/v1/me/notifications"});
        if tx
            .send(SseEvent::default().event("reset").data(data.to_string()))
            .await
            .is_err()
        {
            return;
        }
    }
    if let Some(after) = resume {
        sent = after;
        loop {
            let rows = match state
                .queries
                .notifications_between(user, sent, reached, REPLAY_PAGE)
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "replaying notifications failed; closing the stream");
                    return;
                }
            };
            let full = rows.len() == REPLAY_PAGE;
            for row in &rows {
                if tx.send(event(row)).await.is_err() {
                    return;
                }
                sent = row.seq;
            }
            if !full {
                break;
            }
        }
        sent = sent.max(reached);
    }
    let mut users = state.hub.watch(users::NAME);
    let mut tick = tokio::time::interval(SESSION_CHECK);
    loop {
        tokio::select! {
            row = subscription.rows.recv() => match row {
                // Rows up to `sent` were in the replay (or before the stream began).
                Some(row) if row.seq <= sent => {}
                Some(row) => {
                    if tx.send(event(&row)).await.is_err() {
                        return;
                    }
                    sent = row.seq;
                }
                // Too slow: closed; the client resumes with Last-Event-ID.
                None => return,
            },
            () = tx.closed() => return,
            _ = tick.tick() => {
                if !session_stands(&state, &auth).await {
                    return;
                }
            }
            Some(()) = changed(&mut users) => {
                if !session_stands(&state, &auth).await {
                    return;
                }
            }
        }
    }
}

async fn changed(
    rx: &mut Option<tokio::sync::watch::Receiver<projections::ProjectionStatus>>,
) -> Option<()> {
    match rx {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// Whether the stream's session is still live (not ended here or elsewhere, not expired).
async fn session_stands(state: &AppState, auth: &Auth) -> bool {
    let users_at = state.hub.position(&[users::NAME]);
    match state
        .sessions
        .session(&*state.queries, &auth.token_hash, users_at, Utc::now())
        .await
    {
        Ok(session) => session.is_some_and(|s| s.session_id == auth.session_id),
        // A read model that cannot answer now does not end the stream.
        Err(_) => true,
    }
}

fn event(row: &NotificationView) -> SseEvent {
    let dto = NotificationDto::new(row, 0);
    let mut data = serde_json::to_value(&dto).unwrap_or_default();
    if let Some(map) = data.as_object_mut() {
        // A live stream does not know the read mark.
        map.remove("read");
    }
    SseEvent::default()
        .event("notification")
        .id(row.seq.to_string())
        .data(data.to_string())
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFavourite {
    /// A folder (1 to 30 characters) to keep it in; none when absent or null. At most 10
    /// folders are in use at once.
    #[serde(default)]
    pub folder: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FavouriteDone {
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    pub folder: Option<String>,
    /// The position of the event; 0 when nothing changed.
    pub position: Position,
}

/// Keeps a post among your favourites, in a folder or none (moving it if it is in another).
/// Favourites are private: nobody else sees them, and the log keeps them sealed.
#[utoipa::path(put, path = "/api/v1/me/favourites/{post_id}", tag = "inbox", security(("bearer" = [])),
    params(("post_id" = String, Path, format = Uuid)), request_body = NewFavourite,
    responses((status = 200, body = FavouriteDone), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn favourite(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewFavourite>,
) -> Result<Json<FavouriteDone>, ApiError> {
    let post_id = PostId::new(parse_id(&id, "post")?);
    let folder = body
        .folder
        .as_deref()
        .map(domain::values::FolderName::parse)
        .transpose()?;
    state.limits.check(
        &state.limits.follows_per_user,
        &auth.actor.user_id,
        "favourites",
    )?;
    // The write side's word, so that a post published a moment ago can be kept at once.
    let post = state
        .handler
        .load_cached::<domain::post::Post>(&post_id.stream())
        .await?;
    if !post.state.is_live() {
        return Err(ApiError::not_found("no such post"));
    }
    let outcome = run_on_user(
        &state,
        &auth,
        request_id.as_deref(),
        &UserCommand::Favourite {
            post_id,
            folder: folder.clone(),
        },
    )
    .await?;
    Ok(Json(FavouriteDone {
        post_id,
        folder: folder.map(|f| f.as_str().to_owned()),
        position: recorded_at(&outcome),
    }))
}

/// Drops a post from your favourites.
#[utoipa::path(delete, path = "/api/v1/me/favourites/{post_id}", tag = "inbox", security(("bearer" = [])),
    params(("post_id" = String, Path, format = Uuid)),
    responses((status = 200, body = crate::http::routes::auth::CommandDone), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn unfavourite(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
) -> Result<Json<crate::http::routes::auth::CommandDone>, ApiError> {
    let post_id = PostId::new(parse_id(&id, "post")?);
    let outcome = run_on_user(
        &state,
        &auth,
        request_id.as_deref(),
        &UserCommand::Unfavourite { post_id },
    )
    .await?;
    Ok(Json(crate::http::routes::auth::CommandDone {
        position: recorded_at(&outcome),
    }))
}

/// The position of what a command recorded; 0 when it recorded nothing (a choice already
/// made).
fn recorded_at<E>(outcome: &commands::Outcome<E>) -> Position {
    if outcome.events.is_empty() {
        0
    } else {
        outcome.position
    }
}

async fn run_on_user(
    state: &AppState,
    auth: &Auth,
    request_id: Option<&RequestId>,
    command: &UserCommand,
) -> Result<commands::Outcome<domain::user::UserEvent>, ApiError> {
    let ctx = context(Some(&auth.actor), request_id, None);
    Ok(state
        .handler
        .execute::<User>(&auth.actor.user_id.stream(), command, &(), &ctx)
        .await?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FavouriteParams {
    /// Only this folder's favourites (an empty value: those in no folder).
    pub folder: Option<String>,
    /// 1 to 100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Wait until the read models include this position (read-your-writes).
    pub after: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FavouriteDto {
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    pub folder: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FolderDto {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FavouritePage {
    pub items: Vec<FavouriteDto>,
    /// Every folder in use, with how many posts each holds.
    pub folders: Vec<FolderDto>,
    pub next_cursor: Option<String>,
}

/// Your favourites, most recently kept first, of one folder if asked.
#[utoipa::path(get, path = "/api/v1/me/favourites", tag = "inbox", security(("bearer" = [])),
    params(FavouriteParams),
    responses((status = 200, body = FavouritePage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn favourites(
    State(state): State<AppState>,
    auth: Auth,
    after: After,
    ApiQuery(params): ApiQuery<FavouriteParams>,
) -> Result<Response, ApiError> {
    let user = auth.actor.user_id;
    let cursors = Cursors::new(&state.secret, List::Favourites(user));
    let page = page(
        &ListParams {
            limit: params.limit,
            cursor: params.cursor.clone(),
            after: params.after,
        },
        &cursors,
    )?;
    let folder = match params.folder.as_deref() {
        Some("") => Some(String::new()),
        Some(f) => Some(domain::values::FolderName::parse(f)?.as_str().to_owned()),
        None => None,
    };
    let position = consistent(&state, after, &[inbox::NAME]).await?;
    let rows = state
        .queries
        .favourites(user, folder.as_deref(), page)
        .await?;
    let folders = state.queries.folders(user).await?;
    let positions: Vec<Position> = rows.iter().map(|r| r.position).collect();
    let answer = FavouritePage {
        items: rows
            .into_iter()
            .map(|r| FavouriteDto {
                post_id: r.post_id,
                folder: r.folder,
            })
            .collect(),
        folders: folders
            .into_iter()
            .map(|f| FolderDto {
                name: f.name,
                count: f.count,
            })
            .collect(),
        next_cursor: next_cursor(&positions, page.limit, &cursors),
    };
    Ok((projection_headers(position), Json(answer)).into_response())
}
