//! The command handler: load a stream, let the aggregate decide, append with the expected
//! version, retry on conflict.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{
    Aggregate, DecodeError, DomainEvent, Envelope, Metadata, NewEvent, Position, StreamId,
};
use rand::Rng;
use tracing::instrument;
use uuid::Uuid;

use crate::batch::{Answer, Batch, Queues};
use crate::cache::StateCache;
use crate::event_store::{
    Committed, EventStore, ExpectedVersion, IdempotencyKey, StoreError, StreamWrite,
};
use crate::locks::StreamLocks;

/// Everything about a command that is not the command itself.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The time the command is decided at; also each event's `occurred_at`.
    pub at: DateTime<Utc>,
    pub metadata: Metadata,
    pub idempotency: Option<IdempotencyKey>,
}

impl CommandContext {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            at,
            metadata: Metadata::default(),
            idempotency: None,
        }
    }
}

/// One event as committed.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<E> {
    pub position: Position,
    pub version: u64,
    pub event: E,
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<E> {
    pub events: Vec<Recorded<E>>,
    /// The position of the command's last event (what `?after=` waits for).
    pub position: Position,
    /// True when an earlier identical request (same idempotency key) is being answered again.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused the command: a user error.
    #[error(transparent)]
    Rejected(E),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Conflicts persisted through every retry.
    #[error("too much contention on stream {0}; try again")]
    Contention(StreamId),
}

/// Bounded retries with full jitter on version conflicts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            base: Duration::from_millis(2),
            cap: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// Sleeps a random time in `[0, min(cap, base * 2^attempt)]`.
    pub async fn backoff(&self, attempt: u32) {
        let ceiling = self.base.saturating_mul(1 << attempt.min(16)).min(self.cap);
        let wait = rand::thread_rng().gen_range(Duration::ZERO..=ceiling);
        tokio::time::sleep(wait).await;
    }
}

/// A stream's state as folded from its events.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: A,
    /// The stream's last version; 0 if it does not exist.
    pub version: u64,
}

impl<A> Loaded<A> {
    pub fn expected(&self) -> ExpectedVersion {
        ExpectedVersion::from_version(self.version)
    }
}

/// Runs commands against aggregates stored in an [`EventStore`].
pub struct CommandHandler {
    store: Arc<dyn EventStore>,
    locks: StreamLocks,
    retry: RetryPolicy,
    cache: Arc<StateCache>,
    queues: Queues,
}

