//! Accounts: verification codes, registration, login, logout, `GET /me`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use commands::registration::{self, MailCodeError, Registration};
use commands::sessions;
use domain::values::{DeviceLabel, Email, InvalidValue, Password, Username, VerificationCode};
use domain::{Position, SessionId, UserId};
use serde::{Deserialize, Serialize};
use tower_http::request_id::RequestId;
use utoipa::ToSchema;

use crate::http::error::{ApiError, Problem};
use crate::http::extract::{After, ApiJson, Auth, ClientIp, IdempotencyHeader, projection_headers};
use crate::http::routes::{consistent, context};
use crate::http::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    #[schema(example = "ann@campus.edu")]
    pub email: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodeSent {
    pub sent: bool,
    pub expires_in_seconds: i64,
    pub position: Position,
}

/// Sends a 6-digit verification code to an e-mail address (valid 5 minutes).
#[utoipa::path(post, path = "/api/v1/auth/codes", tag = "auth", request_body = CodeRequest,
    responses((status = 202, body = CodeSent), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn request_code(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<(StatusCode, Json<CodeSent>), ApiError> {
    let email = Email::parse(&body.email)?;
    state.limits.check(
        &state.limits.codes_per_ip,
        &ip,
        "code requests from this address",
    )?;
    state.limits.check(
        &state.limits.codes_per_email,
        &email.as_str().to_owned(),
        "code requests for this e-mail",
    )?;
    let ctx = context(None, request_id.as_deref(), None);
    let mailed =
        registration::mail_code(&state.handler, &*state.mailer, &state.secret, &email, &ctx).await;
    let position = match mailed {
        Ok(position) => position,
        Err(MailCodeError::NotSent(e)) => {
            tracing::error!(error = %e, "verification mail failed");
            return Err(ApiError::unavailable(
                "the verification e-mail could not be sent and nothing was recorded; \
                 an earlier code still works; try again later",
            ));
        }
        Err(MailCodeError::NotRecorded(e)) => {
            tracing::error!(error = %e, "a mailed verification code was not recorded");
            return Err(ApiError::from(e));
        }
    };
    let sent = CodeSent {
        sent: true,
        expires_in_seconds: domain::verification::CODE_TTL_SECONDS,
        position,
    };
    Ok((StatusCode::ACCEPTED, Json(sent)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub email: String,
    pub username: String,
    pub password: String,
    /// The 6 digits from the e-mail.
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    pub username: String,
    pub position: Position,
}

/// Registers with a verification code. E-mail and username are unique (case-insensitively).
#[utoipa::path(post, path = "/api/v1/users", tag = "auth", request_body = RegisterRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "repeat-safe key")),
    responses((status = 201, body = Registered), (status = 400, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    idempotency: IdempotencyHeader,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let request = Registration {
        email: Email::parse(&body.email)?,
        username: Username::parse(&body.username)?,
        password: Password::parse(&body.password)?,
        code: VerificationCode::parse(&body.code)?,
    };
    if state
        .post_services
        .pseudonyms
        .is_reserved(request.username.as_str())
    {
        return Err(InvalidValue {
            field: "username",
            reason: "is reserved: anonymous commenters appear under that name".into(),
        }
        .into());
    }
    state.limits.check(
        &state.limits.registrations_per_ip,
        &ip,
        "registrations from this address",
    )?;
    // Keys of anonymous callers are scoped by the e-mail they register, not shared by everyone.
    let scope = format!("register:{}", request.email.as_str());
    let key = idempotency.scoped(&state.secret, &scope, "POST /users", &body);
    let ctx = context(None, request_id.as_deref(), key);
    let done = registration::register(
        &state.handler,
        &state.passwords,
        &state.secret,
        &state.keys,
        request,
        &ctx,
    )
    .await?;
    let status = if done.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(Registered {
            user_id: done.user_id,
            username: done.username,
            position: done.position,
        }),
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// E-mail address or username.
    pub login: String,
    pub password: String,
    /// A name for this device, shown in `GET /me/sessions`: one line of 1 to 60 characters.
    #[schema(example = "Ann's phone")]
    pub device: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Token {
    pub token: String,
    pub token_type: &'static str,
    /// This session's id, as `GET /me/sessions` lists it.
    #[schema(value_type = String, format = Uuid)]
    pub session_id: SessionId,
    pub expires_at: DateTime<Utc>,
    pub position: Position,
}

/// Logs in and returns a bearer token, usable at once, valid for `session_ttl_hours` (31 days
/// by default). One account holds at most `sessions.max_per_user` live sessions (6 by
/// default): a login beyond them ends the oldest, whose token is refused from then on.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "auth", request_body = LoginRequest,
    responses((status = 201, body = Token), (status = 401, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    request_id: Option<axum::Extension<RequestId>>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<(StatusCode, Json<Token>), ApiError> {
    let device = body.device.as_deref().map(DeviceLabel::parse).transpose()?;
    if body.login.len() > 254 || body.password.len() > 512 {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid-credentials",
            "Wrong login or password",
            "wrong login or password",
        ));
    }
    state.limits.check(
        &state.limits.logins_per_ip,
        &ip,
        "login attempts from this address",
    )?;
    let ctx = context(None, request_id.as_deref(), None);
    let policy = sessions::SessionPolicy {
        ttl: Duration::hours(i64::from(state.settings.session_ttl_hours)),
        max_per_user: usize::try_from(state.settings.sessions.max_per_user).unwrap_or(usize::MAX),
    };
    let request = sessions::Login {
        login: body.login.trim(),
        password: &body.password,
        device,
    };
    let done = sessions::login(
        &state.handler,
        &state.passwords,
        &state.secret,
        &crate::http::routes::sessions::ListedSessions(&*state.queries),
        request,
        policy,
        &ctx,
    )
    .await?;
    // The token must work on the very next request, which checks the users read model, and
    // the tokens of sessions this login evicted must not. The session exists either way, so a
    // lagging projector delays the answer but does not fail it.
    let visible = state
        .hub
        .wait_for(&["users"], done.position, state.consistency_timeout());
    if let Err(e) = visible.await {
        tracing::warn!(error = %e, "login answered before the users projection caught up");
    }
    let token = Token {
        token: done.token,
        token_type: "Bearer",
        session_id: done.session_id,
        expires_at: done.expires_at,
        position: done.position,
    };
    Ok((StatusCode::CREATED, Json(token)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommandDone {
    pub position: Position,
}

/// Logs out: the token is refused from the next request on.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = CommandDone), (status = 401, body = Problem)))]
pub async fn logout(
    State(state): State<AppState>,
    auth: Auth,
    request_id: Option<axum::Extension<RequestId>>,
) -> Result<Json<CommandDone>, ApiError> {
    let ctx = context(Some(&auth.actor), request_id.as_deref(), None);
    let position = sessions::end(&state.handler, auth.session_id, auth.actor.user_id, &ctx).await?;
    let visible = state
        .hub
        .wait_for(&["users"], position, state.consistency_timeout());
    if let Err(e) = visible.await {
        tracing::warn!(error = %e, "logout answered before the users projection caught up");
    }
    Ok(Json(CommandDone { position }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    pub username: String,
    pub email: String,
    pub is_admin: bool,
    pub is_moderator: bool,
    pub registered_at: DateTime<Utc>,
    /// Hex key of the HMAC-SHA256 signatures on your tasks' webhooks.
    pub webhook_secret: String,
}

/// The signed-in user's own account.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = Problem)))]
pub async fn me(
    State(state): State<AppState>,
    after: After,
    auth: Auth,
) -> Result<(axum::http::HeaderMap, Json<Me>), ApiError> {
    let position = consistent(&state, after, &["users"]).await?;
    let user = state
        .queries
        .user(auth.actor.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let me = Me {
        user_id: user.user_id,
        username: user.username,
        email: user.email,
        is_admin: user.is_admin,
        is_moderator: user.is_moderator,
        registered_at: user.registered_at,
        webhook_secret: hex::encode(crate::background::dispatch::webhook_key(
            &state.secret,
            user.user_id,
        )),
    };
    Ok((projection_headers(position), Json(me)))
}
