//! One error type for the whole API, rendered as `application/problem+json` (RFC 9457).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::registration::RegistrationError;
use commands::sessions::LoginError;
use commands::{CommandError, LoadError, StoreError};
use domain::model::ModelError;
use domain::post::PostError;
use domain::session::SessionError;
use domain::task::TaskError;
use domain::values::InvalidValue;
use domain::verification::VerificationError;
use domain::worker::WorkerError;
use projections::ReadModelError;
use projections::runner::NotYet;
use serde::Serialize;

/// An error answer: status, a stable problem type, a short title and a human detail.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub retry_after: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, stable across releases.
    #[serde(rename = "type")]
    #[schema(example = "urn:treehole:problem:validation")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn too_many_requests(detail: impl Into<String>, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                detail,
            )
        }
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                detail,
            )
        }
    }

    /// A failure of ours: logged in full, answered without internals.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
            "something went wrong on our side; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("urn:treehole:problem:{}", self.kind),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<InvalidValue> for ApiError {
    fn from(e: InvalidValue) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid field",
            e.to_string(),
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (kind, title) = match &r {
            JsonRejection::JsonSyntaxError(_) => ("malformed-json", "Malformed JSON"),
            JsonRejection::JsonDataError(_) => {
                ("invalid-body", "The body does not match the expected shape")
            }
            JsonRejection::MissingJsonContentType(_) => (
                "unsupported-media-type",
                "Expected Content-Type: application/json",
            ),
            _ => ("unreadable-body", "The request body could not be read"),
        };
        let status = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            s if s.is_client_error() => s,
            _ => StatusCode::BAD_REQUEST,
        };
        let title = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "Request body too large"
        } else {
            title
        };
        Self::new(status, kind, title, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::not_found(r.body_text())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdempotencyKeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was already used for a different request",
            ),
            StoreError::Conflict { .. } => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                "a concurrent change won; try again",
            ),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "event store unavailable");
                Self::unavailable("the event store is unavailable; try again shortly")
            }
            other => Self::internal(other),
        }
    }
}

impl From<LoadError> for ApiError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Store(s) => s.into(),
            LoadError::Decode(d) => Self::internal(d),
        }
    }
}

impl From<ReadModelError> for ApiError {
    fn from(e: ReadModelError) -> Self {
        match e {
            ReadModelError::Unavailable(m) => {
                tracing::warn!(error = %m, "read models unavailable");
                Self::unavailable("the read models are unavailable; try again shortly")
            }
            ReadModelError::Transient(m) => {
                tracing::warn!(error = %m, "read models busy");
                Self::unavailable("the read models are busy; try again shortly")
            }
            other => Self::internal(other),
        }
    }
}

impl From<NotYet> for ApiError {
    fn from(e: NotYet) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-yet-visible",
                "Not yet visible",
                e.to_string(),
            )
        }
    }
}

/// Domain refusals of one aggregate, mapped to statuses.
pub trait Refusal: std::error::Error + Send + Sync + 'static {
    fn to_api(&self) -> ApiError;
}

impl<E: Refusal> From<CommandError<E>> for ApiError {
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Rejected(r) => r.to_api(),
            CommandError::Store(s) => s.into(),
            CommandError::Decode(d) => Self::internal(d),
            CommandError::Contention(_) => {
                Self::unavailable("too many concurrent changes to this item; try again")
            }
        }
    }
}

impl Refusal for PostError {
    fn to_api(&self) -> ApiError {
        let detail = self.to_string();
        match self {
            PostError::NotFound | PostError::CommentNotFound => ApiError::not_found(detail),
            PostError::Deleted => ApiError::new(StatusCode::GONE, "gone", "Deleted", detail),
            PostError::AlreadyExists | PostError::DuplicateComment => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
            PostError::ReplyTargetNotFound => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid field",
                format!("reply_to: {detail}"),
            ),
            PostError::NotAllowed => ApiError::forbidden(detail),
            // The post is there; its state refuses the vote (a 404 would say it is gone).
            PostError::NoPoll => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
            PostError::NoSuchOption(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid field",
                format!("option: {detail}"),
            ),
            PostError::AlreadyVoted => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
            PostError::Removed => {
                ApiError::new(StatusCode::GONE, "removed", "Removed by moderation", detail)
            }
            PostError::OwnContent => ApiError::forbidden(detail),
        }
    }
}

impl Refusal for domain::sanction::SanctionError {
    fn to_api(&self) -> ApiError {
        use domain::sanction::SanctionError;
        let detail = self.to_string();
        match self {
            SanctionError::NotFound => ApiError::not_found(detail),
            SanctionError::OwnSanction => ApiError::forbidden(detail),
            SanctionError::AlreadySanctioned
            | SanctionError::AlreadyAppealed
            | SanctionError::NotAppealed
            | SanctionError::AlreadyDecided => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
        }
    }
}

