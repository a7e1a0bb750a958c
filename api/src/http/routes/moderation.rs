//! Moderation: reports, moderators' acts on content ids, sanctions and appeals, and the public
//! moderation log.
//!
//! No answer here names a user. A report answers with a position; an act on an item answers
//! with the act and a position, whoever wrote the item; the log and the queue are projections
//! without user ids. The one person told about a sanction is its subject (`GET /me/sanctions`).

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::moderation::{Act, Item, Reason, Role};
use domain::post::{Post, PostCommand, PostEvent};
use domain::sanction::{self, SanctionCommand, SanctionError, Sanctions};
use domain::user::{User, UserCommand};
use domain::values::{AppealText, ModerationNote, ReportText};
use domain::{CommentId, Position, PostId, SanctionId, UserId};
use projections::moderation::{LogEntry, QueueItem};
use projections::views::SanctionView;
use projections::{moderation, users};
use serde::{Deserialize, Serialize};
use tower_http::request_id::RequestId;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::background::supervisor::{LoopError, Shutdown};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{After, ApiJson, ApiQuery, Auth, projection_headers};
use crate::http::routes::posts::{author_token, parse_id, run_on_post};
use crate::http::routes::{consistent, context, page_limit};
use crate::http::state::AppState;

/// A report: a reason code from the fixed list and, optionally, what the reporter adds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReport {
    /// One of `spam`, `abuse`, `nsfw`, `flame_war`, `privacy`, `illegal`, `misinformation`,
    /// `other`.
    pub reason: String,
    /// At most 1 000 characters. Moderators read it; nobody learns who wrote it.
    #[serde(default)]
    pub text: Option<String>,
}

/// A report taken (201), or one made before (200, position 0: each user reports an item once).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportDone {
    pub position: Position,
}

/// Reports a post.
#[utoipa::path(post, path = "/api/v1/posts/{id}/reports", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = NewReport,
    responses((status = 201, body = ReportDone), (status = 200, body = ReportDone), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem)))]
pub async fn report_post(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewReport>,
) -> Result<(StatusCode, Json<ReportDone>), ApiError> {
    let post_id = PostId::new(parse_id(&id, "post")?);
    report(&state, &auth, request_id.as_deref(), post_id, None, &body).await
}

/// Reports a comment, found by its id in the comments read model (`?after=` the comment's
/// position finds one made a moment ago).
#[utoipa::path(post, path = "/api/v1/comments/{id}/reports", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("after" = Option<u64>, Query, description = "wait until the comments model includes this position")), request_body = NewReport,
    responses((status = 201, body = ReportDone), (status = 200, body = ReportDone), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem)))]
pub async fn report_comment(
    State(state): State<AppState>,
    auth: Auth,
    after: After,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewReport>,
) -> Result<(StatusCode, Json<ReportDone>), ApiError> {
    let comment_id = CommentId::new(parse_id(&id, "comment")?);
    let (reason, text) = report_values(&body)?;
    let post_id = post_of(&state, after, comment_id).await?;
    report_parsed(
        &state,
        &auth,
        request_id.as_deref(),
        Item {
            post_id,
            comment_id: Some(comment_id),
        },
        reason,
        text,
    )
    .await
}

