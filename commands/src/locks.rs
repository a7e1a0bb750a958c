//! Per-stream serialisation inside one process.
//!
//! A viral post receives many commands at once; letting them race would turn into a storm of
//! version conflicts and retries. Commands for one stream therefore queue on a lock first. The
//! locks are striped (a fixed array indexed by a hash of the stream id) so memory stays bounded;
//! two streams sharing a stripe merely wait for each other. Across processes the expected
//! version of the append remains the guard.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use domain::StreamId;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

pub struct StreamLocks {
    stripes: Vec<Arc<Mutex<()>>>,
}

impl StreamLocks {
    pub fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1))
                .map(|_| Arc::new(Mutex::new(())))
                .collect(),
        }
    }

    /// Waits for exclusive use of `stream` within this process (FIFO, as tokio's mutex is fair).
    /// The guard is owned, so a task of its own (a batch) can hold it.
    pub async fn lock(&self, stream: &StreamId) -> OwnedMutexGuard<()> {
        let mut h = DefaultHasher::new();
        stream.hash(&mut h);
        let i = usize::try_from(h.finish() % self.stripes.len() as u64)
            .expect("below the stripe count");
        self.stripes[i].clone().lock_owned().await
    }
}

impl Default for StreamLocks {
    fn default() -> Self {
        Self::new(1024)
    }
}
