//! The sealing event store: the only way events reach a store in a running treehole. It seals
//! every open personal value before the append and opens sealed values on read while their keys
//! exist (see [`crate::keys`]). `read_all_raw` and `read_all_stored` pass the stored text
//! through: ciphertext, what the Kafka relay publishes and `events export --raw` writes.

use std::sync::Arc;

use async_trait::async_trait;
use domain::{Envelope, NewEvent, Position, RawEnvelope, StoredEvents, StreamId};
use tokio::sync::watch;

use crate::event_store::{Committed, EventStore, IdempotencyKey, StoreError, StreamWrite};
use crate::keys::{KeyError, Keys};

pub struct SealedStore {
    inner: Arc<dyn EventStore>,
    keys: Arc<Keys>,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn EventStore>, keys: Arc<Keys>) -> Self {
        Self { inner, keys }
    }

    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    pub fn inner(&self) -> &Arc<dyn EventStore> {
        &self.inner
    }

    async fn open_all(&self, mut envelopes: Vec<Envelope>) -> Result<Vec<Envelope>, StoreError> {
        self.keys.prefetch(&envelopes).await.map_err(key_error)?;
        for e in &mut envelopes {
            self.keys.open(e).await.map_err(key_error)?;
        }
        Ok(envelopes)
    }
}

fn key_error(e: KeyError) -> StoreError {
    match e {
        KeyError::Backend(m) => StoreError::Unavailable(m),
        other => StoreError::Backend(other.to_string()),
    }
}

/// Seals the personal values of events about to be appended.
pub async fn seal_all(keys: &Keys, events: &mut [NewEvent]) -> Result<(), StoreError> {
    for e in events {
        keys.seal(e).await.map_err(key_error)?;
    }
    Ok(())
}

#[async_trait]
impl EventStore for SealedStore {
    async fn append_many(
        &self,
        mut writes: Vec<StreamWrite>,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Committed, StoreError> {
        let data: Vec<&serde_json::Value> = writes
            .iter()
            .flat_map(|w| w.events.iter())
            .map(|e| &e.data)
            .collect();
        self.keys
            .prefetch_data(data.into_iter())
            .await
            .map_err(key_error)?;
        for w in &mut writes {
            seal_all(&self.keys, &mut w.events).await?;
        }
        self.inner.append_many(writes, idempotency).await
    }

    async fn find_idempotent(&self, key: &IdempotencyKey) -> Result<Option<Committed>, StoreError> {
        self.inner.find_idempotent(key).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<Envelope>, StoreError> {
        let envelopes = self.inner.read_stream(stream, from_version).await?;
        self.open_all(envelopes).await
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<Envelope>, StoreError> {
        let envelopes = self.inner.read_all(after, limit).await?;
        self.open_all(envelopes).await
    }

    async fn read_all_raw(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RawEnvelope>, StoreError> {
        self.inner.read_all_raw(after, limit).await
    }

    async fn read_all_stored(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<StoredEvents, StoreError> {
        self.inner.read_all_stored(after, limit).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.inner.head().await
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.inner.watch()
    }
}
