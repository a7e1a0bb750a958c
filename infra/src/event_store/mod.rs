//! Event store adapters.

pub mod sqlite;

pub use sqlite::{SqliteEventStore, WriteStats};
