//! Tailing the log: read everything after a position, then wait for the head to move.

use std::sync::Arc;

use domain::{Envelope, Position};

use crate::event_store::{EventStore, StoreError};

/// Reads the log in order from a position, waiting on the store's notifications at the head.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn commands::EventStore>) -> Result<(), commands::StoreError> {
/// let mut sub = commands::Subscription::new(store, 0, 500);
/// loop {
///     for envelope in sub.next_batch().await? {
///         println!("{} {}", envelope.position, envelope.event_type);
///     }
/// }
/// # }
/// ```
pub struct Subscription {
    store: Arc<dyn EventStore>,
    after: Position,
    batch: usize,
    head: tokio::sync::watch::Receiver<Position>,
}

impl Subscription {
    pub fn new(store: Arc<dyn EventStore>, after: Position, batch: usize) -> Self {
        let head = store.watch();
        Self {
            store,
            after,
            batch: batch.max(1),
            head,
        }
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> Position {
        self.after
    }

    /// The next non-empty batch in position order; waits while the log has nothing new.
    pub async fn next_batch(&mut self) -> Result<Vec<Envelope>, StoreError> {
        loop {
            // Mark the current head as seen *before* reading, so a commit that lands between the
            // read and the wait still wakes us.
            self.head.borrow_and_update();
            let events = self.store.read_all(self.after, self.batch).await?;
            if let Some(last) = events.last() {
                self.after = last.position;
                return Ok(events);
            }
            if self.head.changed().await.is_err() {
                return Err(StoreError::Unavailable("the event store was closed".into()));
            }
        }
    }
}
