//! The HTTP API: routes by resource, the extractors and the one error type they share, the
//! OpenAPI document, the caches in front of the read models, and the server.

pub mod cursor;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod page_cache;
pub mod rate_limit;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod session_cache;
pub mod state;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::Request;
use axum::middleware::Next;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use self::error::ApiError;
use self::routes::REQUEST_ID;
use self::state::AppState;

/// The whole HTTP stack: routes, docs, fallbacks and the middleware every request passes.
pub fn router(state: AppState, max_body: usize) -> Router {
    let body_timeout = state.settings.http.body();
    let docs = SwaggerUi::new("/api/v1/docs")
        .external_url_unchecked("/api/v1/openapi.json", openapi::document(&state.settings));
    Router::new()
        .merge(routes::api())
        .merge(routes::web::pages())
        .merge(docs)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(body_timeout, observe))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(axum::middleware::from_fn(self::request_id::assign))
}

/// Middleware: the request's metrics around its body's deadline, as one layer (axum boxes the
/// rest of the stack for each `from_fn` layer, on every request).
async fn observe(
    State(body_timeout): State<Duration>,
    request: axum::extract::Request,
    next: Next,
) -> axum::response::Response {
    self::metrics::track(request, |request| {
        self::server::limit_body_time(body_timeout, request, next)
    })
    .await
}
