//! `treehole admin`: operator commands that act on the log directly.

use chrono::Utc;
use clap::Subcommand;
use commands::{CommandContext, CommandError, CommandHandler};
use domain::reservation::{self, Reservation};
use domain::user::{User, UserCommand, UserError};
use domain::values::Username;
use domain::{Metadata, Position};

use super::config::Settings;
use super::startup::{Stores, server_secret};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Makes a user an admin (recorded as an AdminGranted event).
    Grant { username: String },
    /// Makes a user a moderator (ModeratorGranted), or with `--revoke` no longer one.
    Moderator {
        username: String,
        #[arg(long)]
        revoke: bool,
    },
}

/// Runs the `treehole admin` subcommand and says what changed.
pub async fn run(settings: Settings, command: &AdminCommand) -> anyhow::Result<()> {
    let settings = super::init(settings);
    let stores = Stores::open(&settings).await?;
    let handler = CommandHandler::new(stores.events.clone());
    let secret = server_secret(&settings)?;
    match command {
        AdminCommand::Grant { username } => {
            let position = grant(&handler, &secret, username).await?;
            println!("{username} is now an admin (position {position})");
        }
        AdminCommand::Moderator { username, revoke } => {
            let position = moderator(&handler, &secret, username, !*revoke).await?;
            let now = if *revoke { "no longer" } else { "now" };
            println!("{username} is {now} a moderator (position {position})");
        }
    }
    Ok(())
}

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
    on_user(handler, secret, username, &UserCommand::GrantAdmin).await
}

/// Makes a user a moderator (or, `moderator` false, no longer one), by username. Position 0:
/// nothing changed.
pub async fn moderator(
    handler: &CommandHandler,
    secret: &[u8],
    username: &str,
    moderator: bool,
) -> Result<Position, AdminError> {
    on_user(
        handler,
        secret,
        username,
        &UserCommand::SetModerator { moderator },
    )
    .await
}

/// Runs `command` on the user named `username`, as the operator.
async fn on_user(
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
