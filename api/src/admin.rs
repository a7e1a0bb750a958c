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
pub async fn grant(
    handler: &CommandHandler,
    secret: &[u8],
    username: &str,
) -> Result<Position, AdminError> {
    run(handler, secret, username, &UserCommand::GrantAdmin).await
}

/// Makes a user a moderator (or, `moderator` false, no longer one), by username. Position 0:
/// nothing changed.
pub async fn moderator(
    handler: &CommandHandler,
    secret: &[u8],
    username: &str,
    moderator: bool,
) -> Result<Position, AdminError> {
    run(
        handler,
        secret,
        username,
        &UserCommand::SetModerator { moderator },
    )
    .await
}

/// Runs `command` on the user named `username`, as the operator.
async fn run(
    handler: &CommandHandler,
    secret: &[u8],
    username: &str,
    command: &UserCommand,
) -> Result<Position, AdminError> {
    let name = Username::parse(username).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let mut held = handler
        .load::<Reservation>(&reservation::username_stream(secret, &name))
        .await?;
    if held.version == 0 {
        // A store written before reservation streams were keyed.
        held = handler
            .load::<Reservation>(&reservation::legacy_stream(&name.normalized()))
            .await?;
    }
    let owner = held
        .state
        .owner
        .filter(|_| held.state.taken)
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
        .execute::<User>(&owner.stream(), command, &(), &ctx)
        .await?;
    Ok(outcome.position)
}