/// The post a comment is under, from the comments read model (once it has reached `after`).
async fn post_of(
    state: &AppState,
    after: After,
    comment_id: CommentId,
) -> Result<PostId, ApiError> {
    consistent(state, after, &["comments"]).await?;
    Ok(state
        .queries
        .comment(comment_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such comment"))?
        .post_id)
}

fn report_values(body: &NewReport) -> Result<(Reason, Option<ReportText>), ApiError> {
    let reason = Reason::parse(&body.reason)?;
    let text = match &body.text {
        None => None,
        Some(t) => Some(ReportText::parse(t)?),
    };
    Ok((reason, text))
}

async fn report(
    state: &AppState,
    auth: &Auth,
    request_id: Option<&RequestId>,
    post_id: PostId,
    comment_id: Option<CommentId>,
    body: &NewReport,
) -> Result<(StatusCode, Json<ReportDone>), ApiError> {
    let (reason, text) = report_values(body)?;
    report_parsed(
        state,
        auth,
        request_id,
        Item {
            post_id,
            comment_id,
        },
        reason,
        text,
    )
    .await
}

async fn report_parsed(
    state: &AppState,
    auth: &Auth,
    request_id: Option<&RequestId>,
    item: Item,
    reason: Reason,
    text: Option<ReportText>,
) -> Result<(StatusCode, Json<ReportDone>), ApiError> {
    auth.may_write()?;
    state.limits.check(
        &state.limits.reactions_per_user,
        &auth.actor.user_id,
        "reports",
    )?;
    let handle = state
        .keys
        .report_handle(auth.actor.user_id, item.post_id, item.comment_id)
        .await?;
    let reporter = domain::Personal::new(handle, auth.actor.user_id);
    let command = PostCommand::Report {
        reporter,
        comment_id: item.comment_id,
        reason,
        text,
    };
    // Unnamed: the log must not tie the reporter to the item.
    let outcome = run_on_post(state, auth, request_id, item.post_id, &command, None, false).await?;
    sanction_removed(state, &outcome.events, None).await;
    let status = if outcome.events.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(ReportDone {
            position: outcome.position,
        }),
    ))
}

/// Sanctions the authors of the items `events` removed with a sanction, now rather than at the
/// next sweep. A failure is logged (without ids) and left to the sweep: the removal stands.
async fn sanction_removed(
    state: &AppState,
    events: &[commands::Recorded<PostEvent>],
    actor: Option<&domain::values::Actor>,
) {
    for recorded in events {
        if let PostEvent::ItemRemoved {
            post_id,
            comment_id,
            reason,
            by,
            sanction: true,
            ..
        } = &recorded.event
        {
            let item = Item {
                post_id: *post_id,
                comment_id: *comment_id,
            };
            if let Err(e) = sanction_author(state, item, *reason, *by, actor).await {
                tracing::warn!(problem = %e.kind, "the author of a removed item was not sanctioned yet");
            }
        }
    }
}

/// Sanctions the author of `item` on the ladder. The author is found by the write side (the
/// Post aggregate reads the id sealed beside the item) and goes no further than the ledger,
/// sealed under a handle for this sanction alone.
pub(crate) async fn sanction_author(
    state: &AppState,
    item: Item,
    reason: Reason,
    by: Role,
    actor: Option<&domain::values::Actor>,
) -> Result<Position, ApiError> {
    let post = state
        .handler
        .load_cached::<Post>(&item.post_id.stream())
        .await?
        .state;
    // An author who left is sanctioned as anyone else, on a subject nobody is whose key is
    // destroyed once the sanction is stored: a distinct answer (or a missing log entry) would
    // tell the moderator that the anonymous author of this item has unregistered. (A cached
    // Post may still hold the id of an author who left since: their key is gone.)
    let sanction_id = SanctionId::new(Uuid::now_v7());
    let author = match post.author_of(item.comment_id) {
        Some(user) => match state.keys.sanction_handle(user, sanction_id).await {
            Ok(subject) => Some((user, subject)),
            Err(commands::KeyError::Destroyed(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let (user, subject, departed) = match author {
        Some((user, subject)) => (user, subject, false),
        None => {
            let nobody = UserId::new(Uuid::now_v7());
            (
                nobody,
                state.keys.sanction_handle(nobody, sanction_id).await?,
                true,
            )
        }
    };
    let command = SanctionCommand::Impose {
        sanction_id,
        user,
        subject,
        item,
        reason,
        by,
        at: state.clock.now(),
    };
    let outcome = state
        .handler
        .execute::<Sanctions>(
            &sanction::ledger(),
            &command,
            &state.sanction_policy,
            &context(actor, None, None),
        )
        .await;
    if departed {
        state.keys.shred(user).await?;
    }
    Ok(outcome?.position)
}

/// Sanctions, every `interval` until shutdown, the authors of removed items still due one: the
/// request that removed them failed, or the process stopped, before it could. Several
/// processes may sweep at once; the ledger takes one sanction per item.
pub async fn sanction_due(
    state: AppState,
    interval: Duration,
    mut shutdown: Shutdown,
) -> Result<(), LoopError> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Items whose author cannot be sanctioned again (they were sanctioned for the item before
    // it was removed): not asked about again by this process.
    let mut settled: HashSet<Item> = HashSet::new();
    loop {
        tokio::select! {
            () = shutdown.requested() => return Ok(()),
            _ = tick.tick() => {}
        }
        let due = match state.queries.sanctions_due(100).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for sanctions due");
                continue;
            }
        };
        for (item, reason, by) in due {
            if settled.contains(&item) {
                continue;
            }
            match sanction_author(&state, item, reason, by, None).await {
                Ok(_) => {}
                Err(e) if e.status == StatusCode::CONFLICT => {
                    settled.insert(item);
                }
                Err(e) => tracing::warn!(problem = %e.kind, "a sanction due was not imposed"),
            }
        }
    }
}

/// A moderator's act on an item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAct {
    /// `fold`, `unfold`, `remove`, `restore`, or `sanction` (the item's author, whoever they
    /// are: the answer does not say).
    pub act: String,
    /// A reason code (see `POST /posts/{id}/reports`), shown in the public log.
    pub reason: String,
    /// A public note for the log: one line, at most 300 characters.
    #[serde(default)]
    pub note: Option<String>,
    /// For `remove`: whether the author is sanctioned too (default true).
    #[serde(default)]
    pub sanction: Option<bool>,
}

/// An act done (position 0: the item was in that state already).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActDone {
    pub act: String,
    pub position: Position,
}

