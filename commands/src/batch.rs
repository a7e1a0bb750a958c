//! Decisions batched per stream.
//!
//! A hot stream (a viral post) receives many commands at once. Deciding and appending them one
//! at a time would give every command its own append, and so its own fsync, while the others
//! wait on the stream's lock. Instead every command without an idempotency key joins its
//! stream's queue, and whoever next holds the stream's lock takes the whole queue as one batch:
//!
//! 1. the commands are decided in queue order, each against the state the ones before it left
//!    (so the pseudonym rule and every other invariant see them one after another);
//! 2. the events of all accepted commands are appended as one write with one expected version,
//!    so the batch shares one commit (and the store's group commit shares that with other
//!    streams' batches);
//! 3. each caller gets its own answer: its own events and positions, or its own refusal. A
//!    refused command fails alone; its neighbours still commit.
//!
//! The cached state is trusted as it is; the append's expected version judges it. A version
//! conflict (another process wrote the stream) reloads the stream's newer events and decides
//! the whole batch again, so no decision is ever committed on a state the log has moved past.
//!
//! The batch runs in a task of its own, which holds the stream's lock until every caller of
//! the batch has its answer: a caller that goes away (a dropped request) cannot abandon the
//! others' commands half-way. A command still queued when its caller goes away is withdrawn.
//!
//! Commands with an idempotency key are not batched: the store keeps one key per append, so
//! they are decided and appended alone, as before, under the same lock.

use std::any::{Any, TypeId};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use domain::{Aggregate, StreamId};
use tokio::sync::oneshot;
use tracing::instrument;

use crate::cache::StateCache;
use crate::event_store::{EventStore, StoreError, StreamWrite};
use crate::handler::{
    CommandContext, CommandError, LoadError, Loaded, Outcome, Recorded, RetryPolicy, to_new_event,
};

/// What a caller hears back.
pub type Answer<A> =
    Result<Outcome<<A as Aggregate>::Event>, CommandError<<A as Aggregate>::Error>>;

/// One caller's command, waiting for a batch.
struct Queued<A: Aggregate> {
    command: A::Command,
    ctx: CommandContext,
    reply: oneshot::Sender<Answer<A>>,
}

type Key = (StreamId, TypeId);

/// The commands waiting for one stream, each a `Queued<A>` under its ticket number.
type Waiting = HashMap<Key, VecDeque<(u64, Box<dyn Any + Send>)>>;

/// The waiting commands of every stream, by stream and aggregate type.
#[derive(Default)]
pub struct Queues {
    waiting: Mutex<Waiting>,
    tickets: AtomicU64,
}

/// A caller's place in a queue; dropping it withdraws the command if no batch has taken it.
pub struct Ticket<'a> {
    queues: &'a Queues,
    key: Key,
    number: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut waiting = self.queues.lock();
        if let Some(queue) = waiting.get_mut(&self.key) {
            queue.retain(|(n, _)| *n != self.number);
            if queue.is_empty() {
                waiting.remove(&self.key);
            }
        }
    }
}

impl Queues {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `command` for `stream`; the receiver gets its answer.
    pub fn push<A>(
        &self,
        stream: &StreamId,
        command: A::Command,
        ctx: CommandContext,
    ) -> (Ticket<'_>, oneshot::Receiver<Answer<A>>)
    where
        A: Aggregate,
        A::Command: Send + Sync + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let key = (stream.clone(), TypeId::of::<A>());
        let number = self.tickets.fetch_add(1, Ordering::Relaxed);
        let queued: Queued<A> = Queued {
            command,
            ctx,
            reply,
        };
        self.lock()
            .entry(key.clone())
            .or_default()
            .push_back((number, Box::new(queued)));
        let ticket = Ticket {
            queues: self,
            key,
            number,
        };
        (ticket, answer)
    }

    /// Everything queued for `stream`, in order, leaving its queue empty.
    fn take<A>(&self, stream: &StreamId) -> Vec<Queued<A>>
    where
        A: Aggregate,
        A::Command: Send + Sync + 'static,
    {
        let key = (stream.clone(), TypeId::of::<A>());
        let queue = self.lock().remove(&key).unwrap_or_default();
        queue
            .into_iter()
            .map(|(_, q)| {
                *q.downcast::<Queued<A>>()
                    .expect("queued under its own type")
            })
            .collect()
    }
}

/// One batch of commands for one stream, with what deciding and appending it needs.
pub struct Batch<A: Aggregate> {
    stream: StreamId,
    commands: Vec<Queued<A>>,
    services: A::Services,
    store: Arc<dyn EventStore>,
    cache: Arc<StateCache>,
    retry: RetryPolicy,
}

