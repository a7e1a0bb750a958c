//! Running projections in-process and tracking how far each has got.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::Position;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{Instrument, info_span};

use crate::{
    Decoded, EventSource, Generation, Projection, Promotion, ReadModelError, ReadModelStore,
};

/// Events handed to one transaction of a projector.
/// The most events a batch reads, unless the projection asks for more ([`Projection::batch`]).
pub const BATCH: usize = 500;

/// How long one batch's transaction should hold the store. On SQLite every projection's
/// transactions take turns on one writer, and a batch can fan out: a comment on a post a
/// thousand people follow writes a thousand notifications, so 500 such comments held the
/// writer for seconds while every other read model waited. A batch that took longer than this
/// makes the next one smaller ([`Sizing`]); the wait for one's turn does not count.
pub const TURN: Duration = Duration::from_millis(100);

/// How many events a following projector reads next, where projections take turns on one
/// writer ([`ReadModelStore::held`]): the projection's own batch size while its batches are
/// quick, fewer while they hold the writer longer than a [`TURN`], in proportion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sizing {
    limit: usize,
    most: usize,
}

impl Sizing {
    fn new(most: usize) -> Self {
        let most = most.max(1);
        Self { limit: most, most }
    }

    /// After a batch of `events` applied in `took`: a slow one shrinks the limit to what
    /// would have fitted in a turn; a quick full one doubles it, up to the projection's own.
    fn after(&mut self, events: usize, took: Duration) {
        if took > TURN {
            let fits = events as u128 * TURN.as_nanos() / took.as_nanos();
            self.limit = usize::try_from(fits).unwrap_or(1).clamp(1, self.most);
        } else if events >= self.limit && took < TURN / 2 {
            self.limit = (self.limit * 2).min(self.most);
        }
    }
}

/// How long a caught-up projector waits for a notification before looking at the log anyway.
const POLL: Duration = Duration::from_secs(1);
/// The first wait after a failed batch; it doubles with each failure in a row, up to 30 s.
const FIRST_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionState {
    /// Starting or catching up with the log.
    Starting,
    /// Applying events as they arrive.
    Live,
    /// Live, while a new generation is being built beside it.
    Rebuilding,
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
    /// The generation queries read.
    pub generation: u32,
    /// Progress of a rebuild under way in this process, if any.
    pub rebuild: Option<RebuildProgress>,
    #[serde(skip)]
    caught_up_at: Option<Instant>,
}

/// How far a rebuild has got.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildProgress {
    pub generation: u32,
    pub position: Position,
    /// The log's head when the last batch was read.
    pub target: Position,
    pub started_at: DateTime<Utc>,
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
            generation: 0,
            rebuild: None,
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
                if st.rebuild.is_some() && st.state != ProjectionState::Failed {
                    st.state = ProjectionState::Rebuilding;
                }
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

    /// Position and live generation of each named projection, in the order named: what a read
    /// of their rows depends on (a projector reports after each commit, a promotion changes
    /// the generation). A name with no status counts as position 0, generation 0.
    pub fn stamp(&self, names: &[&str]) -> Vec<(Position, u32)> {
        names
            .iter()
            .map(|n| {
                self.statuses.get(n).map_or((0, 0), |s| {
                    let s = s.borrow();
                    (s.position, s.generation)
                })
            })
            .collect()
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

    /// The named projection's status as it changes.
    pub fn watch(&self, name: &str) -> Option<watch::Receiver<ProjectionStatus>> {
        self.statuses.get(name).map(watch::Sender::subscribe)
    }

    fn sender(&self, name: &str) -> Option<&watch::Sender<ProjectionStatus>> {
        self.statuses.get(name)
    }

    fn report(&self, name: &str, update: impl FnOnce(&mut ProjectionStatus)) {
        if let Some(s) = self.sender(name) {
            s.send_modify(|st| {
                update(st);
                st.updated_at = Utc::now();
            });
        }
    }
}

/// Why a batch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// An event this code cannot decode: the projection must stop until the code is fixed.
    #[error("poison event at position {position}: {reason}")]
    Poison { position: Position, reason: String },
    #[error(transparent)]
    Store(#[from] ReadModelError),
}

