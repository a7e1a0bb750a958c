//! `treehole load --events N`: fills an empty store with a synthetic forum history
//! ([`infra::synth`]: users, sessions, posts and comments in Chinese and English, pseudonyms by
//! the Post aggregate's rule, deletions, models, a worker and tasks), for benchmarks and
//! demos. The projectors of the next `serve` (or `treehole rebuild`) build the read models.

use std::path::Path;
use std::time::{Duration, Instant};

use infra::synth::History;

use crate::cli::config::{self, Settings};
use crate::cli::startup::Stores;

/// Events per `append_many` call: one transaction each.
pub const BATCH: usize = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Startup(#[from] crate::cli::startup::StartupError),
    #[error("config: {0}")]
    Config(String),
    #[error("the event store is not empty (it ends at position {0}): load fills an empty store")]
    NotEmpty(u64),
    #[error("event store: {0}")]
    Store(#[from] commands::StoreError),
}

#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub events: u64,
    pub head: u64,
    pub took: Duration,
}

/// Settings for a data directory (and a PostgreSQL URL) with nothing else of the environment's.
pub fn settings_for(data: &Path, database_url: Option<&str>) -> Result<Settings, LoadError> {
    let mut flags = vec![("data", data.display().to_string())];
    if let Some(url) = database_url {
        flags.push(("database_url", url.to_owned()));
    }
    config::load(None, &|_| None, &flags).map_err(|e| LoadError::Config(e.to_string()))
}

/// Appends `events` synthetic events to the (empty) store of `settings`; `progress` hears the
/// count written after every batch.
pub async fn load(
    settings: &Settings,
    events: u64,
    progress: impl FnMut(u64),
) -> Result<Loaded, LoadError> {
    let stores = Stores::open(settings).await?;
    let head = stores.events.head().await?;
    if head != 0 {
        stores.read_models.close().await;
        return Err(LoadError::NotEmpty(head));
    }
    let started = Instant::now();
    let written = History::new()
        .write(
            &*stores.events,
            Some(stores.keys.as_ref()),
            events,
            BATCH,
            progress,
        )
        .await;
    let head = stores.events.head().await;
    stores.read_models.close().await;
    written?;
    Ok(Loaded {
        events,
        head: head?,
        took: started.elapsed(),
    })
}
