//! `X-Request-Id`: the id every request is traced by and every event it causes is stored with
//! (as both correlation and causation id).
//!
//! A client may choose it, so that its own logs join ours, but only a short, plain one: the
//! id is written into the event log forever, so a long or odd value would be a cheap way to
//! bloat the log or smuggle control characters into log lines. Anything else is dropped
//! before it is used, and a UUID takes its place ([`assign`]).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, MakeRequestUuid, RequestId};

use crate::http::routes::REQUEST_ID;

/// The longest request id a client may choose.
pub const MAX_LEN: usize = 64;

/// Whether a client's request id is kept: 1 to [`MAX_LEN`] visible ASCII characters (no
/// spaces, no control characters, nothing outside ASCII).
pub fn is_well_formed(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic)
}

/// Middleware: the request's id, in one layer where tower-http takes three (and a filter
/// before them). The client's `X-Request-Id` is kept if it sent exactly one and it is well
/// formed, else replaced by a new UUID (as `SetRequestIdLayer` with `MakeRequestUuid` does);
/// it is the request's [`RequestId`] extension, and the answer carries it unless the handler
/// set one (as `PropagateRequestIdLayer` does).
pub async fn assign(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let mut ids = headers.get_all(REQUEST_ID).iter();
    let kept = match (ids.next(), ids.next()) {
        (Some(id), None) if is_well_formed(id) => Some(RequestId::new(id.clone())),
        _ => None,
    };
    let Some(id) = kept.or_else(|| MakeRequestUuid.make_request_id(&request)) else {
        request.headers_mut().remove(REQUEST_ID);
        return next.run(request).await;
    };
    let value = id.header_value().clone();
    request.headers_mut().insert(REQUEST_ID, value.clone());
    request.extensions_mut().insert(id);
    let mut response = next.run(request).await;
    response.headers_mut().entry(REQUEST_ID).or_insert(value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_visible_ascii_ids_are_kept_and_nothing_else() {
        let longest = "!~".repeat(MAX_LEN / 2);
        for kept in ["a", "req-42_abc.DEF:1/x", longest.as_str()] {
            assert!(
                is_well_formed(&HeaderValue::from_str(kept).unwrap()),
                "{kept}"
            );
        }
        let too_long = "x".repeat(MAX_LEN + 1);
        for dropped in [
            &b""[..],
            too_long.as_bytes(),
            b"two words",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
        ] {
            let value = HeaderValue::from_bytes(dropped).unwrap();
            assert!(!is_well_formed(&value), "{dropped:?}");
        }
    }
}
