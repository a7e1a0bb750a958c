//! Event store adapters.

pub mod postgres;
pub mod sqlite;
mod write_stats;

pub use postgres::PostgresEventStore;
pub use sqlite::SqliteEventStore;
pub use write_stats::WriteStats;
pub(crate) use write_stats::advance;
