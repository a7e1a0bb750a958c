//! One webhook delivery: a signed JSON POST to addresses the SSRF guard has just checked.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::WebhookPolicy;
use super::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why the attempt failed, if it did.
    pub error: Option<String>,
    /// A 2xx answer.
    pub delivered: bool,
}

/// Header naming the task a delivery is about, so receivers can drop repeats.
pub const DELIVERY_HEADER: &str = "x-treehole-delivery";

/// POSTs `body` to `url`, signed with `key` at `now`. The URL is checked again here, and the
/// connection goes only to the addresses that check resolved (no second DNS lookup, no
/// redirects), so neither DNS rebinding nor a redirect can point the server inside.
pub async fn deliver(
    policy: &WebhookPolicy,
    url: &str,
    delivery_id: &str,
    key: &[u8],
    body: Vec<u8>,
    now: DateTime<Utc>,
    timeout: Duration,
) -> Attempt {
    let failed = |error: String| Attempt {
        status: None,
        error: Some(error),
        delivered: false,
    };
    let (url, addrs) = match policy.check(url).await {
        Ok(checked) => checked,
        Err(refused) => return failed(refused.to_string()),
    };
    let host = url.host_str().unwrap_or_default().to_owned();
    let client = match reqwest::Client::builder()
        .resolve_to_addrs(&host, &addrs)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("treehole-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(e) => return failed(format!("cannot build an HTTP client: {e}")),
    };
    let timestamp = now.timestamp();
    let signature = sign(key, timestamp, &body);
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(DELIVERY_HEADER, delivery_id)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            Attempt {
                status: Some(status.as_u16()),
                error: (!status.is_success()).then(|| format!("the receiver answered {status}")),
                delivered: status.is_success(),
            }
        }
        Err(e) if e.is_timeout() => failed(format!("no answer within {timeout:?}")),
        Err(e) => failed(format!("cannot reach the receiver: {}", root_cause(&e))),
    }
}

/// The innermost error, which says what actually went wrong (refused, reset, TLS...).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