/// Acts on a post as a moderator.
#[utoipa::path(post, path = "/api/v1/moderation/posts/{id}/acts", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = NewAct,
    responses((status = 200, body = ActDone), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem)))]
pub async fn act_on_post(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewAct>,
) -> Result<Json<ActDone>, ApiError> {
    let role = auth.moderator()?;
    let post_id = PostId::new(parse_id(&id, "post")?);
    let item = Item {
        post_id,
        comment_id: None,
    };
    act(&state, &auth, role, request_id.as_deref(), item, &body).await
}

/// Acts on a comment as a moderator (`?after=` the comment's position finds one made a moment
/// ago).
#[utoipa::path(post, path = "/api/v1/moderation/comments/{id}/acts", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid), ("after" = Option<u64>, Query, description = "wait until the comments model includes this position")), request_body = NewAct,
    responses((status = 200, body = ActDone), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem), (status = 422, body = Problem)))]
pub async fn act_on_comment(
    State(state): State<AppState>,
    auth: Auth,
    after: After,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewAct>,
) -> Result<Json<ActDone>, ApiError> {
    let role = auth.moderator()?;
    let comment_id = CommentId::new(parse_id(&id, "comment")?);
    parse_act(&body)?;
    let item = Item {
        post_id: post_of(&state, after, comment_id).await?,
        comment_id: Some(comment_id),
    };
    act(&state, &auth, role, request_id.as_deref(), item, &body).await
}

/// What an act asks for: `None` for a sanction.
fn parse_act(body: &NewAct) -> Result<(Option<Act>, Reason, Option<ModerationNote>), ApiError> {
    let act = match body.act.as_str() {
        "fold" => Some(Act::Fold),
        "unfold" => Some(Act::Unfold),
        "remove" => Some(Act::Remove),
        "restore" => Some(Act::Restore),
        "sanction" => None,
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid field",
                format!(
                    "act: {other:?} is not an act; one of fold, unfold, remove, restore, sanction"
                ),
            ));
        }
    };
    if body.sanction.is_some() && act != Some(Act::Remove) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid field",
            "sanction: only a removal takes it",
        ));
    }
    let reason = Reason::parse(&body.reason)?;
    let note = match &body.note {
        None => None,
        Some(n) => Some(ModerationNote::parse(n)?),
    };
    Ok((act, reason, note))
}

