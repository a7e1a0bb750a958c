//! Serving HTTP/1.1 connections, and how long a client may take over a request.
//!
//! `axum::serve` sets no timer, so hyper's header-read timeout never runs there and a client
//! that sends a header line a minute, or nothing at all, keeps its connection (a socket and a
//! task) for as long as it likes. This accept loop is `axum::serve` with two limits:
//!
//! - **Head and idle** ([`HttpTimeouts::header_timeout_ms`]): hyper's header-read timeout. Its
//!   clock starts whenever the connection waits for a request head (on opening, and again
//!   after each answer), so it bounds a slow head and an idle keep-alive connection alike;
//!   past it hyper closes the connection without an answer.
//! - **Body** ([`HttpTimeouts::body_timeout_ms`]): a total deadline on the request body
//!   ([`limit_body_time`]). tower-http's `RequestBodyTimeout` is no help here: it bounds the
//!   wait *between* frames, which a client sending a byte a second never exceeds.
//!
//! Only HTTP/1.1 is served: HTTP/2 without TLS (prior knowledge), which `axum::serve` also
//! accepted, has no header-read timeout in hyper, and TLS is terminated by a proxy in front.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::cli::config::HttpTimeouts;
use crate::http::error::ApiError;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits
/// for the requests in flight (each connection closes after its current answer).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: &HttpTimeouts,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header());
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // What `into_make_service_with_connect_info` did: the peer for `ClientIp`.
        let service = router.clone().map_request(move |mut request: Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Middleware: the request body must have arrived within `timeout` of the request head, or
/// the answer is 408 (problem+json, `Connection: close`) whatever the handler made of the
/// cut-off body.
pub async fn limit_body_time(timeout: Duration, request: Request, next: Next) -> Response {
    if http_body::Body::is_end_stream(request.body()) {
        return next.run(request).await;
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Instant::now() + timeout,
            timer: None,
            timed_out: flag,
        })
    });
    let response = next.run(request).await;
    if !timed_out.load(Ordering::Acquire) {
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request-timeout",
        "Request body too slow",
        format!(
            "the request body did not arrive within {} ms",
            timeout.as_millis()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A body that fails once its deadline has passed, and records that it did.
struct DeadlineBody {
    inner: Body,
    deadline: Instant,
    /// Set only once the body has had to wait: a body that has arrived with its head (most
    /// of them) is read without a timer of the runtime's to register and cancel.
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl DeadlineBody {
    fn expire(&mut self) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.timed_out.store(true, Ordering::Release);
        Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        // The deadline first: a client that keeps a trickle going must not outlast it.
        if Instant::now() >= this.deadline {
            return this.expire();
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if frame.is_pending() {
            // Waiting for the client: wake at the deadline if nothing comes before.
            let deadline = this.deadline;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.as_mut().poll(cx).is_ready() {
                return this.expire();
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
