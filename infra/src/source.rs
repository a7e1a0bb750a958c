//! The event store seen as a projection source.

use std::sync::Arc;

use async_trait::async_trait;
use commands::EventStore;
use domain::{Envelope, Position};
use projections::{EventSource, ReadModelError};
use tokio::sync::watch;

/// Feeds projectors straight from the log of record.
pub struct StoreSource(pub Arc<dyn EventStore>);

#[async_trait]
impl EventSource for StoreSource {
    async fn read_after(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<Envelope>, ReadModelError> {
        self.0
            .read_all(after, limit)
            .await
            .map_err(|e| ReadModelError::Unavailable(e.to_string()))
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.0.watch()
    }
}
