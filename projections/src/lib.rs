//! Projectors: the read side of treehole (ARCHITECTURE.md §4).
//!
//! A projection is pure logic: it maps each event to a list of [`Change`]s of its own read
//! model. A [`ReadModelStore`] (SQLite or PostgreSQL, in `infra`) applies a batch of changes and
//! the projection's checkpoint in one transaction, so a crash never loses or doubles an event.
//! The [`runner`] feeds projections from an [`EventSource`] in position order and publishes their
//! progress, which read-your-writes queries wait on.

pub mod change;
pub mod comments;
pub mod feed;
pub mod inbox;
pub mod moderation;
pub mod ports;
pub mod routed;
pub mod runner;
pub mod search;
pub mod stats;
pub mod tasks;
pub mod users;
pub mod views;

pub use change::Change;
pub use comments::{CommentChange, CommentQueries};
pub use feed::{FeedChange, FeedQueries};
pub use inbox::{InboxChange, InboxQueries};
pub use moderation::{ModerationChange, ModerationQueries};
pub use ports::{
    Decoded, EventSource, ForumQueries, Generation, Promotion, ReadModelError, ReadModelStore,
};
pub use runner::{ProjectionHub, ProjectionState, ProjectionStatus};
pub use stats::StatsQueries;
pub use users::{UserChange, UserQueries};

use domain::{Envelope, Event};

/// The name content by a user who unregistered shows (their username is gone with their key).
pub const DELETED_USER: &str = "已注销用户";

/// One projection: a name, a version (bumped when its output changes, which forces a rebuild),
/// and what each event changes in its read model.
pub trait Projection: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    /// The changes `event` makes. Pure: the same envelope always yields the same changes.
    fn apply(&self, envelope: &Envelope, event: &Event) -> Vec<Change>;
    /// The least time between the start of a batch of `events` events of the live projector
    /// and the start of its next. Zero for a model whose cost is in its events; longer for one
    /// whose cost is per batch (a search engine re-indexes each touched document and commits
    /// once per batch), so that under load it applies fewer, larger batches. Rebuilds are not
    /// paced.
    fn pace(&self, events: usize) -> std::time::Duration {
        let _ = events;
        std::time::Duration::ZERO
    }
    /// The most events one batch reads. A paced projection needs room for what arrives
    /// between two batches, or under load every batch is full, comes at once, and the pace
    /// never applies.
    fn batch(&self) -> usize {
        runner::BATCH
    }
}

/// Every projection of the product, in the order they are started.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(users::Users),
        std::sync::Arc::new(feed::Feed),
        std::sync::Arc::new(comments::Comments),
        std::sync::Arc::new(search::Search),
        std::sync::Arc::new(tasks::Tasks),
        std::sync::Arc::new(stats::Stats),
        std::sync::Arc::new(inbox::Inbox),
        std::sync::Arc::new(moderation::Moderation),
    ]
}