impl<A> Batch<A>
where
    A: Aggregate,
    A::Command: Send + Sync + 'static,
    A::Services: Clone + 'static,
{
    /// Takes everything queued for `stream`; `None` if an earlier batch took it all.
    pub fn take(
        queues: &Queues,
        stream: &StreamId,
        services: &A::Services,
        store: &Arc<dyn EventStore>,
        cache: &Arc<StateCache>,
        retry: RetryPolicy,
    ) -> Option<Self> {
        let commands = queues.take::<A>(stream);
        (!commands.is_empty()).then(|| Batch {
            stream: stream.clone(),
            commands,
            services: services.clone(),
            store: store.clone(),
            cache: cache.clone(),
            retry,
        })
    }

    /// Decides and appends the batch, retrying on version conflicts, and answers every caller.
    #[instrument(level = "debug", skip_all, fields(stream = %self.stream, commands = self.commands.len(), position))]
    pub async fn run(self) {
        let mut refresh = false;
        for attempt in 0..self.retry.max_attempts {
            let loaded = match self.load(refresh).await {
                Ok(loaded) => loaded,
                Err(e) => return self.fail_all(|| e.duplicate().into_command()),
            };
            let expected = loaded.expected();
            let version = loaded.version;
            let Decided {
                state,
                events,
                verdicts,
            } = self.decide(loaded);
            if events.is_empty() {
                // Nothing changed: the state goes back to the cache as it was.
                self.cache.put(&self.stream, Loaded { state, version });
                return self.answer(verdicts, None);
            }
            let write = StreamWrite {
                stream: self.stream.clone(),
                expected,
                events,
            };
            match self.store.append_many(vec![write], None).await {
                Ok(committed) => {
                    let first = &committed.results[0];
                    tracing::Span::current().record("position", first.last_position);
                    self.cache.put(
                        &self.stream,
                        Loaded {
                            state,
                            version: first.last_version,
                        },
                    );
                    let at = (first.first_position, first.first_version);
                    return self.answer(verdicts, Some(at));
                }
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!(attempt, "version conflict; deciding the batch again");
                    metrics::counter!("treehole_command_conflicts_total").increment(1);
                    refresh = true;
                    self.retry.backoff(attempt).await;
                }
                Err(e) => return self.fail_all(|| CommandError::Store(duplicate(&e))),
            }
        }
        metrics::counter!("treehole_command_contention_total").increment(1);
        let stream = self.stream.clone();
        self.fail_all(|| CommandError::Contention(stream.clone()))
    }

    /// The cached state as it is, taken out of the cache (the batch holds the stream, and puts
    /// back the state it decides); on a miss or after a conflict, the stream read from the
    /// store (from the cached version on, if anything is cached).
    async fn load(&self, refresh: bool) -> Result<Loaded<A>, LoadError> {
        match self.cache.take::<A>(&self.stream) {
            Some(cached) if !refresh => Ok(cached),
            cached => {
                let mut loaded = cached.unwrap_or(Loaded {
                    state: A::default(),
                    version: 0,
                });
                let newer = self
                    .store
                    .read_stream(&self.stream, loaded.version + 1)
                    .await?;
                for env in &newer {
                    let event = <A::Event as domain::DomainEvent>::decode(
                        &env.event_type,
                        env.schema,
                        &env.data,
                    )?;
                    loaded.state.evolve(&event);
                    loaded.version = env.version;
                }
                Ok(loaded)
            }
        }
    }

    /// Decides every command in order, each against the state the ones before it left.
    fn decide(&self, loaded: Loaded<A>) -> Decided<A> {
        let mut state = loaded.state;
        let mut events = Vec::new();
        let mut verdicts = Vec::with_capacity(self.commands.len());
        for queued in &self.commands {
            match state.decide(&queued.command, &self.services) {
                Ok(accepted) => {
                    for event in &accepted {
                        state.evolve(event);
                        events.push(to_new_event(event, &queued.ctx));
                    }
                    verdicts.push(Ok(accepted));
                }
                Err(refused) => verdicts.push(Err(refused)),
            }
        }
        Decided {
            state,
            events,
            verdicts,
        }
    }

    /// Tells every caller its verdict; `at` is the first position and version of the batch's
    /// events, if any were appended.
    fn answer(self, verdicts: Vec<Verdict<A>>, at: Option<(u64, u64)>) {
        let (mut position, mut version) = at.unwrap_or_default();
        for (queued, verdict) in self.commands.into_iter().zip(verdicts) {
            let answer = verdict.map_err(CommandError::Rejected).map(|events| {
                let events: Vec<Recorded<A::Event>> = events
                    .into_iter()
                    .map(|event| {
                        let recorded = Recorded {
                            position,
                            version,
                            event,
                        };
                        position += 1;
                        version += 1;
                        recorded
                    })
                    .collect();
                Outcome {
                    position: events.last().map_or(0, |r| r.position),
                    events,
                    replayed: false,
                }
            });
            // A caller that went away no longer listens; its command stands.
            let _ = queued.reply.send(answer);
        }
    }

    fn fail_all(self, error: impl Fn() -> CommandError<A::Error>) {
        for queued in self.commands {
            let _ = queued.reply.send(Err(error()));
        }
    }
}

/// A batch's decisions: the state after them, the events to append, one verdict per command.
struct Decided<A: Aggregate> {
    state: A,
    events: Vec<domain::NewEvent>,
    verdicts: Vec<Verdict<A>>,
}

/// One command's decision: its events, or why it was refused.
type Verdict<A> = Result<Vec<<A as Aggregate>::Event>, <A as Aggregate>::Error>;

/// The same store error for another caller of the batch.
fn duplicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict {
            stream,
            expected,
            actual,
        } => StoreError::Conflict {
            stream: stream.clone(),
            expected: *expected,
            actual: *actual,
        },
        StoreError::IdempotencyKeyReused => StoreError::IdempotencyKeyReused,
        StoreError::EventIdReused => StoreError::EventIdReused,
        StoreError::Invalid(s) => StoreError::Invalid(s.clone()),
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Backend(s) => StoreError::Backend(s.clone()),
    }
}

impl LoadError {
    /// The same load error for another caller of the batch.
    fn duplicate(&self) -> LoadError {
        match self {
            LoadError::Store(e) => LoadError::Store(duplicate(e)),
            LoadError::Decode(d) => LoadError::Decode(domain::DecodeError {
                event_type: d.event_type.clone(),
                schema: d.schema,
                reason: d.reason.clone(),
            }),
        }
    }
}
