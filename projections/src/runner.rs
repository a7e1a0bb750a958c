//! Running projections in-process and tracking how far each has got.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::{Event, Position};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{Instrument, info_span};

use crate::{EventSource, Projection, ReadModelError, ReadModelStore};

/// Events handed to one transaction of a projector.
const BATCH: usize = 500;

/// How long a caught-up projector waits for a notification before looking at the log anyway.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionState {
    /// Starting or catching up with the log.
    Starting,
    /// Applying events as they arrive.
    Live,
    /// Stopped on an event it cannot apply; see `last_error`.
    Failed,
}

/// One projection's progress, as `/admin/projections` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub version: u32,
    pub state: ProjectionState,
    pub position: Position,
    /// Events in the log beyond `position`.
    pub lag_events: u64,
    /// Seconds since the projection was last at the head (0 when it is).
    pub lag_seconds: f64,
    /// Events applied per second, averaged over the last batch.
    pub events_per_second: f64,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    caught_up_at: Option<Instant>,
}

impl ProjectionStatus {
    fn new(p: &dyn Projection) -> Self {
        Self {
            name: p.name().to_owned(),
            version: p.version(),
            state: ProjectionState::Starting,
            position: 0,
            lag_events: 0,
            lag_seconds: 0.0,
            events_per_second: 0.0,
            last_error: None,
            updated_at: Utc::now(),
            caught_up_at: Some(Instant::now()),
        }
    }
}

/// Progress of every projection, and waiting for them (read-your-writes, §5).
#[derive(Clone)]
pub struct ProjectionHub {
    statuses: Arc<BTreeMap<&'static str, watch::Sender<ProjectionStatus>>>,
    head: watch::Receiver<Position>,
}

#[derive(Debug, thiserror::Error)]
#[error("the read models have not reached position {wanted} yet (at {reached})")]
pub struct NotYet {
    pub wanted: Position,
    pub reached: Position,
}

impl ProjectionHub {
    pub fn new(projections: &[Arc<dyn Projection>], head: watch::Receiver<Position>) -> Self {
        let statuses = projections
            .iter()
            .map(|p| {
                (
                    p.name(),
                    watch::Sender::new(ProjectionStatus::new(p.as_ref())),
                )
            })
            .collect();
        Self {
            statuses: Arc::new(statuses),
            head,
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.statuses.keys().copied().collect()
    }

    /// Current status of every projection with its lag against the log's head.
    pub fn statuses(&self) -> Vec<ProjectionStatus> {
        let head = *self.head.borrow();
        self.statuses
            .values()
            .map(|s| {
                let mut st = s.borrow().clone();
                st.lag_events = head.saturating_sub(st.position);
                st.lag_seconds = match (st.lag_events, st.caught_up_at) {
                    (0, _) => 0.0,
                    (_, Some(t)) => t.elapsed().as_secs_f64(),
                    (_, None) => 0.0,
                };
                st
            })
            .collect()
    }

    /// The lowest position reached by the named projections (all of them when `names` is empty).
    pub fn position(&self, names: &[&str]) -> Position {
        self.selected(names)
            .map(|s| s.borrow().position)
            .min()
            .unwrap_or(0)
    }

    /// Waits until every named projection has applied `position`, at most `timeout`.
    pub async fn wait_for(
        &self,
        names: &[&str],
        position: Position,
        timeout: Duration,
    ) -> Result<Position, NotYet> {
        let deadline = tokio::time::Instant::now() + timeout;
        for sender in self.selected(names) {
            let mut rx = sender.subscribe();
            let reached =
                tokio::time::timeout_at(deadline, rx.wait_for(|s| s.position >= position)).await;
            if !matches!(reached, Ok(Ok(_))) {
                return Err(NotYet {
                    wanted: position,
                    reached: self.position(names),
                });
            }
        }
        Ok(self.position(names))
    }

    fn selected<'a>(
        &'a self,
        names: &'a [&str],
    ) -> impl Iterator<Item = &'a watch::Sender<ProjectionStatus>> + 'a {
        self.statuses
            .iter()
            .filter(move |(n, _)| names.is_empty() || names.contains(n))
            .map(|(_, s)| s)
    }

    fn sender(&self, name: &str) -> Option<&watch::Sender<ProjectionStatus>> {
        self.statuses.get(name)
    }
}

/// Applies the log to one projection, forever: catch up from the checkpoint, then follow the
/// head. Store failures are retried with backoff; an event that cannot be decoded stops this
/// projection (state `failed`, error visible) without touching the others.
pub async fn run(
    projection: Arc<dyn Projection>,
    source: Arc<dyn EventSource>,
    store: Arc<dyn ReadModelStore>,
    hub: ProjectionHub,
) {
    let name = projection.name();
    let version = projection.version();
    let Some(status) = hub.sender(name).cloned() else {
        tracing::error!(
            projection = name,
            "projection is not registered with the hub"
        );
        return;
    };
    let mut head = source.watch();
    let mut retry = Duration::from_millis(100);
    let mut position = loop {
        match store.checkpoint(name, version).await {
            Ok(p) => break p,
            Err(e) => {
                status.send_modify(|s| s.last_error = Some(e.to_string()));
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(30));
            }
        }
    };
    status.send_modify(|s| s.position = position);
    loop {
        head.borrow_and_update();
        let started = Instant::now();
        let batch = match source.read_after(position, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                fail_transiently(&status, &e, &mut retry).await;
                continue;
            }
        };
        let Some(last) = batch.last().map(|e| e.position) else {
            status.send_modify(|s| {
                s.state = ProjectionState::Live;
                s.caught_up_at = Some(Instant::now());
            });
            // Another process may append to the same log without notifying this one, so
            // look again after a while even without a notification.
            if let Ok(Err(_)) = tokio::time::timeout(POLL, head.changed()).await {
                return;
            }
            continue;
        };
        let mut changes = Vec::with_capacity(batch.len());
        for envelope in &batch {
            match Event::decode(envelope) {
                Ok(event) => changes.extend(projection.apply(envelope, &event)),
                Err(e) => {
                    tracing::error!(projection = name, position = envelope.position, error = %e, "poison event; projection stopped");
                    status.send_modify(|s| {
                        s.state = ProjectionState::Failed;
                        s.last_error = Some(format!("position {}: {e}", envelope.position));
                        s.updated_at = Utc::now();
                    });
                    return;
                }
            }
        }
        let span = info_span!(
            "projection_batch",
            projection = name,
            from = position + 1,
            to = last,
            events = batch.len()
        );
        match store
            .apply(name, version, &changes, last)
            .instrument(span)
            .await
        {
            Ok(()) => {
                position = last;
                retry = Duration::from_millis(100);
                let rate = batch.len() as f64 / started.elapsed().as_secs_f64().max(1e-6);
                let at_head = last >= *head.borrow();
                status.send_modify(|s| {
                    s.position = last;
                    s.events_per_second = rate;
                    s.last_error = None;
                    s.updated_at = Utc::now();
                    if at_head {
                        s.caught_up_at = Some(Instant::now());
                    }
                });
            }
            Err(e) => fail_transiently(&status, &e, &mut retry).await,
        }
    }
}

async fn fail_transiently(
    status: &watch::Sender<ProjectionStatus>,
    error: &ReadModelError,
    retry: &mut Duration,
) {
    tracing::warn!(projection = %status.borrow().name, error = %error, "projection batch failed; retrying");
    status.send_modify(|s| {
        s.last_error = Some(error.to_string());
        s.updated_at = Utc::now();
    });
    tokio::time::sleep(*retry).await;
    *retry = (*retry * 2).min(Duration::from_secs(30));
}
