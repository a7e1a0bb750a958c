//! The event store seen as a projection source.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use commands::EventStore;
use domain::Position;
use projections::{Decoded, EventSource, ReadModelError};
use tokio::sync::{Mutex, watch};

/// Feeds projectors straight from the log of record.
///
/// The projectors of one process follow the same head, so they ask for the same events one
/// after another. The newest events read are kept (at most [`StoreSource::TAIL`]), decoded:
/// the first projector to ask reads and decodes them, and the others get the same records
/// from memory instead of querying, cloning and decoding them again. Reads are one at a time, so projectors woken together by
/// one append wait for the first one's read rather than all querying the store at once.
pub struct StoreSource {
    store: Arc<dyn EventStore>,
    tail: Mutex<Tail>,
}

/// Every event with a position in `(after, head]`, in order.
#[derive(Default)]
struct Tail {
    after: Position,
    head: Position,
    events: VecDeque<Arc<Decoded>>,
}

impl Tail {
    /// The events after `after`, at most `limit`, if this tail holds `after`'s successors.
    fn serve(&self, after: Position, limit: usize) -> Option<Vec<Arc<Decoded>>> {
        if self.events.is_empty() || after < self.after || after >= self.head {
            return None;
        }
        let skip = self.events.partition_point(|e| e.position() <= after);
        Some(self.events.iter().skip(skip).take(limit).cloned().collect())
    }

    /// Takes in what a read of the store after `after` returned: it extends the tail when it
    /// starts where the tail ends, and replaces it when it starts past it. Older reads (a
    /// rebuild from the start of the log) leave it as it is.
    fn remember(&mut self, after: Position, read: &[Arc<Decoded>]) {
        let Some(last) = read.last() else { return };
        if after > self.head || self.events.is_empty() {
            self.events.clear();
            self.after = after;
        } else if after < self.head {
            return;
        }
        self.events.extend(read.iter().cloned());
        self.head = last.position();
        while self.events.len() > StoreSource::TAIL {
            if let Some(dropped) = self.events.pop_front() {
                self.after = dropped.position();
            }
        }
    }
}

impl StoreSource {
    /// Events kept in memory for the other projectors.
    pub const TAIL: usize = 4096;

    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            tail: Mutex::default(),
        }
    }
}

#[async_trait]
impl EventSource for StoreSource {
    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Arc<Decoded>>, ReadModelError> {
        let mut tail = self.tail.lock().await;
        if let Some(events) = tail.serve(after, limit) {
            return Ok(events);
        }
        let read: Vec<Arc<Decoded>> = self
            .store
            .read_all(after, limit)
            .await
            .map_err(|e| ReadModelError::Unavailable(e.to_string()))?
            .into_iter()
            .map(Decoded::new)
            .collect();
        tail.remember(after, &read);
        Ok(read)
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.store.watch()
    }
}

/// A source whose envelopes may carry sealed personal values (the Kafka topic carries the
/// log's stored text): opens them through the key store before the projections see them, so
/// that a projector fed by the topic writes what one fed by the store writes.
pub struct OpeningSource {
    inner: Arc<dyn EventSource>,
    keys: Arc<commands::Keys>,
}

impl OpeningSource {
    pub fn new(inner: Arc<dyn EventSource>, keys: Arc<commands::Keys>) -> Self {
        Self { inner, keys }
    }
}

#[async_trait]
impl EventSource for OpeningSource {
    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Arc<Decoded>>, ReadModelError> {
        let read = self.inner.read_after(after, limit).await?;
        let sealed: Vec<domain::Envelope> = read
            .iter()
            .filter(|d| domain::personal::has_sealed(&d.envelope.data))
            .map(|d| d.envelope.clone())
            .collect();
        let failed = |e: commands::KeyError| match e {
            commands::KeyError::Backend(m) => ReadModelError::Unavailable(m),
            other => ReadModelError::Backend(other.to_string()),
        };
        self.keys.prefetch(&sealed).await.map_err(failed)?;
        let mut out = Vec::with_capacity(read.len());
        for d in read {
            let sealed = d.envelope.event_type == "UserUnregistered"
                || domain::personal::has_sealed(&d.envelope.data);
            if sealed {
                let mut envelope = d.envelope.clone();
                self.keys.open(&mut envelope).await.map_err(failed)?;
                out.push(Decoded::new(envelope));
            } else {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.inner.watch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::{Envelope, Metadata, StreamId};

    fn event(position: Position) -> Arc<Decoded> {
        Decoded::new(Envelope {
            position,
            event_id: uuid::Uuid::from_u128(position.into()),
            stream: StreamId::parse("user-1").unwrap(),
            version: position,
            event_type: "UserLoggedIn".into(),
            schema: 1,
            occurred_at: Utc::now(),
            data: serde_json::json!({}),
            metadata: Metadata::default(),
        })
    }

    fn run(from: Position, to: Position) -> Vec<Arc<Decoded>> {
        (from..=to).map(event).collect()
    }

    fn positions(events: &[Arc<Decoded>]) -> Vec<Position> {
        events.iter().map(|e| e.position()).collect()
    }

    #[test]
    fn serves_only_what_it_holds_in_full() {
        let mut tail = Tail::default();
        assert!(tail.serve(0, 10).is_none(), "empty");
        tail.remember(10, &run(11, 20));
        assert!(tail.serve(9, 10).is_none(), "event 10 is not held");
        assert!(
            tail.serve(20, 10).is_none(),
            "nothing past the head is known"
        );
        assert_eq!(positions(&tail.serve(10, 3).unwrap()), vec![11, 12, 13]);
        assert_eq!(positions(&tail.serve(18, 10).unwrap()), vec![19, 20]);

        // A read that starts at the head extends the tail; an older one leaves it.
        tail.remember(20, &run(21, 22));
        tail.remember(0, &run(1, 5));
        assert_eq!(positions(&tail.serve(19, 10).unwrap()), vec![20, 21, 22]);
        assert!(tail.serve(3, 10).is_none());

        // A read past the head (events this source never saw between) replaces it.
        tail.remember(30, &run(31, 31));
        assert!(tail.serve(22, 10).is_none());
        assert_eq!(positions(&tail.serve(30, 10).unwrap()), vec![31]);
        // An empty read changes nothing.
        tail.remember(31, &[]);
        assert_eq!(positions(&tail.serve(30, 10).unwrap()), vec![31]);
    }

    #[test]
    fn keeps_the_newest_events_only() {
        let mut tail = Tail::default();
        let n = StoreSource::TAIL as Position;
        tail.remember(0, &run(1, n));
        tail.remember(n, &run(n + 1, n + 10));
        assert!(tail.serve(5, 1).is_none(), "the oldest were dropped");
        assert_eq!(positions(&tail.serve(10, 1).unwrap()), vec![11]);
        assert_eq!(
            positions(&tail.serve(n + 8, 5).unwrap()),
            vec![n + 9, n + 10]
        );
    }
}
