//! Read-model stores: where projections write and queries read.

pub mod sqlite;

pub use sqlite::SqliteReadModels;
