//! Posts and comments. Anonymous authors appear only under the name the Post aggregate chose.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::ids::parse_canonical_uuid;
use domain::post::{Post, PostCommand, PostEvent, Reaction, Tally};
use domain::values::{CommentBody, InvalidValue, PollOptions, PostBody, PostTitle, Tag};
use domain::{AuthorToken, CommentId, Position, PostId};
use projections::ports::Page;
use projections::views::{CommentView, PostView};
use serde::{Deserialize, Serialize};
use tower_http::request_id::RequestId;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::cursor::{Cursors, List};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{After, ApiJson, ApiQuery, Auth, IdempotencyHeader, projection_headers};
use crate::http::page_cache;
use crate::http::routes::auth::CommandDone;
use crate::http::routes::{consistent, context, page_limit};
use crate::http::state::AppState;

/// An id from a path: the canonical spelling only, else no such thing (404, as for any unknown id).
pub(crate) fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    parse_canonical_uuid(raw).ok_or_else(|| ApiError::not_found(format!("no such {what}")))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPost {
    pub title: Option<String>,
    pub body: String,
    /// Post as the host (`洞主` by default) instead of under your username.
    pub anonymous: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A poll to open with the post.
    #[serde(default)]
    pub poll: Option<NewPoll>,
}

/// A poll: 2 to 4 options of 1 to 30 characters, no two alike. Each user votes once, for
/// good; counts are public, voters are not.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPoll {
    #[schema(min_items = 2, max_items = 4)]
    pub options: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostCreated {
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    pub author_name: String,
    pub position: Position,
}

