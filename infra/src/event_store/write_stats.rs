//! What the SQLite and PostgreSQL group-committing writers share: counting what they did,
//! answering a batch's callers, and moving the head notification.

use std::sync::atomic::{AtomicU64, Ordering};

use commands::{Committed, StoreError};
use domain::Position;
use tokio::sync::{oneshot, watch};
use tracing::Span;

/// Where a writer sends one request's answer.
pub(crate) type Reply = oneshot::Sender<Result<Committed, StoreError>>;

/// Moves a head notification forward (never back), waking watchers only when it moved.
pub(crate) fn advance(head: &watch::Sender<Position>, position: Position) {
    head.send_if_modified(|h| {
        let advanced = position > *h;
        *h = (*h).max(position);
        advanced
    });
}

/// Answers every request of a batch whose transaction failed with the batch's error.
pub(crate) fn fail_all(replies: impl IntoIterator<Item = Reply>, failure: &StoreError) {
    for reply in replies {
        let copy = match failure {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(format!("group commit failed: {m}"))
            }
            other => StoreError::Backend(format!("group commit failed: {other}")),
        };
        // A caller that gave up waiting is not an error.
        let _ = reply.send(Err(copy));
    }
}

/// After a batch committed: counts it, moves the head past its new events, records both on
/// the current span, and gives each request its own outcome.
pub(crate) fn answer_committed(
    counters: &Counters,
    head: &watch::Sender<Position>,
    replies: Vec<Reply>,
    outcomes: Vec<Result<Committed, StoreError>>,
) {
    counters.record(replies.len());
    let appended = outcomes.iter().flatten().filter(|c| !c.replayed);
    let events: u64 = appended
        .clone()
        .flat_map(|c| &c.results)
        .map(|r| r.last_version - r.first_version + 1)
        .sum();
    let last = appended.map(Committed::last_position).max();
    if let Some(last) = last {
        advance(head, last);
    }
    Span::current()
        .record("events", events)
        .record("head", last.unwrap_or_else(|| *head.borrow()));
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(outcome);
    }
}

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
