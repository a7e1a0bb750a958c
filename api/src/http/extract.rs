//! Request extractors: JSON and query parsing with problem+json rejections, bearer
//! authentication, read-your-writes positions and idempotency keys.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use chrono::Utc;
use domain::keyed_hash::keyed_hash;
use domain::values::Actor;
use domain::{Position, SessionId};
use projections::users;
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// `axum::Json` whose rejections are problem+json, and which takes a JSON object only: serde
/// would also read a struct from an array of its fields in order (`[1]` for `{"value": 1}`).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(raw) =
            axum::Json::<Box<serde_json::value::RawValue>>::from_request(req, state).await?;
        let shape = |detail: String| {
            ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                "The body does not match the expected shape",
                detail,
            )
        };
        if !raw.get().trim_start().starts_with('{') {
            return Err(shape("the body must be a JSON object".into()));
        }
        // The path of a bad field in the detail, as `axum::Json` gives it.
        let mut json = serde_json::Deserializer::from_str(raw.get());
        serde_path_to_error::deserialize(&mut json)
            .map(ApiJson)
            .map_err(|e| {
                shape(format!(
                    "Failed to deserialize the JSON body into the target type: {e}"
                ))
            })
    }
}

/// `axum::extract::Query` whose rejections are problem+json.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The signed-in user, from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Auth {
    pub actor: Actor,
    pub session_id: SessionId,
    /// The hash of the bearer token, to check again later that the session still stands (a
    /// notification stream outlives its request).
    pub token_hash: String,
    pub is_moderator: bool,
    /// When the sanction in force ends, if the user is sanctioned now (`Some(None)`:
    /// permanently).
    pub sanctioned_until: Option<Option<chrono::DateTime<Utc>>>,
}

impl Auth {
    /// Refuses a write (posting, commenting, reacting, voting, reporting) while the user is
    /// sanctioned: 403 with the end of the sanction. Reading stays open.
    pub fn may_write(&self) -> Result<(), ApiError> {
        match self.sanctioned_until {
            None => Ok(()),
            Some(until) => Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "sanctioned",
                "Sanctioned",
                match until {
                    Some(end) => format!(
                        "you are sanctioned until {}: you can read, but not post, comment, \
                         react, vote or report (see GET /api/v1/me/sanctions)",
                        end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => "you are sanctioned permanently: you can read, but not post, \
                             comment, react, vote or report (see GET /api/v1/me/sanctions)"
                        .to_owned(),
                },
            )),
        }
    }

    /// Refuses anyone who is neither a moderator nor an admin.
    pub fn moderator(&self) -> Result<domain::moderation::Role, ApiError> {
        if self.actor.is_admin {
            Ok(domain::moderation::Role::Admin)
        } else if self.is_moderator {
            Ok(domain::moderation::Role::Moderator)
        } else {
            Err(ApiError::forbidden(
                "only moderators and admins may do this",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let after = After::from_request_parts(parts, state).await?;
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "send Authorization: Bearer <token> (from POST /api/v1/sessions)",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 200)
            .ok_or_else(|| {
                ApiError::unauthorized("malformed Authorization header; expected Bearer <token>")
            })?;
        // Sessions live in the `users` read model: honour `?after=` before looking the token
        // up, or a lagging model (e.g. one being rebuilt) refuses a valid token (§5). The cache
        // answers only for what that model has reached (see `session_cache`).
        let users_at = crate::http::routes::consistent(state, after, &[users::NAME]).await?;
        let token_hash = commands::sessions::token_hash(token);
        let now = state.clock.now();
        let session = state
            .sessions
            .session(&*state.queries, &token_hash, users_at, now)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token is invalid, expired or logged out"))?;
        let sanctioned_until = session.user.sanctioned_until(now);
        state.seen.note(&session, now);
        Ok(Auth {
            actor: Actor {
                user_id: session.user.user_id,
                username: session.user.username,
                is_admin: session.user.is_admin,
            },
            session_id: session.session_id,
            token_hash,
            is_moderator: session.user.is_moderator,
            sanctioned_until,
        })
    }
}

/// The position a query must reflect: `?after=N` or `X-After-Position: N` (§5).
///
/// Every route reads it through this one extractor, so every route answers alike: one position,
/// given once, as the query parameter, the header, or both with the same value. Anything else
/// (two `after`s, two headers, a header that disagrees with the query, a value that is not a
/// position) is a 400: a client that sent two positions meant something we cannot guess.
#[derive(Debug, Clone, Copy, Default)]
pub struct After(pub Option<Position>);

impl<S: Send + Sync> FromRequestParts<S> for After {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let pairs = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|_| ApiError::bad_request("the query string is malformed"))?
            .0;
        let from_query = one(
            pairs
                .iter()
                .filter(|(k, _)| k == "after")
                .map(|(_, v)| v.as_str()),
            "give one ?after=",
        )?;
        let headers: Vec<&str> = parts
            .headers
            .get_all("x-after-position")
            .iter()
            .map(|h| h.to_str().unwrap_or(""))
            .collect();
        let from_header = one(headers.into_iter(), "send one X-After-Position header")?;
        match (from_query, from_header) {
            (Some(q), Some(h)) if q != h => Err(ApiError::bad_request(
                "after: ?after= and X-After-Position disagree; send one of them",
            )),
            (q, h) => Ok(After(q.or(h))),
        }
    }
}

/// The one position among `values`, if any.
fn one<'a>(
    mut values: impl Iterator<Item = &'a str>,
    once: &str,
) -> Result<Option<Position>, ApiError> {
    let Some(raw) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!(
            "after: {once}, not several positions"
        )));
    }
    raw.trim()
        .parse::<Position>()
        .map(Some)
        .map_err(|_| ApiError::bad_request("after: must be a non-negative integer position"))
}

/// An optional `Idempotency-Key` header (1 to 200 visible ASCII characters).
#[derive(Debug, Clone, Default)]
pub struct IdempotencyHeader(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value.to_str().unwrap_or("").trim();
        if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::bad_request(
                "Idempotency-Key: must be 1 to 200 visible ASCII characters",
            ));
        }
        Ok(Self(Some(key.to_owned())))
    }
}

impl IdempotencyHeader {
    /// The store-level key, scoped to the caller and fingerprinted with the request, so the
    /// same key sent with a different body is refused. Stored as a keyed hash (HMAC under the
    /// server secret): a scope in clear (a user id) beside the results of an anonymous post's
    /// commit would tie the two together in the database.
    pub fn scoped(
        &self,
        secret: &[u8],
        scope: &str,
        route: &str,
        body: &impl serde::Serialize,
    ) -> Option<commands::IdempotencyKey> {
        let key = self.0.as_ref()?;
        let body = serde_json::to_vec(body).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(route.as_bytes());
        h.update([0]);
        h.update(&body);
        let k = keyed_hash(
            secret,
            &[b"idempotency:", scope.as_bytes(), &[0], key.as_bytes()],
        );
        Some(commands::IdempotencyKey {
            key: hex::encode(k),
            fingerprint: hex::encode(h.finalize()),
        })
    }
}

/// The peer's IP address.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Ok(ClientIp(addr))
    }
}

/// Headers of a query answer: how far the read models it used had got.
pub fn projection_headers(position: Position) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-projection-position", HeaderValue::from(position));
    h
}