/// Decodes a batch, derives its changes and applies them with the new checkpoint.
async fn apply_batch(
    projection: &dyn Projection,
    store: &dyn ReadModelStore,
    generation: u32,
    from: Position,
    batch: &[Arc<Decoded>],
) -> Result<Position, ProjectionError> {
    let Some(last) = batch.last().map(|e| e.position()) else {
        return Err(ReadModelError::Backend("empty batch".into()).into());
    };
    let mut changes = Vec::with_capacity(batch.len());
    for read in batch {
        let event = read
            .event
            .as_ref()
            .map_err(|reason| ProjectionError::Poison {
                position: read.position(),
                reason: reason.clone(),
            })?;
        changes.extend(projection.apply(&read.envelope, event));
    }
    let changes = crate::change::coalesce(changes);
    let name = projection.name();
    let span = info_span!(
        "projection_batch",
        projection = name,
        generation,
        from = batch[0].position(),
        to = last,
        events = batch.len()
    );
    store
        .apply(name, generation, &changes, from, last)
        .instrument(span)
        .await?;
    Ok(last)
}

/// Applies the log to one projection, forever: attach to the live generation (building the
/// first one, or rebuilding if the code's version changed), catch up from its checkpoint, then
/// follow the head. When a rebuild elsewhere replaces the generation, re-attach to the new one.
/// Store failures are retried with backoff; an event that cannot be decoded stops this
/// projection (state `failed`, error visible) without touching the others.
pub async fn run(
    projection: Arc<dyn Projection>,
    source: Arc<dyn EventSource>,
    store: Arc<dyn ReadModelStore>,
    hub: ProjectionHub,
) {
    run_from(projection, source.clone(), source, store, hub).await
}

/// [`run`], following `source` (e.g. the Kafka topic) but building any generation from scratch
/// (first build, or a rebuild after a code change) from `log`, the log of record.
pub async fn run_from(
    projection: Arc<dyn Projection>,
    source: Arc<dyn EventSource>,
    log: Arc<dyn EventSource>,
    store: Arc<dyn ReadModelStore>,
    hub: ProjectionHub,
) {
    let name = projection.name();
    let mut retry = FIRST_RETRY;
    loop {
        let generation = match attach(&projection, &log, &store, &hub).await {
            Ok(g) => g,
            Err(ProjectionError::Poison { position, reason }) => {
                return fail(&hub, name, position, &reason);
            }
            Err(ProjectionError::Store(e)) => {
                transient(&hub, name, &e, &mut retry).await;
                continue;
            }
        };
        hub.report(name, |s| {
            s.generation = generation.number;
            s.position = s.position.max(generation.position);
        });
        match follow(
            &*projection,
            &*source,
            &*store,
            &hub,
            generation,
            &mut retry,
        )
        .await
        {
            Ok(()) => return,
            Err(ProjectionError::Poison { position, reason }) => {
                return fail(&hub, name, position, &reason);
            }
            Err(ProjectionError::Store(ReadModelError::Superseded { .. })) => {
                tracing::info!(
                    projection = name,
                    "generation replaced by a rebuild; re-attaching"
                );
            }
            // Another projector of the same model (a second process on one database) applied
            // these events first: not a failure, and nothing to wait for. Re-attach at once
            // from the checkpoint it left. (Retried with backoff like a failure, a projector
            // that kept losing the race fell seconds behind, and `?after=` waits timed out.)
            Err(ProjectionError::Store(ReadModelError::Moved { position, .. })) => {
                tracing::debug!(
                    projection = name,
                    position,
                    "another projector applied these events first; re-attaching"
                );
            }
            Err(ProjectionError::Store(e)) => transient(&hub, name, &e, &mut retry).await,
        }
    }
}