impl CommandHandler {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            locks: StreamLocks::default(),
            retry: RetryPolicy::default(),
            cache: Arc::new(StateCache::new(10_000)),
            queues: Queues::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Waits for exclusive use of `stream` within this process, the lock the handler's own
    /// commands on it take: for use cases that decide and append across several streams
    /// themselves (sessions), so that concurrent ones in this process queue instead of
    /// conflicting. The locks are striped and not reentrant: while holding one, run no command
    /// through the handler and take no other.
    pub async fn lock(&self, stream: &StreamId) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks.lock(stream).await
    }

    /// Folds a stream into its aggregate.
    pub async fn load<A: Aggregate>(&self, stream: &StreamId) -> Result<Loaded<A>, LoadError> {
        let envelopes = self.store.read_stream(stream, 1).await?;
        let mut state = A::default();
        let mut version = 0;
        for env in &envelopes {
            state.evolve(&A::Event::decode(&env.event_type, env.schema, &env.data)?);
            version = env.version;
        }
        Ok(Loaded { state, version })
    }

    /// Like [`Self::load`], starting from the cached state and reading only newer events (the
    /// store is still asked, so the answer is as current as a full load).
    pub async fn load_cached<A: Aggregate>(
        &self,
        stream: &StreamId,
    ) -> Result<Loaded<A>, LoadError> {
        let Some(mut loaded) = self.cache.get::<A>(stream) else {
            let loaded = self.load::<A>(stream).await?;
            self.cache.put(stream, loaded.clone());
            return Ok(loaded);
        };
        let newer = self.store.read_stream(stream, loaded.version + 1).await?;
        if newer.is_empty() {
            return Ok(loaded);
        }
        for env in &newer {
            let event = A::Event::decode(&env.event_type, env.schema, &env.data)?;
            loaded.state.evolve(&event);
            loaded.version = env.version;
        }
        self.cache.put(stream, loaded.clone());
        Ok(loaded)
    }

    /// Decides `command` against `stream` and appends the result, retrying on version
    /// conflicts. Commands for one stream queue inside this process and are decided and
    /// appended in batches (see [`crate::batch`]); one with an idempotency key alone.
    ///
    /// Its span is at `debug`, like the batch's: one per command, and the request's span
    /// around it already names the request in any warning.
    #[instrument(level = "debug", skip_all, fields(stream = %stream))]
    pub async fn execute<A>(
        &self,
        stream: &StreamId,
        command: &A::Command,
        services: &A::Services,
        ctx: &CommandContext,
    ) -> Answer<A>
    where
        A: Aggregate,
        A::Command: Clone + Send + Sync + 'static,
        A::Services: Clone + 'static,
    {
        if ctx.idempotency.is_some() {
            return self
                .execute_alone::<A>(stream, command, services, ctx)
                .await;
        }
        let (ticket, answer) = self.queues.push::<A>(stream, command.clone(), ctx.clone());
        let turn = self.locks.lock(stream).await;
        let batch = Batch::<A>::take(
            &self.queues,
            stream,
            services,
            &self.store,
            &self.cache,
            self.retry,
        );
        drop(ticket);
        match batch {
            Some(batch) => {
                tokio::spawn(async move {
                    batch.run().await;
                    drop(turn);
                });
            }
            // An earlier batch took this command; its answer is on the way.
            None => drop(turn),
        }
        answer.await.unwrap_or_else(|_| {
            Err(CommandError::Store(StoreError::Unavailable(
                "the command's batch ended without an answer".into(),
            )))
        })
    }

    /// Decides one command with an idempotency key and appends it on its own (the store keeps
    /// one key per append), under the stream's lock like the batches.
    #[instrument(skip_all, fields(stream = %stream, position))]
    async fn execute_alone<A: Aggregate>(
        &self,
        stream: &StreamId,
        command: &A::Command,
        services: &A::Services,
        ctx: &CommandContext,
    ) -> Result<Outcome<A::Event>, CommandError<A::Error>> {
        if let Some(done) = self.replay_if_seen::<A::Event>(ctx).await? {
            return Ok(done);
        }
        let _queue = self.locks.lock(stream).await;
        for attempt in 0..self.retry.max_attempts {
            let loaded = self
                .load_cached::<A>(stream)
                .await
                .map_err(LoadError::into_command)?;
            let events = loaded
                .state
                .decide(command, services)
                .map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(Outcome {
                    events: vec![],
                    position: 0,
                    replayed: false,
                });
            }
            let write = StreamWrite {
                stream: stream.clone(),
                expected: loaded.expected(),
                events: events.iter().map(|e| to_new_event(e, ctx)).collect(),
            };
            let appended = self
                .try_append(stream, loaded, events, vec![write], ctx, attempt)
                .await?;
            if let Some(outcome) = appended {
                return Ok(outcome);
            }
        }
        Err(self.contention(stream))
    }

    /// Like [`Self::execute`], for a decision that also rests on the state of another stream,
    /// `guard` (a task claim rests on its worker not being revoked).
    ///
    /// The command is built from the guard's current state, and the append carries the guard's
    /// version as an expectation of a write without events: the guard stream is not written,
    /// but if anything was appended to it between the read and the append (a revocation), the
    /// whole append is a version conflict, and the command is built and decided again on the
    /// new state. So no decision is ever committed on a stale guard, on any backend, without a
    /// lock across processes; a lagging read model cannot let it through either. The price is
    /// a retry for the rare command that races a change of its guard.
    #[instrument(skip_all, fields(stream = %stream, guard = %guard, position))]
    pub async fn execute_guarded<A: Aggregate, G: Aggregate>(
        &self,
        stream: &StreamId,
        guard: &StreamId,
        command: impl Fn(&G) -> A::Command,
        services: &A::Services,
        ctx: &CommandContext,
    ) -> Result<Outcome<A::Event>, CommandError<A::Error>> {
        if let Some(done) = self.replay_if_seen::<A::Event>(ctx).await? {
            return Ok(done);
        }
        let _queue = self.locks.lock(stream).await;
        for attempt in 0..self.retry.max_attempts {
            let guarded = self.load_cached::<G>(guard).await?;
            let loaded = self.load_cached::<A>(stream).await?;
            let events = loaded
                .state
                .decide(&command(&guarded.state), services)
                .map_err(CommandError::Rejected)?;
            if events.is_empty() {
                return Ok(Outcome {
                    events: vec![],
                    position: 0,
                    replayed: false,
                });
            }
            let writes = vec![
                StreamWrite {
                    stream: stream.clone(),
                    expected: loaded.expected(),
                    events: events.iter().map(|e| to_new_event(e, ctx)).collect(),
                },
                StreamWrite {
                    stream: guard.clone(),
                    expected: guarded.expected(),
                    events: vec![],
                },
            ];
            let appended = self
                .try_append(stream, loaded, events, writes, ctx, attempt)
                .await?;
            if let Some(outcome) = appended {
                return Ok(outcome);
            }
        }
        Err(self.contention(stream))
    }

    /// Appends `writes`, whose first carries `events` on `stream` as decided on `loaded`: the
    /// command's outcome (a replay's too), or `None` after a version conflict, counted and
    /// waited out, so that the caller decides again on the newer state.
    async fn try_append<A: Aggregate>(
        &self,
        stream: &StreamId,
        loaded: Loaded<A>,
        events: Vec<A::Event>,
        writes: Vec<StreamWrite>,
        ctx: &CommandContext,
        attempt: u32,
    ) -> Result<Option<Outcome<A::Event>>, CommandError<A::Error>> {
        match self
            .store
            .append_many(writes, ctx.idempotency.clone())
            .await
        {
            Ok(committed) if committed.replayed => {
                Ok(Some(self.replay::<A::Event>(&committed).await?))
            }
            Ok(committed) => Ok(Some(self.recorded(stream, loaded, events, &committed))),
            Err(StoreError::Conflict { .. }) => {
                tracing::debug!(attempt, "version conflict; retrying");
                metrics::counter!("treehole_command_conflicts_total").increment(1);
                self.retry.backoff(attempt).await;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Conflicts persisted through every retry.
    fn contention<E: std::error::Error + 'static>(&self, stream: &StreamId) -> CommandError<E> {
        metrics::counter!("treehole_command_contention_total").increment(1);
        CommandError::Contention(stream.clone())
    }

    /// The outcome of a commit whose first write is `events` on `stream`, whose state before
    /// them was `loaded`; the new state goes into the cache.
    fn recorded<A: Aggregate>(
        &self,
        stream: &StreamId,
        loaded: Loaded<A>,
        events: Vec<A::Event>,
        committed: &Committed,
    ) -> Outcome<A::Event> {
        let position = committed.last_position();
        tracing::Span::current().record("position", position);
        let first = &committed.results[0];
        let mut next = loaded;
        for event in &events {
            next.state.evolve(event);
        }
        next.version = first.last_version;
        self.cache.put(stream, next);
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| Recorded {
                position: first.first_position + i as u64,
                version: first.first_version + i as u64,
                event,
            })
            .collect();
        Outcome {
            events,
            position,
            replayed: false,
        }
    }

    /// Answers a request whose idempotency key was already committed, if it was.
    pub async fn replay_if_seen<E: DomainEvent>(
        &self,
        ctx: &CommandContext,
    ) -> Result<Option<Outcome<E>>, StoreError> {
        let Some(key) = &ctx.idempotency else {
            return Ok(None);
        };
        match self.store.find_idempotent(key).await? {
            Some(committed) => Ok(Some(self.replay::<E>(&committed).await.map_err(
                |e| match e {
                    LoadError::Store(s) => s,
                    LoadError::Decode(d) => StoreError::Backend(d.to_string()),
                },
            )?)),
            None => Ok(None),
        }
    }

    /// Reads back the events of an earlier commit that decode as `E` (other streams of a
    /// multi-stream batch are skipped).
    pub async fn replay<E: DomainEvent>(
        &self,
        committed: &Committed,
    ) -> Result<Outcome<E>, LoadError> {
        let mut events = Vec::new();
        for env in self.committed_envelopes(committed).await? {
            if E::TYPES.contains(&env.event_type.as_str()) {
                let event = E::decode(&env.event_type, env.schema, &env.data)?;
                events.push(Recorded {
                    position: env.position,
                    version: env.version,
                    event,
                });
            }
        }
        Ok(Outcome {
            events,
            position: committed.last_position(),
            replayed: true,
        })
    }

    /// The envelopes a commit wrote, in order.
    pub async fn committed_envelopes(
        &self,
        committed: &Committed,
    ) -> Result<Vec<Envelope>, StoreError> {
        let mut out = Vec::new();
        for r in &committed.results {
            let envs = self.store.read_stream(&r.stream, r.first_version).await?;
            out.extend(envs.into_iter().take_while(|e| e.version <= r.last_version));
        }
        Ok(out)
    }
}

/// Wraps a typed event for the store with a fresh UUIDv7 and the command's metadata.
pub fn to_new_event<E: DomainEvent>(event: &E, ctx: &CommandContext) -> NewEvent {
    NewEvent::from_domain(event, Uuid::now_v7(), ctx.at, ctx.metadata.clone())
}

/// Loading a stream failed for a technical reason.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl LoadError {
    pub fn into_command<E: std::error::Error + 'static>(self) -> CommandError<E> {
        match self {
            LoadError::Store(e) => CommandError::Store(e),
            LoadError::Decode(e) => CommandError::Decode(e),
        }
    }
}

impl<E: std::error::Error + 'static> From<LoadError> for CommandError<E> {
    fn from(e: LoadError) -> Self {
        e.into_command()
    }
}
