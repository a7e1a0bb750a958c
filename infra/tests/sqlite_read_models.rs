//! The SQLite read-model store through the read-model contract suite.

mod read_model_contract;

use std::sync::Arc;

use infra::read_model::SqliteReadModels;
use tempfile::TempDir;

/// Keeps the database's directory alive for the test.
struct SqliteHarness(#[allow(dead_code)] TempDir);

impl read_model_contract::Harness for SqliteHarness {
    async fn create() -> Option<(Self, read_model_contract::Store)> {
        let dir = TempDir::new().expect("a temporary directory");
        let store = SqliteReadModels::open(&dir.path().join("readmodels.db"))
            .await
            .expect("the store opens");
        Some((Self(dir), Arc::new(store)))
    }
}

read_model_contract::read_model_contract!(SqliteHarness);
