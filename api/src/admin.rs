//! Operator commands that act on the log directly.

use chrono::Utc;
use commands::{CommandContext, CommandError, CommandHandler};
use domain::reservation::{self, Reservation};
use domain::user::{User, UserCommand, UserError};
use domain::values::Username;
use domain::{Metadata, Position};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("no user named {0}")]
    NoSuchUser(String),
    #[error(transparent)]
    Command(#[from] CommandError<UserError>),
    #[error(transparent)]
    Load(#[from] commands::LoadError),
}

/// Grants admin rights to a user by username.
pub async fn grant(handler: &CommandHandler, username: &str) -> Result<Position, AdminError> {
    let name = Username::parse(username).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let owner = handler
        .load::<Reservation>(&reservation::username_stream(&name))
        .await?
        .state
        .owner
        .ok_or_else(|| AdminError::NoSuchUser(username.to_owned()))?;
    let ctx = CommandContext {
        at: Utc::now(),
        metadata: Metadata {
            actor: Some("operator".into()),
            ..Metadata::default()
        },
        idempotency: None,
    };
    let outcome = handler
        .execute::<User>(&owner.stream(), &UserCommand::GrantAdmin, &(), &ctx)
        .await?;
    Ok(outcome.position)
}
