//! Mail transports: SMTP (rustls) when configured, else `.eml` files in an outbox directory,
//! like Django's file e-mail backend.

use std::path::PathBuf;

use async_trait::async_trait;
use commands::{MailError, Mailer};
use domain::values::{Email, VerificationCode};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// SMTP settings. `url` is lettre's form, e.g. `smtps://user:pass@smtp.example.org:465` or
/// `smtp://localhost:25`.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

pub struct LettreMailer {
    from: Mailbox,
    transport: Transport,
}

impl LettreMailer {
    pub fn smtp(from: &str, settings: &SmtpSettings) -> Result<Self, MailError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.url)
            .map_err(|e| MailError(format!("invalid SMTP URL: {e}")))?;
        if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(Self {
            from: parse_from(from)?,
            transport: Transport::Smtp(builder.build()),
        })
    }

    /// Writes each message as `<uuid>.eml` into `dir` (created if missing).
    pub fn outbox(from: &str, dir: PathBuf) -> Result<Self, MailError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| MailError(format!("cannot create {}: {e}", dir.display())))?;
        Ok(Self {
            from: parse_from(from)?,
            transport: Transport::Outbox(AsyncFileTransport::new(dir)),
        })
    }
}

fn parse_from(from: &str) -> Result<Mailbox, MailError> {
    from.parse()
        .map_err(|e| MailError(format!("invalid sender address {from:?}: {e}")))
}

#[async_trait]
impl Mailer for LettreMailer {
    async fn send_code(&self, to: &Email, code: &VerificationCode) -> Result<(), MailError> {
        let to: Mailbox = to
            .as_str()
            .parse()
            .map_err(|e| MailError(format!("invalid recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Your treehole code: {}", code.as_str()))
            .header(ContentType::TEXT_PLAIN)
            .body(format!(
                "Your treehole verification code is {}.\n\nIt is valid for 5 minutes. If you did not ask for it, ignore this e-mail.\n",
                code.as_str()
            ))
            .map_err(|e| MailError(e.to_string()))?;
        match &self.transport {
            Transport::Smtp(t) => t
                .send(message)
                .await
                .map(drop)
                .map_err(|e| MailError(e.to_string())),
            Transport::Outbox(t) => t
                .send(message)
                .await
                .map(drop)
                .map_err(|e| MailError(e.to_string())),
        }
    }
}
