//! Prometheus metrics at `GET /metrics`: HTTP traffic by route and status, command conflicts,
//! and projection progress (sampled when scraped).

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::http::error::ApiError;
use crate::http::state::AppState;

/// The process-wide recorder (metrics are global; tests may build several apps in one process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours just stays empty.
        let _ = metrics::set_global_recorder(recorder);
        // A recorder built this way keeps every histogram sample until upkeep drains it into
        // its summary: without a scrape, memory would grow with every request.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

/// A route's counter and histogram for one method and status.
type Handles = (metrics::Counter, metrics::Histogram);

/// The handles of every (route, method, status) seen so far: a request records through them
/// without building label strings or looking its key up in the registry. Bounded like the
/// labels: routes are templates, methods and statuses fixed sets.
static SEEN: LazyLock<RwLock<Seen>> = LazyLock::new(Default::default);

/// Per route template, the handles of each (method, status) seen.
type Seen = HashMap<String, Vec<(&'static str, u16, Handles)>>;

fn handles(route: &str, method: &'static str, status: u16) -> Handles {
    let find = |seen: &Seen| {
        seen.get(route).and_then(|v| {
            v.iter()
                .find(|(m, s, _)| *m == method && *s == status)
                .map(|(_, _, h)| h.clone())
        })
    };
    if let Some(h) = find(&SEEN.read().unwrap_or_else(PoisonError::into_inner)) {
        return h;
    }
    let mut seen = SEEN.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(h) = find(&seen) {
        return h;
    }
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    let h = (
        metrics::counter!("treehole_http_requests_total", &labels),
        metrics::histogram!("treehole_http_request_duration_seconds", &labels),
    );
    seen.entry(route.to_owned())
        .or_default()
        .push((method, status, h.clone()));
    h
}

/// Counts and times every request by method, route template and status.
///
/// Every label value comes from a fixed set, so that no client can grow `/metrics` (and the
/// server's memory) by inventing methods or paths: methods outside the standard nine are
/// `OTHER`, routes are the matched template (never the raw path, which would also leak ids),
/// and a path no route matches is `unmatched`.
/// `run` answers the request (the rest of the stack).
pub async fn track<F>(request: Request, run: impl FnOnce(Request) -> F) -> Response
where
    F: Future<Output = Response>,
{
    // The handles must come from our recorder, installed before the first of them is kept.
    handle();
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (requests, duration) = handles(route, method, response.status().as_u16());
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
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