/// Tracks a projection that another process runs (`treehole project`): reads its live
/// checkpoint whenever the log moves (and every [`POLL`] anyway) so that read-your-writes waits
/// in this process still complete.
pub async fn observe(
    projection: Arc<dyn Projection>,
    source: Arc<dyn EventSource>,
    store: Arc<dyn ReadModelStore>,
    hub: ProjectionHub,
) {
    let name = projection.name();
    let mut head = source.watch();
    loop {
        match store.live(name).await {
            Ok(Some(g)) => hub.report(name, |s| {
                s.generation = g.number;
                s.position = g.position;
                s.state = ProjectionState::Live;
                s.last_error = None;
                if g.position >= *head.borrow() {
                    s.caught_up_at = Some(Instant::now());
                }
            }),
            Ok(None) => {}
            Err(e) => hub.report(name, |s| s.last_error = Some(e.to_string())),
        }
        // A short poll: the worker's progress is announced by no notification of its own.
        let _ = tokio::time::timeout(Duration::from_millis(50), head.changed()).await;
    }
}

/// Gives every projection that was never built an empty live generation, so queries find
/// their tables from the first request on (the projectors then fill them).
pub async fn prepare(
    projections: &[Arc<dyn Projection>],
    store: &dyn ReadModelStore,
) -> Result<(), ReadModelError> {
    for p in projections {
        if store.live(p.name()).await?.is_none() {
            let g = store.create_generation(p.name(), p.version()).await?;
            store.promote(p.name(), g.number).await?;
        }
    }
    Ok(())
}

/// The live generation to follow, created or rebuilt first if needed.
async fn attach(
    projection: &Arc<dyn Projection>,
    source: &Arc<dyn EventSource>,
    store: &Arc<dyn ReadModelStore>,
    hub: &ProjectionHub,
) -> Result<Generation, ProjectionError> {
    let (name, version) = (projection.name(), projection.version());
    loop {
        match store.live(name).await? {
            Some(g) if g.version == version => return Ok(g),
            Some(old) => {
                tracing::info!(
                    projection = name,
                    from = old.version,
                    to = version,
                    "projection code changed; rebuilding beside the live model"
                );
                rebuild(
                    projection.clone(),
                    source.clone(),
                    store.clone(),
                    Some(hub.clone()),
                    &|_, _| {},
                )
                .await?;
            }
            None => {
                // Nothing was ever built: an empty first generation can go live at once.
                let g = store.create_generation(name, version).await?;
                store.promote(name, g.number).await?;
            }
        }
    }
}

/// Follows the log into `generation` until the source closes or an error stops it.
async fn follow(
    projection: &dyn Projection,
    source: &dyn EventSource,
    store: &dyn ReadModelStore,
    hub: &ProjectionHub,
    generation: Generation,
    retry: &mut Duration,
) -> Result<(), ProjectionError> {
    let name = projection.name();
    let mut head = source.watch();
    let mut position = generation.position;
    let mut sizing = Sizing::new(projection.batch());
    loop {
        head.borrow_and_update();
        let started = Instant::now();
        let batch = source.read_after(position, sizing.limit).await?;
        if batch.is_empty() {
            hub.report(name, |s| {
                s.state = ProjectionState::Live;
                s.caught_up_at = Some(Instant::now());
            });
            // Another process may append to the same log without notifying this one, so
            // look again after a while even without a notification.
            if let Ok(Err(_)) = tokio::time::timeout(POLL, head.changed()).await {
                return Ok(());
            }
            continue;
        }
        position = apply_batch(projection, store, generation.number, position, &batch).await?;
        let full = batch.len() >= sizing.limit;
        if let Some(held) = store.held(name) {
            sizing.after(batch.len(), held);
        }
        // A batch went through: the next failure is retried soon again, not after the
        // longest wait an earlier outage reached.
        *retry = FIRST_RETRY;
        let rate = batch.len() as f64 / started.elapsed().as_secs_f64().max(1e-6);
        let at_head = position >= *head.borrow();
        hub.report(name, |s| {
            s.position = position;
            s.events_per_second = rate;
            s.last_error = None;
            if at_head {
                s.caught_up_at = Some(Instant::now());
            }
        });
        // A full batch means the projector is behind: it reads on at once. Otherwise a paced
        // projection lets events gather until its next batch is due.
        let pace = projection.pace(batch.len()).max(store.pace(name));
        if !full && !pace.is_zero() {
            tokio::time::sleep_until((started + pace).into()).await;
        }
    }
}

