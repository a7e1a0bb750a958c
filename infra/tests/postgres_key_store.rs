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

use std::sync::Arc;

use infra::keys::PostgresKeyStore;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

const URL_VAR: &str = "TREEHOLE_TEST_DATABASE_URL";

/// Says that the running test did not run, where `scripts/test` counts it (see
/// `contract::skip`): a `test-skipped:` line, named by the test's thread.
fn skipped(why: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("postgres_key_store");
    let _ = std::io::stderr().write_all(format!("test-skipped: {test}: {why}\n").as_bytes());
}

/// A database of its own on the test server, dropped with the harness.
struct PostgresHarness {
    server: String,
    name: String,
    url: String,
}

impl PostgresHarness {
    /// A fresh database, or `None` (having said so) without a server.
    async fn create_database() -> Option<Self> {
        let server = match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                skipped(&format!("{URL_VAR} not set"));
                return None;
            }
        };
        let name = format!("treehole_keys_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
        admin
            .execute(&*format!("CREATE DATABASE {name}"))
            .await
            .expect("a test database");
        let mut url = url::Url::parse(&server).expect("a URL");
        url.set_path(&name);
        Some(Self {
            server,
            name,
            url: url.into(),
        })
    }

    async fn connect(&self) -> PostgresKeyStore {
        PostgresKeyStore::connect(&self.url)
            .await
            .expect("the key store connects")
    }
}

impl Drop for PostgresHarness {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop cannot await: use a thread with a runtime of its own. A database left behind
        // (if this fails) harms nobody on a throwaway server.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                admin
                    .execute(&*format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
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
