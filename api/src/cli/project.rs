//! `treehole project`: projectors as a worker process, without HTTP.

use super::config::Settings;
use super::startup::{LOOP_GRACE, Stores};
use crate::background::projector::{Selection, SourceKind, spawn_workers};
use crate::background::supervisor::Supervisor;

/// Runs the projectors `only` names, following `source`, until Ctrl-C or SIGTERM.
pub async fn run(settings: Settings, only: &str, source: SourceKind) -> anyhow::Result<()> {
    let settings = super::init(settings);
    let selection = Selection::parse(only).map_err(anyhow::Error::msg)?;
    let stores = Stores::open(&settings).await?;
    let loops = Supervisor::default();
    spawn_workers(&stores, &selection, source, &settings, &loops).await?;
    tracing::info!(only = %only, source = ?source, "projector worker running");
    // A projector that dies ends the worker with an error, for its process manager to see and
    // restart; a poisoned projection stays reported by its checkpoint.
    let died = tokio::select! {
        () = super::shutdown_signal() => None,
        stopped = loops.first_stopped() => Some(stopped),
    };
    loops.shutdown(LOOP_GRACE).await;
    stores.read_models.close().await;
    if let Some(stopped) = died {
        anyhow::bail!("{} stopped: {}", stopped.name, stopped.reason);
    }
    Ok(())
}