impl Refusal for domain::user::UserError {
    fn to_api(&self) -> ApiError {
        use domain::user::UserError;
        match self {
            UserError::TooManyFolders => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                self.to_string(),
            ),
            // The caller's own account: gone from under a live session only in a race with
            // unregistering.
            _ => ApiError::unauthorized(self.to_string()),
        }
    }
}

impl Refusal for SessionError {
    fn to_api(&self) -> ApiError {
        ApiError::unauthorized(self.to_string())
    }
}

impl Refusal for VerificationError {
    fn to_api(&self) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "verification-failed",
            "Verification failed",
            self.to_string(),
        )
    }
}

impl From<RegistrationError> for ApiError {
    fn from(e: RegistrationError) -> Self {
        match e {
            RegistrationError::Verification(v) => v.to_api(),
            RegistrationError::EmailTaken | RegistrationError::UsernameTaken => ApiError::new(
                StatusCode::CONFLICT,
                "taken",
                "Already taken",
                e.to_string(),
            ),
            RegistrationError::Store(s) => s.into(),
            RegistrationError::Load(l) => l.into(),
            RegistrationError::Contention => {
                ApiError::unavailable("too many concurrent registrations; try again")
            }
            RegistrationError::Keys(k) => k.into(),
        }
    }
}

impl From<commands::KeyError> for ApiError {
    fn from(e: commands::KeyError) -> Self {
        match e {
            commands::KeyError::Destroyed(_) => {
                ApiError::unauthorized("the account no longer exists")
            }
            commands::KeyError::Backend(_) => {
                tracing::error!(error = %e, "key store");
                ApiError::unavailable("the key store is unavailable; try again")
            }
            other => {
                tracing::error!(error = %other, "sealed data");
                ApiError::internal("sealed data could not be read")
            }
        }
    }
}

impl From<domain::DecodeError> for ApiError {
    fn from(e: domain::DecodeError) -> Self {
        Self::internal(e)
    }
}

impl From<commands::unregister::UnregisterError> for ApiError {
    fn from(e: commands::unregister::UnregisterError) -> Self {
        use commands::unregister::UnregisterError as U;
        match e {
            U::WrongPassword => ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong-password",
                "Wrong password",
                "the password is wrong; nothing was changed",
            ),
            U::Verification(v) => v.to_api(),
            U::AlreadyUnregistered => ApiError::new(
                StatusCode::CONFLICT,
                "already-unregistered",
                "Already unregistered",
                e.to_string(),
            ),
            U::NotFound => ApiError::not_found("no such account"),
            U::Store(s) => s.into(),
            U::Load(l) => l.into(),
            U::Keys(k) => k.into(),
            U::Contention => ApiError::unavailable("too much contention; try again"),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "Wrong login or password",
                e.to_string(),
            ),
            LoginError::Load(l) => l.into(),
            LoginError::Store(s) => s.into(),
            LoginError::Contention => ApiError::unavailable(e.to_string()),
        }
    }
}

impl Refusal for ModelError {
    fn to_api(&self) -> ApiError {
        let detail = self.to_string();
        match self {
            ModelError::NotAdmin => ApiError::forbidden(detail),
            ModelError::AlreadyExists => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
            ModelError::NotFound => ApiError::not_found(detail),
        }
    }
}

impl Refusal for WorkerError {
    fn to_api(&self) -> ApiError {
        let detail = self.to_string();
        match self {
            WorkerError::NotAdmin => ApiError::forbidden(detail),
            WorkerError::AlreadyExists => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
            WorkerError::NotFound => ApiError::not_found(detail),
            WorkerError::BadModels => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid field",
                format!("models: {detail}"),
            ),
        }
    }
}

impl Refusal for TaskError {
    fn to_api(&self) -> ApiError {
        let detail = self.to_string();
        match self {
            TaskError::NotFound => ApiError::not_found(detail),
            TaskError::AlreadyExists => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
            TaskError::ModelDisabled(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "model-disabled",
                "Model disabled",
                format!("model: {detail}"),
            ),
            TaskError::InputTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "input-too-large",
                "Task input too large",
                format!("input: {detail}"),
            ),
            TaskError::BadPriority => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid field",
                format!("priority: {detail}"),
            ),
            TaskError::NotClaimable | TaskError::NotCancellable | TaskError::NoWebhook => {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "wrong-state",
                    "Not possible now",
                    detail,
                )
            }
            // The lease ran out and the task went back to the queue (or to another worker).
            // The answer a revoked token gets at the door, whichever side noticed first.
            TaskError::WorkerRevoked => {
                ApiError::unauthorized("the worker token is unknown or revoked")
            }
            TaskError::NotHolder => {
                ApiError::new(StatusCode::CONFLICT, "lease-lost", "Lease lost", detail)
            }
            // Someone else's task is not shown to exist.
            TaskError::NotSubmitter => ApiError::not_found("no such task"),
        }
    }
}
