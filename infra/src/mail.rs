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

impl LettreMailer {
    /// The verification e-mail to `to`. Every [`Email`] is a valid lettre mailbox; the property
    /// test below holds `Email::parse` to that.
    fn code_message(&self, to: &Email, code: &VerificationCode) -> Result<Message, MailError> {
        let to: Mailbox = to
            .as_str()
            .parse()
            .map_err(|e| MailError(format!("invalid recipient: {e}")))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Your treehole code: {}", code.as_str()))
            .header(ContentType::TEXT_PLAIN)
            .body(format!(
                "Your treehole verification code is {}.\n\nIt is valid for 5 minutes. If you did not ask for it, ignore this e-mail.\n",
                code.as_str()
            ))
            .map_err(|e| MailError(e.to_string()))
    }
}

#[async_trait]
impl Mailer for LettreMailer {
    async fn send_code(&self, to: &Email, code: &VerificationCode) -> Result<(), MailError> {
        let message = self.code_message(to, code)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::Address;
    use proptest::prelude::*;

    fn code() -> VerificationCode {
        VerificationCode::parse("123456").expect("six digits")
    }

    fn outbox() -> (tempfile::TempDir, LettreMailer) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mailer = LettreMailer::outbox("treehole <noreply@treehole.local>", dir.path().into())
            .expect("an outbox mailer");
        (dir, mailer)
    }

    /// What the mailer needs of an address: an SMTP envelope address (ASCII, so no SMTPUTF8
    /// is needed) and a message it can build.
    fn mailer_takes(mailer: &LettreMailer, email: &Email) -> Result<(), String> {
        let address: Address = email.as_str().parse().map_err(|e| format!("{e}"))?;
        if !address.to_string().is_ascii() {
            return Err("not ASCII: the relay would need SMTPUTF8".into());
        }
        mailer
            .code_message(email, &code())
            .map(drop)
            .map_err(|e| e.0)
    }

    #[tokio::test]
    async fn the_outbox_writes_every_kind_of_accepted_address() {
        let (dir, mailer) = outbox();
        for raw in [
            "ann@campus.edu",
            "o'brien+x@sub.example.org",
            "x{y}|z~@xn--bcher-kva.de",
        ] {
            let email = Email::parse(raw).expect("a valid address");
            mailer.send_code(&email, &code()).await.expect("written");
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("the outbox").count(),
            3
        );
    }

    #[test]
    fn addresses_the_mailer_refuses_are_not_emails() {
        let (_dir, mailer) = outbox();
        // These reached the mailer once and made POST /auth/codes answer 503.
        for raw in [
            "a@[127.0.0.1]",
            "a\u{202E}@campus.edu",
            "\u{202E}a@campus.edu",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} accepted");
        }
        let ok = Email::parse("ann@campus.edu").expect("valid");
        assert_eq!(mailer_takes(&mailer, &ok), Ok(()));
    }

    proptest! {
        /// Addresses of the accepted grammar: the mailer takes every one (and they do parse,
        /// so the next property is not vacuous).
        #[test]
        fn every_well_formed_address_is_accepted_by_both(
            local in "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\\.[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,10}){0,2}",
            domain in "([a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?\\.){1,3}[a-zA-Z][a-zA-Z0-9]{1,5}",
        ) {
            let (_dir, mailer) = outbox();
            let email = Email::parse(&format!("{local}@{domain}"));
            prop_assert!(email.is_ok(), "{:?}", email);
            let email = email.expect("checked");
            prop_assert_eq!(mailer_takes(&mailer, &email), Ok(()));
        }

        /// Anything near an address, including what the mailer refuses: whatever `Email::parse`
        /// accepts, the mailer accepts.
        #[test]
        fn every_address_email_parse_accepts_is_accepted_by_the_mailer(
            raw in "[a-z0-9.+'\"()\\[\\]: \u{202E}\u{200B}\u{E9}\u{212A}-]{1,12}@[a-z0-9.:\\[\\]\u{E9}\u{202E}_-]{1,14}",
        ) {
            let (_dir, mailer) = outbox();
            if let Ok(email) = Email::parse(&raw) {
                prop_assert_eq!(mailer_takes(&mailer, &email), Ok(()), "{:?}", raw);
            }
        }
    }
}