/// The fewest events a rebuild reads at a time (a projection may ask for more): a rebuild reads
/// the whole log, and each batch is a transaction per projection with its checkpoint.
pub const REBUILD_BATCH: usize = 4096;

/// Builds a new generation of `projection` beside the live one from the whole log, then
/// promotes it in one atomic switch once it is not behind the live one. Queries keep reading
/// the old generation until that switch and never see a half-built model. `progress` is called
/// after every batch with the position reached and the log's head.
pub async fn rebuild(
    projection: Arc<dyn Projection>,
    source: Arc<dyn EventSource>,
    store: Arc<dyn ReadModelStore>,
    hub: Option<ProjectionHub>,
    progress: &(dyn Fn(Position, Position) + Send + Sync),
) -> Result<Generation, ProjectionError> {
    let mut built = rebuild_together(&[projection], source, store, hub, &|_, position, target| {
        progress(position, target)
    })
    .await?;
    built
        .pop()
        .map(|(_, generation)| generation)
        .ok_or_else(|| ReadModelError::Backend("a rebuild built nothing".into()).into())
}

/// [`rebuild`] for several projections in one pass over the log: each batch is read once (the
/// next one is read while this one is applied) and applied to every projection's new
/// generation at once, each in its own transaction. Each is promoted as soon as it has caught
/// up. `progress` is called after every batch with the projection's name, the position reached
/// and the log's head. Returns the generations promoted, in the order given; the first error
/// ends the whole rebuild (the generations not yet promoted stay unpromoted and are replaced by
/// the next rebuild).
pub async fn rebuild_together(
    projections: &[Arc<dyn Projection>],
    source: Arc<dyn EventSource>,
    store: Arc<dyn ReadModelStore>,
    hub: Option<ProjectionHub>,
    progress: &(dyn Fn(&'static str, Position, Position) + Send + Sync),
) -> Result<Vec<(&'static str, Generation)>, ProjectionError> {
    if projections.is_empty() {
        return Ok(Vec::new());
    }
    let started_at = Utc::now();
    let mut building = Vec::with_capacity(projections.len());
    for projection in projections {
        let generation = store
            .create_generation(projection.name(), projection.version())
            .await?;
        tracing::info!(
            projection = projection.name(),
            generation = generation.number,
            "rebuild started"
        );
        building.push((projection.clone(), generation));
    }
    let report = |name: &'static str, number: u32, position: Position, target: Position| {
        if let Some(hub) = &hub {
            hub.report(name, |s| {
                s.rebuild = Some(RebuildProgress {
                    generation: number,
                    position,
                    target,
                    started_at,
                });
            });
        }
        progress(name, position, target);
    };
    let limit = projections
        .iter()
        .map(|p| p.batch())
        .fold(REBUILD_BATCH, usize::max);
    let read = |after: Position| {
        let source = source.clone();
        tokio::spawn(async move {
            let target = *source.watch().borrow();
            source
                .read_after(after, limit)
                .await
                .map(|batch| (target, batch))
        })
    };
    let mut done: Vec<(&'static str, Generation)> = Vec::with_capacity(projections.len());
    let result = async {
        let mut position = 0;
        let mut next = Some(read(position));
        while let Some(reading) = next.take() {
            let (target, batch) = reading
                .await
                .map_err(|e| ReadModelError::Backend(format!("a read of the log failed: {e}")))??;
            let Some(last) = batch.last().map(|e| e.position()) else {
                // At the head: promote each projection that has caught up with its live one.
                // One that fails stays in `building`, so that its status reports the failure.
                let mut behind = Vec::with_capacity(building.len());
                let mut failed = None;
                for (projection, generation) in std::mem::take(&mut building) {
                    if failed.is_some() {
                        behind.push((projection, generation));
                        continue;
                    }
                    match store.promote(projection.name(), generation.number).await {
                        Ok(Promotion::Done) => done.push((
                            projection.name(),
                            Generation {
                                position,
                                ..generation
                            },
                        )),
                        Ok(Promotion::Behind { .. }) => behind.push((projection, generation)),
                        Err(e) => {
                            failed = Some(e);
                            behind.push((projection, generation));
                        }
                    }
                }
                building = behind;
                if let Some(e) = failed {
                    return Err(e.into());
                }
                if !building.is_empty() {
                    // A live projector applied events this read did not see yet: read on.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    next = Some(read(position));
                }
                continue;
            };
            next = Some(read(last));
            // Each projection derives and writes its batch on a task of its own: deriving is
            // CPU work, and one projection's can run while another waits on its database.
            let batch = Arc::new(batch);
            let applying: Vec<_> = building
                .iter()
                .map(|(p, g)| {
                    let (p, store, batch, number) =
                        (p.clone(), store.clone(), batch.clone(), g.number);
                    tokio::spawn(async move {
                        apply_batch(&*p, &*store, number, position, &batch).await
                    })
                })
                .collect();
            for applied in futures::future::join_all(applying).await {
                applied.map_err(|e| {
                    ReadModelError::Backend(format!("a rebuild's batch failed: {e}"))
                })??;
            }
            position = last;
            for (projection, generation) in &building {
                report(
                    projection.name(),
                    generation.number,
                    position,
                    target.max(position),
                );
            }
        }
        Ok::<_, ProjectionError>(())
    }
    .await;
    if let Some(hub) = &hub {
        for (name, generation) in &done {
            // Queries read the new generation from now on, even before the live projector
            // notices (on its next batch) that its generation was replaced.
            hub.report(name, |s| {
                s.rebuild = None;
                s.generation = generation.number;
                s.position = s.position.max(generation.position);
            });
        }
        if let Err(e) = &result {
            for (projection, _) in &building {
                hub.report(projection.name(), |s| {
                    s.rebuild = None;
                    s.last_error = Some(format!("rebuild failed: {e}"));
                });
            }
        }
    }
    for (name, generation) in &done {
        tracing::info!(
            projection = name,
            generation = generation.number,
            position = generation.position,
            "rebuild promoted"
        );
    }
    match result {
        Ok(()) => {
            // In the order given.
            done.sort_by_key(|(name, _)| projections.iter().position(|p| p.name() == *name));
            Ok(done)
        }
        Err(e) => {
            for (projection, _) in &building {
                tracing::error!(projection = projection.name(), error = %e, "rebuild failed");
            }
            Err(e)
        }
    }
}

fn fail(hub: &ProjectionHub, name: &str, position: Position, reason: &str) {
    tracing::error!(projection = name, position, error = %reason, "poison event; projection stopped");
    hub.report(name, |s| {
        s.state = ProjectionState::Failed;
        s.last_error = Some(format!("position {position}: {reason}"));
    });
}

async fn transient(hub: &ProjectionHub, name: &str, error: &ReadModelError, retry: &mut Duration) {
    tracing::warn!(projection = name, error = %error, "projection batch failed; retrying");
    hub.report(name, |s| s.last_error = Some(error.to_string()));
    tokio::time::sleep(*retry).await;
    *retry = (*retry * 2).min(Duration::from_secs(30));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_batch_shrinks_the_next_to_what_fits_in_a_turn() {
        let mut s = Sizing::new(500);
        // 500 events in 4 s: 12.5 would have fitted in 100 ms.
        s.after(500, Duration::from_secs(4));
        assert_eq!(s.limit, 12);
        // Never below one event, however slow.
        s.after(12, Duration::from_secs(60));
        assert_eq!(s.limit, 1);
    }

    #[test]
    fn quick_full_batches_grow_back_to_the_projections_own_size_and_no_further() {
        let mut s = Sizing::new(500);
        s.after(500, Duration::from_secs(1));
        assert_eq!(s.limit, 50);
        let quick = Duration::from_millis(10);
        // A batch that was not full says nothing about a bigger one.
        s.after(7, quick);
        assert_eq!(s.limit, 50);
        let mut steps = 0;
        while s.limit < 500 {
            s.after(s.limit, quick);
            steps += 1;
        }
        assert_eq!((s.limit, steps), (500, 4));
        s.after(500, quick);
        assert_eq!(s.limit, 500);
        // A batch between half a turn and a turn keeps the size.
        s.after(500, Duration::from_millis(80));
        assert_eq!(s.limit, 500);
    }
}
