//! Webhooks: the SSRF guard and the signature receivers verify.

pub mod guard;
pub mod signature;

pub use guard::{Refused, WebhookPolicy};
