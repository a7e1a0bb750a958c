//! What a group-committing writer has done: shared by the SQLite and PostgreSQL writers.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the writer has done since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed (one fsync each).
    pub transactions: u64,
    /// `append_many` calls answered by those transactions, refused ones included.
    pub requests: u64,
    /// The most requests one transaction carried.
    pub largest_batch: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    transactions: AtomicU64,
    requests: AtomicU64,
    largest_batch: AtomicU64,
}

impl Counters {
    /// Counts one committed transaction that answered `batch` requests.
    pub(crate) fn record(&self, batch: usize) {
        let batch = batch as u64;
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(batch, Ordering::Relaxed);
        self.largest_batch.fetch_max(batch, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WriteStats {
        WriteStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }
}
