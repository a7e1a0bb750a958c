//! The background loops a process runs beside its main work (projectors, the relay, the lease
//! reaper, the webhook dispatcher, the last-seen flush, the sanction sweep, the rate-limit
//! pruner), each named and watched.
//!
//! A loop is a function that runs until [`Shutdown`] is requested and returns a `Result`. The
//! supervisor spawns it and awaits its task: a loop that returns an error, panics or is
//! aborted before shutdown is logged at `error` and listed by [`Supervisor::stopped`], which
//! `/readyz` reports as 503 with the loop's name. A loop that returns `Ok` early has nothing
//! left to do (e.g. the notifier without an inbox projection) and is logged at `info`. Nothing
//! is dropped silently.
//!
//! ```no_run
//! # async fn example() {
//! use api::background::supervisor::Supervisor;
//! let loops = Supervisor::default();
//! loops.spawn("ticker", |mut shutdown| async move {
//!     loop {
//!         tokio::select! {
//!             () = shutdown.requested() => return Ok(()),
//!             () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
//!         }
//!     }
//! });
//! assert!(loops.stopped().is_empty());
//! loops.shutdown(std::time::Duration::from_secs(5)).await;
//! # }
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// Why a loop ended with an error.
pub type LoopError = Box<dyn std::error::Error + Send + Sync>;

/// A loop that stopped before shutdown, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub name: String,
    pub reason: String,
}

/// Tells a loop that the process is stopping.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown is requested (at once if it already was).
    pub async fn requested(&mut self) {
        // An error means the supervisor is gone: that is a shutdown too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// Spawns and watches named loops; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    stop: watch::Sender<bool>,
    /// The loops that stopped before shutdown; watched by [`Supervisor::first_stopped`].
    stopped: watch::Sender<Vec<Stopped>>,
    running: Mutex<Vec<Running>>,
}

struct Running {
    name: String,
    work: AbortHandle,
    watcher: JoinHandle<()>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                stop: watch::Sender::new(false),
                stopped: watch::Sender::new(Vec::new()),
                running: Mutex::default(),
            }),
        }
    }
}

impl Supervisor {
    /// Runs `work` as the loop `name` until it ends or shutdown.
    pub fn spawn<F, W>(&self, name: impl Into<String>, work: W)
    where
        W: FnOnce(Shutdown) -> F,
        F: Future<Output = Result<(), LoopError>> + Send + 'static,
    {
        let name = name.into();
        let task = tokio::spawn(work(Shutdown(self.inner.stop.subscribe())));
        let work = task.abort_handle();
        let inner = self.inner.clone();
        let watched = name.clone();
        let watcher = tokio::spawn(async move {
            let outcome = task.await;
            let stopping = *inner.stop.borrow();
            let reason = match outcome {
                Ok(Ok(())) => {
                    if !stopping {
                        tracing::info!(name = %watched, "a background loop has nothing left to do");
                    }
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) if e.is_cancelled() => {
                    if stopping {
                        return;
                    }
                    "its task was aborted".to_owned()
                }
                Err(e) => format!("it panicked: {}", panic_message(e)),
            };
            tracing::error!(name = %watched, %reason, "a background loop stopped");
            inner.stopped.send_modify(|stopped| {
                stopped.push(Stopped {
                    name: watched,
                    reason,
                });
            });
        });
        lock(&self.inner.running).push(Running {
            name,
            work,
            watcher,
        });
    }

    /// The loops that stopped before shutdown, in the order they stopped.
    pub fn stopped(&self) -> Vec<Stopped> {
        self.inner.stopped.borrow().clone()
    }

