//! The PostgreSQL key store through the key-store contract.
//!
//! Needs `TREEHOLE_TEST_DATABASE_URL` (`scripts/test` starts a throwaway server); each test
//! gets a database of its own, dropped afterwards. Without it every test returns at once and
//! says `test-skipped: NAME: TREEHOLE_TEST_DATABASE_URL not set` on stderr, which
//! `scripts/test` counts as skipped, not passed.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

mod key_store_contract;
mod test_database;

use std::sync::Arc;

use infra::keys::PostgresKeyStore;
use test_database::TestDatabase;

/// A database of its own on the test server, dropped with the harness.
struct PostgresHarness(TestDatabase);

impl PostgresHarness {
    /// A fresh database, or `None` (having said so) without a server.
    async fn create_database() -> Option<Self> {
        Some(Self(TestDatabase::create_or_skip("treehole_keys").await?))
    }

    async fn connect(&self) -> PostgresKeyStore {
        PostgresKeyStore::connect(&self.0.url)
            .await
            .expect("the key store connects")
    }
}

impl key_store_contract::Harness for PostgresHarness {
    async fn create() -> Option<(Self, key_store_contract::Store)> {
        let harness = Self::create_database().await?;
        let store = harness.connect().await;
        Some((harness, Arc::new(store)))
    }

    async fn reopen(&self) -> key_store_contract::Store {
        Arc::new(self.connect().await)
    }
}

key_store_contract::key_store_contract!(PostgresHarness);
