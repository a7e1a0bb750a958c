//! Prometheus metrics at `GET /metrics`: HTTP traffic by route and status, command conflicts,
//! and projection progress (sampled when scraped).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::error::ApiError;
use crate::state::AppState;

/// The process-wide recorder (metrics are global; tests may build several apps in one process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours just stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Counts and times every request by method, route template and status.
///
/// Every label value comes from a fixed set, so that no client can grow `/metrics` (and the
/// server's memory) by inventing methods or paths: methods outside the standard nine are
/// `OTHER`, routes are the matched template (never the raw path, which would also leak ids),
/// and a path no route matches is `unmatched`.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("treehole_http_requests_total", &labels).increment(1);
    metrics::histogram!("treehole_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The `method` label: a standard method's name, else `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Prometheus text exposition.
pub async fn render(State(state): State<AppState>) -> Result<Response, ApiError> {
    let head = state.handler.store().head().await?;
    metrics::gauge!("treehole_log_head_position").set(head as f64);
    for s in state.hub.statuses() {
        let name = [("projection", s.name.clone())];
        metrics::gauge!("treehole_projection_position", &name).set(s.position as f64);
        metrics::gauge!("treehole_projection_lag_events", &name).set(s.lag_events as f64);
        metrics::gauge!("treehole_projection_lag_seconds", &name).set(s.lag_seconds);
        let failed = f64::from(u8::from(s.state == projections::ProjectionState::Failed));
        metrics::gauge!("treehole_projection_failed", &name).set(failed);
    }
    let mut response = handle().render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for invented in ["FOOBAR1", "get", "PROPFIND"] {
            let method = Method::from_bytes(invented.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "OTHER", "{invented}");
        }
    }
}
