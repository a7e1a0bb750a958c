//! The mail port: how verification codes reach people.

use async_trait::async_trait;
use domain::values::{Email, VerificationCode};

#[derive(Debug, thiserror::Error)]
#[error("could not send mail: {0}")]
pub struct MailError(pub String);

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends the verification code to `to`.
    async fn send_code(&self, to: &Email, code: &VerificationCode) -> Result<(), MailError>;
}
