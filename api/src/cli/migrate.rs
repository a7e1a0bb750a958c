//! `treehole migrate`: creates or updates the database schema and exits.

use super::config::Settings;

/// Applies pending migrations and says which.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let settings = super::init(settings);
    let applied = super::startup::migrate(&settings).await?;
    if applied.is_empty() {
        println!("schema up to date");
    } else {
        println!("applied migrations: {}", applied.join(", "));
    }
    Ok(())
}
