//! Event store adapters.

pub mod sqlite;
mod write_stats;

pub use sqlite::SqliteEventStore;
pub use write_stats::WriteStats;
