//! Running projections inside this process: the live projectors and on-demand rebuilds.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use projections::runner::{self, ProjectionError};
use projections::{EventSource, Generation, Projection, ProjectionHub, ReadModelStore};
use tokio::task::JoinHandle;

use crate::background::supervisor::Supervisor;

/// The projections of this process and what they read from and write to.
#[derive(Clone)]
pub struct Projectors {
    all: Vec<Arc<dyn Projection>>,
    source: Arc<dyn EventSource>,
    store: Arc<dyn ReadModelStore>,
    hub: ProjectionHub,
    rebuilding: Arc<Mutex<HashSet<&'static str>>>,
}

/// Which projections a process runs: `all`, `none`, or a comma-separated list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Only(Vec<String>),
}

impl Selection {
    /// Parses `all`, `none` or `feed,comments`, refusing unknown names.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "all" => Ok(Self::All),
            "none" | "" => Ok(Self::Only(vec![])),
            list => {
                let known: Vec<&str> = projections::all().iter().map(|p| p.name()).collect();
                let names: Vec<String> = list.split(',').map(|n| n.trim().to_owned()).collect();
                match names.iter().find(|n| !known.contains(&n.as_str())) {
                    Some(bad) => Err(format!(
                        "no projection is named {bad:?} (known: {})",
                        known.join(", ")
                    )),
                    None => Ok(Self::Only(names)),
                }
            }
        }
    }

    pub fn includes(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.iter().any(|n| n == name),
        }
    }
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

    /// Starts a live projector for each projection `selection` names, and an observer of the
    /// checkpoints of the others (which worker processes run), as loops of `loops` named
    /// `projector <name>` and `observer <name>`. They stop by being aborted: their batches are
    /// transactions.
    pub fn spawn(&self, selection: &Selection, loops: &Supervisor) {
        for p in &self.all {
            let (p, source, store, hub) = (
                p.clone(),
                self.source.clone(),
                self.store.clone(),
                self.hub.clone(),
            );
            if selection.includes(p.name()) {
                loops.spawn(format!("projector {}", p.name()), |_| async move {
                    runner::run(p, source, store, hub).await;
                    Ok(())
                });
            } else {
                loops.spawn(format!("observer {}", p.name()), |_| async move {
                    runner::observe(p, source, store, hub).await;
                    Ok(())
                });
            }
        }
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

/// Where a worker process reads events from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// The log of record.
    Store,
    /// The Kafka topic the relay fills (one consumer group per projection).
    Kafka,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    ReadModels(#[from] projections::ReadModelError),
    #[error(transparent)]
    Kafka(#[from] infra::kafka::KafkaError),
    #[error("--source kafka needs Kafka brokers: set TREEHOLE_KAFKA_BROKERS or --kafka-brokers")]
    NoBrokers,
}

/// Starts the selected projectors of a worker process (`treehole project`) on `stores`,
/// following the store or the Kafka topic. Generations are always built from the store.
pub async fn spawn_workers(
    stores: &crate::cli::startup::Stores,
    selection: &Selection,
    kind: SourceKind,
    settings: &crate::cli::config::Settings,
    loops: &Supervisor,
) -> Result<(), WorkerError> {
    let all = projections::all();
    let log: Arc<dyn EventSource> =
        Arc::new(infra::source::StoreSource::new(stores.events.clone()));
    let search = crate::cli::startup::open_search(settings).await?;
    let store = crate::cli::startup::projection_store(stores.read_models.clone(), search);
    runner::prepare(&all, store.as_ref()).await?;
    let chosen: Vec<Arc<dyn Projection>> = all
        .into_iter()
        .filter(|p| selection.includes(p.name()))
        .collect();
    let hub = ProjectionHub::new(&chosen, stores.events.watch());
    for p in chosen {
        let source: Arc<dyn EventSource> = match kind {
            SourceKind::Store => log.clone(),
            SourceKind::Kafka => {
                let kafka = settings.kafka.settings().ok_or(WorkerError::NoBrokers)?;
                let topic: Arc<dyn EventSource> =
                    Arc::new(infra::kafka::KafkaSource::connect(&kafka, p.name()).await?);
                // The topic carries sealed values: open them as the store does.
                Arc::new(infra::source::OpeningSource::new(
                    topic,
                    stores.keys.clone(),
                ))
            }
        };
        let (log, store, hub) = (log.clone(), store.clone(), hub.clone());
        loops.spawn(format!("projector {}", p.name()), |_| async move {
            runner::run_from(p, source, log, store, hub).await;
            Ok(())
        });
    }
    Ok(())
}