async fn act(
    state: &AppState,
    auth: &Auth,
    role: Role,
    request_id: Option<&RequestId>,
    item: Item,
    body: &NewAct,
) -> Result<Json<ActDone>, ApiError> {
    let (act, reason, note) = parse_act(body)?;
    let token = author_token(state, auth, item.post_id).await?;
    let position = match act {
        Some(act) => {
            let command = PostCommand::Moderate {
                comment_id: item.comment_id,
                act,
                reason,
                note,
                by: role,
                actor: auth.actor.user_id,
                token,
                sanction: body.sanction.unwrap_or(true),
            };
            let outcome =
                run_on_post(state, auth, request_id, item.post_id, &command, None, true).await?;
            sanction_removed(state, &outcome.events, Some(&auth.actor)).await;
            outcome.position
        }
        None => {
            let post = state
                .handler
                .load_cached::<Post>(&item.post_id.stream())
                .await?
                .state;
            let own = post
                .is_own(item.comment_id, auth.actor.user_id, &token)
                .map_err(|e| crate::http::error::Refusal::to_api(&e))?;
            if own {
                return Err(crate::http::error::Refusal::to_api(
                    &domain::post::PostError::OwnContent,
                ));
            }
            sanction_author(state, item, reason, role, Some(&auth.actor)).await?
        }
    };
    Ok(Json(ActDone {
        act: body.act.clone(),
        position,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// Entries before this position (the `next_before` of the previous page).
    pub before: Option<Position>,
    /// Wait until the log includes this position (read-your-writes).
    pub after: Option<u64>,
}

/// One act in the public moderation log. It names the item and the role that acted, never a
/// user.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogEntryDto {
    pub position: Position,
    /// `fold`, `unfold`, `remove`, `restore`, `sanction`, `uphold` or `overturn`.
    pub act: String,
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub comment_id: Option<CommentId>,
    pub reason: String,
    pub note: Option<String>,
    /// `community`, `moderator` or `admin`.
    pub role: String,
    pub at: DateTime<Utc>,
}

impl From<LogEntry> for LogEntryDto {
    fn from(e: LogEntry) -> Self {
        Self {
            position: e.position,
            act: e.act,
            post_id: e.item.post_id,
            comment_id: e.item.comment_id,
            reason: e.reason,
            note: e.note,
            role: e.role,
            at: e.at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    pub items: Vec<LogEntryDto>,
    /// Pass as `?before=` for the next page; `null` on the last.
    pub next_before: Option<Position>,
}

/// The public moderation log, newest first.
#[utoipa::path(get, path = "/api/v1/moderation/log", tag = "moderation", params(LogParams),
    responses((status = 200, body = LogPage), (status = 400, body = Problem)))]
pub async fn log(
    State(state): State<AppState>,
    after: After,
    ApiQuery(params): ApiQuery<LogParams>,
) -> Result<Response, ApiError> {
    let limit = page_limit(params.limit, 100)?;
    if params.before.is_some_and(|b| i64::try_from(b).is_err()) {
        return Err(ApiError::bad_request(
            "before: a position is at most 9223372036854775807",
        ));
    }
    let position = consistent(&state, after, &[moderation::NAME]).await?;
    let rows = state
        .queries
        .moderation_log(projections::ports::Page {
            cursor: params.before,
            limit,
        })
        .await?;
    let next_before = (rows.len() == limit)
        .then(|| rows.last().map(|r| r.position))
        .flatten();
    let page = LogPage {
        items: rows.into_iter().map(Into::into).collect(),
        next_before,
    };
    Ok((projection_headers(position), Json(page)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QueueParams {
    /// 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// Wait until the queue includes this position (read-your-writes).
    pub after: Option<u64>,
}

/// A reported item: how many reports, their weight, reasons and texts. Never who reported,
/// never who wrote it.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueItemDto {
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub comment_id: Option<CommentId>,
    pub reports: i64,
    pub weight: i64,
    /// The reason it is folded for, if it is.
    pub folded: Option<String>,
    /// Reports per reason code, most first.
    pub reasons: Vec<ReasonCount>,
    /// What reporters wrote, oldest first.
    pub texts: Vec<String>,
    pub last_reported_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReasonCount {
    pub reason: String,
    pub reports: i64,
}

impl From<QueueItem> for QueueItemDto {
    fn from(q: QueueItem) -> Self {
        Self {
            post_id: q.item.post_id,
            comment_id: q.item.comment_id,
            reports: q.reports,
            weight: q.weight,
            folded: q.folded,
            reasons: q
                .reasons
                .into_iter()
                .map(|(reason, reports)| ReasonCount { reason, reports })
                .collect(),
            texts: q.texts,
            last_reported_at: q.last_reported_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Queue {
    pub items: Vec<QueueItemDto>,
}

/// Reported items that are not removed, heaviest first (moderators and admins).
#[utoipa::path(get, path = "/api/v1/moderation/queue", tag = "moderation", security(("bearer" = [])),
    params(QueueParams),
    responses((status = 200, body = Queue), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn queue(
    State(state): State<AppState>,
    auth: Auth,
    after: After,
    ApiQuery(params): ApiQuery<QueueParams>,
) -> Result<Response, ApiError> {
    let (limit, position) = for_moderators(&state, &auth, after, &params, moderation::NAME).await?;
    let items = state.queries.queue(limit).await?;
    let queue = Queue {
        items: items.into_iter().map(Into::into).collect(),
    };
    Ok((projection_headers(position), Json(queue)).into_response())
}

/// A list for moderators only: its size, and the position of `projection` once it has reached
/// `after`.
async fn for_moderators(
    state: &AppState,
    auth: &Auth,
    after: After,
    params: &QueueParams,
    projection: &str,
) -> Result<(usize, Position), ApiError> {
    auth.moderator()?;
    let limit = page_limit(params.limit, 100)?;
    Ok((limit, consistent(state, after, &[projection]).await?))
}

/// A sanction, as its subject sees it and as moderators see an appeal: never whose it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct SanctionDto {
    #[schema(value_type = String, format = Uuid)]
    pub sanction_id: SanctionId,
    /// The item it was for.
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub comment_id: Option<CommentId>,
    pub reason: String,
    /// Its place on the ladder, from 1.
    pub step: i64,
    pub starts_at: DateTime<Utc>,
    /// `null`: permanent. An overturned sanction ends when it was overturned.
    pub ends_at: Option<DateTime<Utc>>,
    pub appealed_at: Option<DateTime<Utc>>,
    pub appeal: Option<String>,
    /// `pending`, `upheld` or `overturned` once appealed; `null` before.
    pub decision: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl From<SanctionView> for SanctionDto {
    fn from(v: SanctionView) -> Self {
        let decision = match (v.appealed_at, v.upheld) {
            (None, _) => None,
            (Some(_), None) => Some("pending"),
            (Some(_), Some(true)) => Some("upheld"),
            (Some(_), Some(false)) => Some("overturned"),
        };
        Self {
            sanction_id: v.sanction_id,
            post_id: v.post_id,
            comment_id: v.comment_id,
            reason: v.reason,
            step: v.step,
            starts_at: v.starts_at,
            ends_at: v.ends_at,
            appealed_at: v.appealed_at,
            appeal: v.appeal,
            decision: decision.map(str::to_owned),
            decided_at: v.decided_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MySanctions {
    /// Set while a sanction is in force: when it ends (`permanent` for never).
    pub sanctioned_until: Option<String>,
    pub items: Vec<SanctionDto>,
}

/// The caller's sanctions, newest first, and whether one is in force.
#[utoipa::path(get, path = "/api/v1/me/sanctions", tag = "moderation", security(("bearer" = [])),
    responses((status = 200, body = MySanctions), (status = 401, body = Problem)))]
pub async fn my_sanctions(
    State(state): State<AppState>,
    auth: Auth,
    after: After,
) -> Result<Response, ApiError> {
    let position = consistent(&state, after, &[users::NAME]).await?;
    let items = state.queries.sanctions_of(auth.actor.user_id).await?;
    let answer = MySanctions {
        sanctioned_until: auth.sanctioned_until.map(|until| {
            until.map_or_else(
                || "permanent".to_owned(),
                |end| end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        }),
        items: items.into_iter().map(Into::into).collect(),
    };
    Ok((projection_headers(position), Json(answer)).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAppeal {
    /// Why the sanction should be overturned: at most 1 000 characters.
    #[serde(default)]
    pub text: Option<String>,
}

fn sanction_id(raw: &str) -> Result<SanctionId, ApiError> {
    Ok(SanctionId::new(parse_id(raw, "sanction")?))
}

/// Appeals one of the caller's sanctions, once.
#[utoipa::path(post, path = "/api/v1/me/sanctions/{id}/appeal", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = NewAppeal,
    responses((status = 201, body = crate::http::routes::auth::CommandDone), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn appeal(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewAppeal>,
) -> Result<(StatusCode, Json<crate::http::routes::auth::CommandDone>), ApiError> {
    let sanction_id = sanction_id(&id)?;
    let text = match &body.text {
        None => None,
        Some(t) => Some(AppealText::parse(t)?),
    };
    let command = SanctionCommand::Appeal {
        sanction_id,
        user: auth.actor.user_id,
        text,
    };
    // Unnamed: the ledger must not tie the user to the sanction (and so to the item).
    let outcome = state
        .handler
        .execute::<Sanctions>(
            &sanction::ledger(),
            &command,
            &state.sanction_policy,
            &context(None, request_id.as_deref(), None),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(crate::http::routes::auth::CommandDone {
            position: outcome.position,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Appeals {
    pub items: Vec<SanctionDto>,
}

/// Appealed sanctions, undecided first (moderators and admins). Whose they are is not shown.
#[utoipa::path(get, path = "/api/v1/moderation/appeals", tag = "moderation", security(("bearer" = [])),
    params(QueueParams),
    responses((status = 200, body = Appeals), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn appeals(
    State(state): State<AppState>,
    auth: Auth,
    after: After,
    ApiQuery(params): ApiQuery<QueueParams>,
) -> Result<Response, ApiError> {
    let (limit, position) = for_moderators(&state, &auth, after, &params, users::NAME).await?;
    let items = state.queries.appeals(limit).await?;
    let answer = Appeals {
        items: items.into_iter().map(Into::into).collect(),
    };
    Ok((projection_headers(position), Json(answer)).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDecision {
    /// `true` upholds the sanction; `false` overturns it (it ends now and leaves the ladder).
    pub uphold: bool,
}

/// Decides an appeal (moderators and admins; not on their own sanction).
#[utoipa::path(post, path = "/api/v1/moderation/sanctions/{id}/decision", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = NewDecision,
    responses((status = 200, body = crate::http::routes::auth::CommandDone), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn decide(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewDecision>,
) -> Result<Json<crate::http::routes::auth::CommandDone>, ApiError> {
    let role = auth.moderator()?;
    let sanction_id = sanction_id(&id)?;
    let command = SanctionCommand::Decide {
        sanction_id,
        uphold: body.uphold,
        by: role,
        actor: auth.actor.user_id,
    };
    let outcome = state
        .handler
        .execute::<Sanctions>(
            &sanction::ledger(),
            &command,
            &state.sanction_policy,
            &context(Some(&auth.actor), request_id.as_deref(), None),
        )
        .await
        .map_err(|e| match e {
            // A moderator's own sanction: as unknown as anyone else's would be to its subject.
            commands::CommandError::Rejected(SanctionError::OwnSanction) => {
                ApiError::forbidden(SanctionError::OwnSanction.to_string())
            }
            other => other.into(),
        })?;
    Ok(Json(crate::http::routes::auth::CommandDone {
        position: outcome.position,
    }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    pub moderator: bool,
}

/// Makes a user a moderator, or no longer one (admins only). Position 0: nothing changed.
#[utoipa::path(put, path = "/api/v1/admin/users/{id}/moderator", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid)), request_body = NewRole,
    responses((status = 200, body = crate::http::routes::auth::CommandDone), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_moderator(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewRole>,
) -> Result<Json<crate::http::routes::auth::CommandDone>, ApiError> {
    if !auth.actor.is_admin {
        return Err(ApiError::forbidden(
            "only admins grant or revoke moderator rights",
        ));
    }
    let user = UserId::new(parse_id(&id, "user")?);
    let command = UserCommand::SetModerator {
        moderator: body.moderator,
    };
    let outcome = state
        .handler
        .execute::<User>(
            &user.stream(),
            &command,
            &(),
            &context(Some(&auth.actor), request_id.as_deref(), None),
        )
        .await
        .map_err(|e| match e {
            commands::CommandError::Rejected(_) => ApiError::not_found("no such user"),
            other => other.into(),
        })?;
    Ok(Json(crate::http::routes::auth::CommandDone {
        position: outcome.position,
    }))
}
