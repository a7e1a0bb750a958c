//! Running projections inside this process: the live projectors and on-demand rebuilds.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use projections::runner::{self, ProjectionError};
use projections::{EventSource, Generation, Projection, ProjectionHub, ReadModelStore};
use tokio::task::JoinHandle;

/// The projections of this process and what they read from and write to.
#[derive(Clone)]
pub struct Projectors {
    all: Vec<Arc<dyn Projection>>,
    source: Arc<dyn EventSource>,
    store: Arc<dyn ReadModelStore>,
    hub: ProjectionHub,
    rebuilding: Arc<Mutex<HashSet<&'static str>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildRefused {
    #[error("no projection is named {0:?}")]
    Unknown(String),
    #[error("projection {0} is already being rebuilt")]
    AlreadyRunning(&'static str),
}

impl Projectors {
    pub fn new(
        all: Vec<Arc<dyn Projection>>,
        source: Arc<dyn EventSource>,
        store: Arc<dyn ReadModelStore>,
        hub: ProjectionHub,
    ) -> Self {
        Self {
            all,
            source,
            store,
            hub,
            rebuilding: Arc::default(),
        }
    }

    pub fn find(&self, name: &str) -> Option<Arc<dyn Projection>> {
        self.all.iter().find(|p| p.name() == name).cloned()
    }

    /// Starts one live projector per projection.
    pub fn spawn_live(&self) -> Vec<JoinHandle<()>> {
        self.all
            .iter()
            .map(|p| {
                tokio::spawn(runner::run(
                    p.clone(),
                    self.source.clone(),
                    self.store.clone(),
                    self.hub.clone(),
                ))
            })
            .collect()
    }

    /// Starts a rebuild of `name` in the background (progress shows in the hub's status).
    pub fn spawn_rebuild(
        &self,
        name: &str,
    ) -> Result<JoinHandle<Result<Generation, ProjectionError>>, RebuildRefused> {
        let projection = self
            .find(name)
            .ok_or_else(|| RebuildRefused::Unknown(name.to_owned()))?;
        let key = projection.name();
        if !self
            .rebuilding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key)
        {
            return Err(RebuildRefused::AlreadyRunning(key));
        }
        let this = self.clone();
        Ok(tokio::spawn(async move {
            let result = runner::rebuild(
                projection,
                this.source.clone(),
                this.store.clone(),
                Some(this.hub.clone()),
                &|_, _| {},
            )
            .await;
            this.rebuilding
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            result
        }))
    }
}