/// Publishes a post, under your username or anonymously.
#[utoipa::path(post, path = "/api/v1/posts", tag = "posts", request_body = NewPost, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "repeat-safe key")),
    responses((status = 201, body = PostCreated), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn create_post(
    State(state): State<AppState>,
    auth: Auth,
    idempotency: IdempotencyHeader,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<NewPost>,
) -> Result<(StatusCode, HeaderMap, Json<PostCreated>), ApiError> {
    auth.may_write()?;
    let title = match body.title.as_deref() {
        None => None,
        Some(t) => Some(PostTitle::parse(t)?),
    };
    let post_id = PostId::new(Uuid::now_v7());
    let token = author_token(&state, &auth, post_id).await?;
    let command = PostCommand::Publish {
        post_id,
        author: auth.actor.clone(),
        token: token.clone(),
        title,
        body: PostBody::parse(&body.body)?,
        tags: tags(&body.tags)?,
        anonymous: body.anonymous,
        poll: match &body.poll {
            None => None,
            Some(p) => Some(PollOptions::parse(&p.options)?),
        },
    };
    let key = idempotency.scoped(
        &state.secret,
        &auth.actor.user_id.to_string(),
        "POST /posts",
        &body,
    );
    let named = !body.anonymous;
    let outcome = run_on_post(
        &state,
        &auth,
        request_id.as_deref(),
        post_id,
        &command,
        key,
        named,
    )
    .await?;
    let created = outcome
        .events
        .iter()
        .find_map(|r| match &r.event {
            PostEvent::PostPublished {
                post_id, author, ..
            } => Some(PostCreated {
                post_id: *post_id,
                author_name: author.display_name().unwrap_or_default().to_owned(),
                position: outcome.position,
            }),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal("publishing produced no PostPublished event"))?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/posts/{}", created.post_id)) {
        headers.insert(header::LOCATION, v);
    }
    let status = created_or_replayed(outcome.replayed);
    Ok((status, headers, Json(created)))
}

/// A post's tags: at most [`Tag::MAX_PER_POST`] entries as sent, as the OpenAPI document says
/// (`maxItems`), even where some would fold into one.
fn tags(raw: &[String]) -> Result<Vec<Tag>, ApiError> {
    if raw.len() > Tag::MAX_PER_POST {
        return Err(domain::values::InvalidValue {
            field: "tags",
            reason: format!("at most {} tags are allowed", Tag::MAX_PER_POST),
        }
        .into());
    }
    Ok(Tag::parse_list(raw)?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1 to 100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Wait until the read models include this position (read-your-writes).
    pub after: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostDto {
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    pub author_name: String,
    pub anonymous: bool,
    pub title: Option<String>,
    pub body: String,
    pub tags: Vec<String>,
    pub comment_count: i64,
    /// How many people have commented (each counted once as a named and once as an anonymous
    /// commenter at most).
    pub commenters: i64,
    /// How many users like the post (reaction 1); who they are is never shown.
    pub likes: i64,
    /// How many users dislike the post (reaction -1).
    pub dislikes: i64,
    /// How many users chose to follow the post (authors and commenters follow it too, and
    /// are not counted here); who they are is never shown.
    pub followers: i64,
    /// The post's poll, if it has one: options and votes per option (voters are never shown).
    pub poll: Option<PollDto>,
    /// Your own reaction and vote: only in `GET /posts/{id}` sent with a bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mine: Option<MineDto>,
    /// Set when moderation folded the post: the reason code. Show it collapsed; its text is
    /// here for whoever asks to read it. Folded posts are not in the hot list or search.
    pub folded: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PollDto {
    pub options: Vec<String>,
    /// Votes per option, in the options' order.
    pub counts: Vec<i64>,
}

impl From<PostView> for PostDto {
    fn from(v: PostView) -> Self {
        Self {
            post_id: v.post_id,
            author_name: v.author_name,
            anonymous: v.anonymous,
            title: v.title,
            body: v.body,
            tags: v.tags,
            comment_count: v.comment_count,
            commenters: v.commenters,
            likes: v.likes,
            dislikes: v.dislikes,
            followers: v.followers,
            folded: v.folded,
            poll: v.poll.map(|p| PollDto {
                options: p.options,
                counts: p.counts,
            }),
            mine: None,
            created_at: v.created_at,
            last_activity_at: v.last_activity_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostPage {
    pub items: Vec<PostDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The page `params` ask for, their cursor opened as one of `cursors`' list.
pub(crate) fn page(params: &ListParams, cursors: &Cursors) -> Result<Page, ApiError> {
    Ok(Page {
        cursor: params
            .cursor
            .as_deref()
            .map(|c| cursors.decode(c))
            .transpose()?,
        limit: page_limit(params.limit, 100)?,
    })
}

pub(crate) fn next_cursor(
    positions: &[Position],
    limit: usize,
    cursors: &Cursors,
) -> Option<String> {
    (positions.len() == limit)
        .then(|| positions.last().map(|p| cursors.encode(*p)))
        .flatten()
}

/// Lists live posts, newest first.
#[utoipa::path(get, path = "/api/v1/posts", tag = "posts", params(ListParams),
    responses((status = 200, body = PostPage), (status = 400, body = Problem)))]
pub async fn list_posts(
    State(state): State<AppState>,
    after: After,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let cursors = Cursors::new(&state.secret, List::Feed);
    let page = page(&params, &cursors)?;
    let position = consistent(&state, after, &["feed"]).await?;
    let key = format!("feed {:?} {}", page.cursor, page.limit);
    let stamp = match state.pages.lookup(&state.hub, &["feed"], &key) {
        Ok(stamp) => stamp,
        Err(kept) => return Ok(page_cache::json(position, kept)),
    };
    let views = state.queries.feed(page).await?;
    let positions: Vec<Position> = views.iter().map(|v| v.position).collect();
    let items = views.into_iter().map(PostDto::from).collect();
    let answer = PostPage {
        items,
        next_cursor: next_cursor(&positions, page.limit, &cursors),
    };
    state.pages.answer(key, stamp, position, &answer)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HotParams {
    /// 1 to 50, default 20.
    pub limit: Option<u32>,
    /// Wait until the read models include this position (read-your-writes).
    pub after: Option<u64>,
}

/// The hot list: the newest posts (the configured window, 1 000 by default) ranked by
/// `score = (commenter * distinct commenters + like * likes - dislike * dislikes) *
/// seconds_per_point + created_at in Unix seconds`, highest first, ties newest first; weights
/// 1, 3, 1 and 1 800 s by default (`hot.*` in the configuration). Every 30 minutes of age weigh
/// as much as a point, so new posts start high and old ones sink; one busy commenter counts
/// once. No paging: the order moves as people react.
#[utoipa::path(get, path = "/api/v1/posts/hot", tag = "posts", params(HotParams),
    responses((status = 200, body = HotPage), (status = 400, body = Problem)))]
pub async fn hot_posts(
    State(state): State<AppState>,
    after: After,
    ApiQuery(params): ApiQuery<HotParams>,
) -> Result<Response, ApiError> {
    let limit = page_limit(params.limit, 50)?;
    let position = consistent(&state, after, &["feed"]).await?;
    let key = format!("hot {limit}");
    let stamp = match state.pages.lookup(&state.hub, &["feed"], &key) {
        Ok(stamp) => stamp,
        Err(kept) => return Ok(page_cache::json(position, kept)),
    };
    let views = state.queries.hot(&state.settings.hot, limit).await?;
    let answer = HotPage {
        items: views.into_iter().map(PostDto::from).collect(),
    };
    state.pages.answer(key, stamp, position, &answer)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HotPage {
    pub items: Vec<PostDto>,
}

/// What a signed-in reader of a post is shown as their own.
#[derive(Debug, Serialize, ToSchema)]
pub struct MineDto {
    /// Your reaction to the post: -1, 0 or 1.
    pub reaction: i64,
    /// The option you voted for in its poll, if you did.
    pub vote: Option<i64>,
}

/// One live post. Signed in (a bearer token), the answer adds `mine`: your reaction and your
/// vote; nobody else's are ever shown.
#[utoipa::path(get, path = "/api/v1/posts/{id}", tag = "posts",
    params(("id" = String, Path, format = Uuid), ("after" = Option<u64>, Query)),
    responses((status = 200, body = PostDto), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_post(
    State(state): State<AppState>,
    after: After,
    headers: HeaderMap,
    reader: Result<Auth, ApiError>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = PostId::new(parse_id(&id, "post")?);
    // A token sent must be valid; none sent reads the public post.
    let reader = match reader {
        Ok(auth) => Some(auth),
        Err(_) if !headers.contains_key(header::AUTHORIZATION) => None,
        Err(e) => return Err(e),
    };
    let position = consistent(&state, after, &["feed"]).await?;
    if let Some(auth) = reader {
        return post_for_reader(&state, &auth, id, position).await;
    }
    let key = format!("post {id}");
    let stamp = match state.pages.lookup(&state.hub, &["feed"], &key) {
        Ok(stamp) => stamp,
        Err(kept) => return Ok(page_cache::json(position, kept)),
    };
    let post = state
        .queries
        .post(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such post"))?;
    state
        .pages
        .answer(key, stamp, position, &PostDto::from(post))
}

/// The post with the reader's own marks, read past the page cache (the answer is theirs).
async fn post_for_reader(
    state: &AppState,
    auth: &Auth,
    id: PostId,
    position: Position,
) -> Result<Response, ApiError> {
    let post = state
        .queries
        .post(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such post"))?;
    let user = auth.actor.user_id;
    let reaction = state.keys.reaction_handle(user, id, None).await?;
    let vote = state.keys.vote_handle(user, id).await?;
    let marks = state
        .queries
        .marks(
            id,
            &[reaction.as_str().to_owned(), vote.as_str().to_owned()],
        )
        .await?;
    let value_of = |h: &str| marks.iter().find(|(k, _)| k == h).map(|(_, v)| *v);
    let answer = PostDto {
        mine: Some(MineDto {
            reaction: value_of(reaction.as_str()).unwrap_or(0),
            vote: value_of(vote.as_str()),
        }),
        ..PostDto::from(post)
    };
    Ok((projection_headers(position), Json(answer)).into_response())
}

/// Deletes a post (its author or an admin); it and its comments leave every public view.
#[utoipa::path(delete, path = "/api/v1/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = CommandDone), (status = 403, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem)))]
pub async fn delete_post(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
) -> Result<Json<CommandDone>, ApiError> {
    let id = PostId::new(parse_id(&id, "post")?);
    let command = PostCommand::Delete {
        actor: auth.actor.clone(),
        token: author_token(&state, &auth, id).await?,
    };
    let outcome = run_on_post(
        &state,
        &auth,
        request_id.as_deref(),
        id,
        &command,
        None,
        false,
    )
    .await?;
    Ok(Json(CommandDone {
        position: outcome.position,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    pub body: String,
    /// Comment under this post's pseudonym for you (or as the host, if it is your post).
    pub anonymous: bool,
    /// The id of a comment under this post, in canonical form (lower-case, hyphenated).
    #[schema(value_type = Option<String>, format = Uuid)]
    pub reply_to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommentCreated {
    #[schema(value_type = String, format = Uuid)]
    pub comment_id: CommentId,
    /// Your pseudonym under this post, the host name, or your username.
    pub author_name: String,
    pub position: Position,
}

fn reply_to(raw: Option<&str>) -> Result<Option<CommentId>, InvalidValue> {
    raw.map(|r| {
        CommentId::parse(r).map_err(|e| InvalidValue {
            field: "reply_to",
            reason: e.to_string(),
        })
    })
    .transpose()
}

/// Comments on a post. Anonymous commenters keep one pseudonym per post.
#[utoipa::path(post, path = "/api/v1/posts/{id}/comments", tag = "posts", request_body = NewComment, security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("Idempotency-Key" = Option<String>, Header, description = "repeat-safe key")),
    responses((status = 201, body = CommentCreated), (status = 404, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem)))]
pub async fn add_comment(
    State(state): State<AppState>,
    auth: Auth,
    idempotency: IdempotencyHeader,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewComment>,
) -> Result<(StatusCode, Json<CommentCreated>), ApiError> {
    auth.may_write()?;
    let post_id = PostId::new(parse_id(&id, "post")?);
    let token = author_token(&state, &auth, post_id).await?;
    let command = PostCommand::AddComment {
        comment_id: CommentId::new(Uuid::now_v7()),
        author: auth.actor.clone(),
        token: token.clone(),
        body: CommentBody::parse(&body.body)?,
        anonymous: body.anonymous,
        reply_to: reply_to(body.reply_to.as_deref())?,
    };
    let route = format!("POST /posts/{post_id}/comments");
    let key = idempotency.scoped(
        &state.secret,
        &auth.actor.user_id.to_string(),
        &route,
        &body,
    );
    let named = !body.anonymous;
    let outcome = run_on_post(
        &state,
        &auth,
        request_id.as_deref(),
        post_id,
        &command,
        key,
        named,
    )
    .await?;
    let created = outcome
        .events
        .iter()
        .find_map(|r| match &r.event {
            PostEvent::CommentAdded {
                comment_id, author, ..
            } => Some(CommentCreated {
                comment_id: *comment_id,
                author_name: author.display_name().unwrap_or_default().to_owned(),
                position: outcome.position,
            }),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal("commenting produced no CommentAdded event"))?;
    let status = created_or_replayed(outcome.replayed);
    Ok((status, Json(created)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommentDto {
    #[schema(value_type = String, format = Uuid)]
    pub comment_id: CommentId,
    pub author_name: String,
    pub anonymous: bool,
    /// The commenter is the post's author.
    pub is_host: bool,
    pub body: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub reply_to: Option<CommentId>,
    /// How many users like the comment; who they are is never shown.
    pub likes: i64,
    pub dislikes: i64,
    /// Set when moderation folded the comment: the reason code (show it collapsed).
    pub folded: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<CommentView> for CommentDto {
    fn from(v: CommentView) -> Self {
        Self {
            comment_id: v.comment_id,
            author_name: v.author_name,
            anonymous: v.anonymous,
            is_host: v.is_host,
            body: v.body,
            reply_to: v.reply_to,
            likes: v.likes,
            dislikes: v.dislikes,
            folded: v.folded,
            created_at: v.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommentPage {
    pub items: Vec<CommentDto>,
    pub next_cursor: Option<String>,
}

/// A post's live comments, oldest first.
#[utoipa::path(get, path = "/api/v1/posts/{id}/comments", tag = "posts",
    params(("id" = String, Path, format = Uuid), ListParams),
    responses((status = 200, body = CommentPage), (status = 404, body = Problem)))]
pub async fn list_comments(
    State(state): State<AppState>,
    after: After,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let post_id = PostId::new(parse_id(&id, "post")?);
    let cursors = Cursors::new(&state.secret, List::Comments(post_id));
    let page = page(&params, &cursors)?;
    let position = consistent(&state, after, &["feed", "comments"]).await?;
    let key = format!("comments {post_id} {:?} {}", page.cursor, page.limit);
    let stamp = match state.pages.lookup(&state.hub, &["feed", "comments"], &key) {
        Ok(stamp) => stamp,
        Err(kept) => return Ok(page_cache::json(position, kept)),
    };
    let views = state
        .queries
        .comments_of_live_post(post_id, page)
        .await?
        .ok_or_else(|| ApiError::not_found("no such post"))?;
    let positions: Vec<Position> = views.iter().map(|v| v.position).collect();
    let items = views.into_iter().map(CommentDto::from).collect();
    let answer = CommentPage {
        items,
        next_cursor: next_cursor(&positions, page.limit, &cursors),
    };
    state.pages.answer(key, stamp, position, &answer)
}

/// Deletes a comment (its author or an admin). The author keeps their pseudonym under the post.
#[utoipa::path(delete, path = "/api/v1/posts/{id}/comments/{comment_id}", tag = "posts", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("comment_id" = String, Path, format = Uuid)),
    responses((status = 200, body = CommandDone), (status = 403, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem)))]
pub async fn delete_comment(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path((id, comment_id)): Path<(String, String)>,
) -> Result<Json<CommandDone>, ApiError> {
    let post_id = PostId::new(parse_id(&id, "post")?);
    let comment_id = CommentId::new(parse_id(&comment_id, "comment")?);
    let command = PostCommand::DeleteComment {
        comment_id,
        actor: auth.actor.clone(),
        token: author_token(&state, &auth, post_id).await?,
    };
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
    Ok(Json(CommandDone {
        position: outcome.position,
    }))
}

/// A vote in a post's poll: the index of an option, from 0.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVote {
    #[schema(minimum = 0, maximum = 3)]
    pub option: usize,
}

/// The poll's counts after the caller's vote, and that vote.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoteDone {
    /// Votes per option, in the options' order.
    pub counts: Vec<u64>,
    /// The option the caller voted for.
    pub mine: usize,
    pub position: Position,
}

/// Votes in a post's poll. One vote per user, final: a second vote is 409, as is a vote on a
/// post without a poll.
#[utoipa::path(post, path = "/api/v1/posts/{id}/poll/votes", tag = "posts", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = NewVote,
    responses((status = 201, body = VoteDone), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn vote(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewVote>,
) -> Result<(StatusCode, Json<VoteDone>), ApiError> {
    auth.may_write()?;
    let post_id = PostId::new(parse_id(&id, "post")?);
    state
        .limits
        .check(&state.limits.votes_per_user, &auth.actor.user_id, "votes")?;
    let voter = state.keys.vote_handle(auth.actor.user_id, post_id).await?;
    let command = PostCommand::Vote {
        voter,
        option: body.option,
    };
    // Unnamed, like a reaction: the log records the voter's handle for this poll only.
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
    let done = outcome
        .events
        .iter()
        .find_map(|r| match &r.event {
            PostEvent::PollVoted { option, counts, .. } => Some(VoteDone {
                counts: counts.clone(),
                mine: *option,
                position: outcome.position,
            }),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal("voting produced no PollVoted event"))?;
    Ok((StatusCode::CREATED, Json(done)))
}

/// A reaction to set: `1` like, `-1` dislike, `0` none. Setting the value one already has
/// changes nothing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReaction {
    #[schema(minimum = -1, maximum = 1)]
    pub value: i64,
}

/// An item's reaction counts after the caller's reaction, and that reaction. Who else
/// reacted is never shown, to anyone.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReactionDone {
    pub likes: u64,
    pub dislikes: u64,
    /// The caller's own reaction: -1, 0 or 1.
    pub mine: i8,
    /// The position of the reaction's event; 0 when the value was already set (nothing was
    /// recorded).
    pub position: Position,
}

/// Sets the caller's reaction to a post.
#[utoipa::path(put, path = "/api/v1/posts/{id}/reaction", tag = "posts", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = NewReaction,
    responses((status = 200, body = ReactionDone), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn react_to_post(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewReaction>,
) -> Result<Json<ReactionDone>, ApiError> {
    let post_id = PostId::new(parse_id(&id, "post")?);
    let value = reaction_value(&body)?;
    react(&state, &auth, request_id.as_deref(), post_id, None, value).await
}

/// Sets the caller's reaction to a comment of a post.
#[utoipa::path(put, path = "/api/v1/posts/{id}/comments/{comment_id}/reaction", tag = "posts", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("comment_id" = String, Path, format = Uuid)), request_body = NewReaction,
    responses((status = 200, body = ReactionDone), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn react_to_comment_of_post(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path((id, comment_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<NewReaction>,
) -> Result<Json<ReactionDone>, ApiError> {
    let post_id = PostId::new(parse_id(&id, "post")?);
    let comment_id = CommentId::new(parse_id(&comment_id, "comment")?);
    let value = reaction_value(&body)?;
    react(
        &state,
        &auth,
        request_id.as_deref(),
        post_id,
        Some(comment_id),
        value,
    )
    .await
}

/// Sets the caller's reaction to a comment, found by its id alone. The comment's post is
/// looked up in the comments read model, so a comment made a moment ago may not be found
/// yet: `PUT /posts/{id}/comments/{comment_id}/reaction` needs no look-up.
#[utoipa::path(put, path = "/api/v1/comments/{id}/reaction", tag = "posts", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = NewReaction,
    responses((status = 200, body = ReactionDone), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn react_to_comment(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewReaction>,
) -> Result<Json<ReactionDone>, ApiError> {
    let comment_id = CommentId::new(parse_id(&id, "comment")?);
    // A bad value is refused before the look-up, as on the other two routes.
    let value = reaction_value(&body)?;
    let comment = state
        .queries
        .comment(comment_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such comment"))?;
    react(
        &state,
        &auth,
        request_id.as_deref(),
        comment.post_id,
        Some(comment_id),
        value,
    )
    .await
}

fn reaction_value(body: &NewReaction) -> Result<Reaction, ApiError> {
    Reaction::from_value(body.value).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid field",
            format!(
                "value: {} is not a reaction; use 1 (like), -1 (dislike) or 0 (none)",
                body.value
            ),
        )
    })
}

/// Decides the reaction unnamed (the log records no actor for it, only the caller's handle
/// for this one item) and answers with the counts it leaves.
async fn react(
    state: &AppState,
    auth: &Auth,
    request_id: Option<&RequestId>,
    post_id: PostId,
    comment_id: Option<CommentId>,
    value: Reaction,
) -> Result<Json<ReactionDone>, ApiError> {
    auth.may_write()?;
    state.limits.check(
        &state.limits.reactions_per_user,
        &auth.actor.user_id,
        "reactions",
    )?;
    let reactor = state
        .keys
        .reaction_handle(auth.actor.user_id, post_id, comment_id)
        .await?;
    let command = PostCommand::React {
        reactor,
        comment_id,
        value,
    };
    let outcome = run_on_post(state, auth, request_id, post_id, &command, None, false).await?;
    let set = outcome.events.iter().find_map(|r| match &r.event {
        PostEvent::ReactionSet {
            likes, dislikes, ..
        } => Some(Tally {
            likes: *likes,
            dislikes: *dislikes,
        }),
        _ => None,
    });
    let (tally, position) = match set {
        Some(tally) => (tally, outcome.position),
        // Nothing changed: the counts as the write side knows them now.
        None => {
            let loaded = state.handler.load_cached::<Post>(&post_id.stream()).await?;
            (loaded.state.tally(comment_id), 0)
        }
    };
    Ok(Json(ReactionDone {
        likes: tally.likes,
        dislikes: tally.dislikes,
        mine: value.value(),
        position,
    }))
}

/// The caller's author token for a post: what the Post aggregate knows them by.
pub(crate) async fn author_token(
    state: &AppState,
    auth: &Auth,
    post_id: PostId,
) -> Result<AuthorToken, ApiError> {
    state
        .keys
        .author_token(auth.actor.user_id, post_id)
        .await
        .map_err(ApiError::from)
}

/// Runs a command on one post as the caller (idempotently when the client sent a key). The
/// caller is named in the event's metadata only for a `named` act: an anonymous post or
/// comment, and a deletion (which may be of anonymous content), record no actor.
pub(crate) async fn run_on_post(
    state: &AppState,
    auth: &Auth,
    request_id: Option<&RequestId>,
    post_id: PostId,
    command: &PostCommand,
    key: Option<commands::IdempotencyKey>,
    named: bool,
) -> Result<commands::Outcome<PostEvent>, ApiError> {
    let ctx = context(named.then_some(&auth.actor), request_id, key);
    Ok(state
        .handler
        .execute::<Post>(&post_id.stream(), command, &state.post_services, &ctx)
        .await?)
}

/// 201 for a new resource, 200 when an idempotent retry is answered again.
fn created_or_replayed(replayed: bool) -> StatusCode {
    if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    }
}
