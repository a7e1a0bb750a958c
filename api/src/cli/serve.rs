//! `treehole serve`: the HTTP API with its in-process projectors and background loops.

use anyhow::Context;

use super::config::Settings;
use super::startup::Application;

/// Builds the application, prints the bound address and serves until Ctrl-C or SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let settings = super::init(settings);
    let app = Application::build(settings)
        .await
        .context("starting treehole")?;
    // The one line of CLI output: scripts and tests read the bound address from it.
    println!("treehole listening on http://{}", app.local_addr());
    app.run_until(super::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
