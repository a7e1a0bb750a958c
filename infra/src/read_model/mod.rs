//! Read-model stores: where projections write and queries read.

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
pub use postgres::PostgresReadModels;
use projections::{ForumQueries, ReadModelStore};
pub use sqlite::SqliteReadModels;

/// Both sides of a read-model backend, as the composition root holds it.
#[async_trait]
pub trait ReadModels: ReadModelStore + ForumQueries {
    /// Releases the connections (the SQLite store checkpoints its WAL).
    async fn close(&self);
}

#[async_trait]
impl ReadModels for SqliteReadModels {
    async fn close(&self) {
        SqliteReadModels::close(self).await;
    }
}

#[async_trait]
impl ReadModels for PostgresReadModels {
    async fn close(&self) {
        PostgresReadModels::close(self).await;
    }
}
