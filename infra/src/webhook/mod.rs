//! Webhooks: the SSRF guard, the signature receivers verify, and delivery.

pub mod deliver;
pub mod guard;
pub mod signature;

pub use deliver::{Attempt, deliver};
pub use guard::{Refused, WebhookPolicy};