    /// The names of the loops spawned, in order.
    pub fn names(&self) -> Vec<String> {
        lock(&self.inner.running)
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// Aborts the loop `name`'s task, as a crash would end it; false if there is none. For
    /// tests and operators: the supervisor reports it stopped.
    pub fn abort(&self, name: &str) -> bool {
        let running = lock(&self.inner.running);
        let found: Vec<&Running> = running.iter().filter(|r| r.name == name).collect();
        found.iter().for_each(|r| r.work.abort());
        !found.is_empty()
    }

    /// Resolves when a loop stops before shutdown, with the first such loop.
    pub async fn first_stopped(&self) -> Stopped {
        let mut stopped = self.inner.stopped.subscribe();
        let first = match stopped.wait_for(|list| !list.is_empty()).await {
            Ok(list) => list.first().cloned(),
            // The sender lives in `inner`, which `self` holds: the wait cannot fail.
            Err(_) => None,
        };
        match first {
            Some(first) => first,
            None => std::future::pending().await,
        }
    }

    /// Requests shutdown, gives the loops `grace` to return, then aborts the rest.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stop.send_replace(true);
        let running = std::mem::take(&mut *lock(&self.inner.running));
        let deadline = tokio::time::Instant::now() + grace;
        for r in running {
            let mut watcher = r.watcher;
            if tokio::time::timeout_at(deadline, &mut watcher)
                .await
                .is_err()
            {
                tracing::debug!(name = %r.name, "a background loop was aborted at shutdown");
                r.work.abort();
                let _ = watcher.await;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn panic_message(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn settle(loops: &Supervisor, n: usize) {
        for _ in 0..200 {
            if loops.stopped().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn forever(mut shutdown: Shutdown) -> Result<(), LoopError> {
        shutdown.requested().await;
        Ok(())
    }

    #[tokio::test]
    async fn errors_panics_and_aborts_are_reported_by_name() {
        let loops = Supervisor::default();
        loops.spawn("fails", |_| async { Err("the disk is gone".into()) });
        loops.spawn("panics", |_| async {
            let lock = Arc::new(Mutex::new(()));
            let held = lock.clone();
            let _ = std::thread::spawn(move || {
                let _held = held.lock();
                panic!("poisoning the lock");
            })
            .join();
            let _guard = lock.lock().expect("a poisoned lock");
            Ok(())
        });
        loops.spawn("killed", forever);
        loops.spawn("healthy", forever);
        assert!(loops.abort("killed"));
        assert!(!loops.abort("no such loop"));
        settle(&loops, 3).await;
        let mut stopped = loops.stopped();
        stopped.sort_by(|a, b| a.name.cmp(&b.name));
        assert!(
            stopped[2]
                .reason
                .starts_with("it panicked: a poisoned lock: PoisonError"),
            "{stopped:?}"
        );
        stopped[2].reason = "it panicked".into();
        assert_eq!(
            stopped,
            [
                Stopped {
                    name: "fails".into(),
                    reason: "the disk is gone".into()
                },
                Stopped {
                    name: "killed".into(),
                    reason: "its task was aborted".into()
                },
                Stopped {
                    name: "panics".into(),
                    reason: "it panicked".into()
                },
            ]
        );
    }

    #[tokio::test]
    async fn first_stopped_wakes_when_a_loop_stops_and_not_before() {
        let loops = Supervisor::default();
        let (fail, failing) = tokio::sync::oneshot::channel::<()>();
        loops.spawn("healthy", forever);
        loops.spawn("fails later", |_| async move {
            let _ = failing.await;
            Err("the broker went away".into())
        });
        let waiting = loops.clone();
        let first = tokio::spawn(async move { waiting.first_stopped().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!first.is_finished(), "nothing has stopped yet");
        fail.send(()).expect("the loop waits");
        let first = tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .expect("woken when the loop stops")
            .expect("the waiting task");
        assert_eq!(
            first,
            Stopped {
                name: "fails later".into(),
                reason: "the broker went away".into()
            }
        );
        loops.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_loop_with_nothing_left_to_do_is_not_a_failure() {
        let loops = Supervisor::default();
        loops.spawn("done", |_| async { Ok(()) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(loops.stopped().is_empty());
    }

    #[tokio::test]
    async fn shutdown_waits_for_loops_then_aborts_the_deaf_ones() {
        let loops = Supervisor::default();
        let finished = Arc::new(Mutex::new(false));
        let seen = finished.clone();
        loops.spawn("listens", move |mut shutdown| async move {
            shutdown.requested().await;
            *lock(&seen) = true;
            Ok(())
        });
        loops.spawn("deaf", |_| async {
            std::future::pending::<()>().await;
            Ok(())
        });
        loops.shutdown(Duration::from_millis(50)).await;
        assert!(*lock(&finished), "the listening loop returned");
        assert!(loops.stopped().is_empty(), "{:?}", loops.stopped());
        assert!(loops.names().is_empty());
    }
}
