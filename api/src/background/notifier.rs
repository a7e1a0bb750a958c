//! Live notifications for this process's open streams (`GET /me/notifications/stream`).
//!
//! Fed by the `inbox` projection, not by the commands: one task watches the projection's
//! position in the [`ProjectionHub`] (which a projector in this process moves, or which
//! `observe` moves when another process runs it, as on PostgreSQL with several `serve`
//! processes) and, each time it moves, reads every inbox row the move added, once for all
//! users, and hands each to the streams of its owner. A stream subscribes first and then
//! replays what it missed from the read model, dropping what it has already sent, so it sees
//! every notification once: none lost between the replay and the live rows, none twice.
//!
//! A stream that cannot keep up (its queue is full) is closed; its client reconnects with
//! `Last-Event-ID` and replays from there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use domain::{Position, UserId};
use projections::inbox::NotificationView;
use projections::{ForumQueries, ProjectionHub, inbox};
use tokio::sync::mpsc;

use crate::background::supervisor::{LoopError, Shutdown};

/// Notifications one stream may have waiting before it is closed as too slow.
const QUEUE: usize = 1024;
/// Rows read per round; one comment's fan-out is never split across rounds.
const ROUND: usize = 100_000;

/// The open streams of each user: an id and the queue of each.
type Streams = HashMap<UserId, Vec<(u64, mpsc::Sender<Arc<NotificationView>>)>>;

pub struct Notifier {
    streams: Mutex<Streams>,
    next_id: AtomicU64,
}

/// One open stream's place in the [`Notifier`]; dropping it leaves.
pub struct Subscription {
    notifier: Arc<Notifier>,
    user: UserId,
    id: u64,
    pub rows: mpsc::Receiver<Arc<NotificationView>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut streams = self.notifier.lock();
        if let Some(list) = streams.get_mut(&self.user) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                streams.remove(&self.user);
            }
        }
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }
}

impl Notifier {
    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new stream for `user`, unless they hold `cap` open already.
    pub fn subscribe(self: &Arc<Self>, user: UserId, cap: usize) -> Option<Subscription> {
        let mut streams = self.lock();
        let list = streams.entry(user).or_default();
        list.retain(|(_, tx)| !tx.is_closed());
        if list.len() >= cap {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rows) = mpsc::channel(QUEUE);
        list.push((id, tx));
        Some(Subscription {
            notifier: self.clone(),
            user,
            id,
            rows,
        })
    }

    fn deliver(&self, rows: Vec<NotificationView>) {
        let mut streams = self.lock();
        for row in rows {
            let Some(list) = streams.get_mut(&row.user_id) else {
                continue;
            };
            let row = Arc::new(row);
            // A full queue: the stream is too slow and is closed (it resumes on reconnect).
            list.retain(|(_, tx)| tx.try_send(row.clone()).is_ok());
        }
        streams.retain(|_, list| !list.is_empty());
    }

    /// Hands every new inbox row to its owner's streams, until shutdown.
    pub async fn run(
        self: Arc<Self>,
        hub: ProjectionHub,
        queries: Arc<dyn ForumQueries>,
        mut shutdown: Shutdown,
    ) -> Result<(), LoopError> {
        let Some(mut status) = hub.watch(inbox::NAME) else {
            return Ok(());
        };
        let mut last: Position = status.borrow().position;
        loop {
            // Below `last` (a promoted rebuild still catching up) there is nothing new.
            let reached = status.borrow_and_update().position;
            while reached > last {
                if self.lock().is_empty() {
                    last = reached;
                    break;
                }
                match queries.notifications_since(last, reached, ROUND).await {
                    Ok(mut rows) => {
                        let mut upto = reached;
                        if rows.len() >= ROUND {
                            // The last comment's rows may go on beyond the round: read them
                            // again next round (unless it alone fills one).
                            let tail = rows.last().map_or(reached, |r| r.seq);
                            if rows.first().is_some_and(|r| r.seq < tail) {
                                rows.retain(|r| r.seq < tail);
                                upto = tail - 1;
                            } else {
                                upto = tail;
                            }
                        }
                        self.deliver(rows);
                        last = upto;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading new notifications failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
            tokio::select! {
                () = shutdown.requested() => return Ok(()),
                changed = status.changed() => if changed.is_err() {
                    return Err("the inbox projection's status is gone".into());
                },
            }
        }
    }
}
