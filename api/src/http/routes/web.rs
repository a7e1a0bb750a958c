//! The two pages, `/` (the forum) and `/console` (operators and analysts): static files
//! compiled into the binary, which talk to the public API like any other client (no private
//! routes, no build step, no Node). uPlot (MIT, `web/vendor/`) draws the console's charts.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::state::AppState;

/// Every file served: its path, its text and its content type.
const FILES: &[(&str, &str, &str)] = &[
    ("/", include_str!("../../../web/index.html"), HTML),
    ("/console", include_str!("../../../web/console.html"), HTML),
    (
        "/assets/common.js",
        include_str!("../../../web/common.js"),
        SCRIPT,
    ),
    (
        "/assets/forum.js",
        include_str!("../../../web/forum.js"),
        SCRIPT,
    ),
    (
        "/assets/console.js",
        include_str!("../../../web/console.js"),
        SCRIPT,
    ),
    (
        "/assets/forum.css",
        include_str!("../../../web/forum.css"),
        STYLE,
    ),
    (
        "/assets/console.css",
        include_str!("../../../web/console.css"),
        STYLE,
    ),
    (
        "/assets/uPlot.iife.min.js",
        include_str!("../../../web/vendor/uPlot.iife.min.js"),
        SCRIPT,
    ),
    (
        "/assets/uPlot.min.css",
        include_str!("../../../web/vendor/uPlot.min.css"),
        STYLE,
    ),
    (
        "/assets/favicon.svg",
        include_str!("../../../web/favicon.svg"),
        "image/svg+xml",
    ),
];

const HTML: &str = "text/html; charset=utf-8";
const SCRIPT: &str = "text/javascript; charset=utf-8";
const STYLE: &str = "text/css; charset=utf-8";

/// Scripts and styles from this origin only, no inline code, no frames: what the API returns
/// can never run in the pages.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

pub fn pages() -> Router<AppState> {
    FILES
        .iter()
        .fold(Router::new(), |router, &(path, body, content_type)| {
            router.route(path, get(move || async move { page(body, content_type) }))
        })
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new binary serves new files: ask again each time (the files are small).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
