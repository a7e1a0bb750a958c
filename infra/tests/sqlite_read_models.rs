//! The SQLite read-model store through the read-model contract suite.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

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

/// Runs `sql` on the database at `path` beside the store (to make a generation look older).
fn execute(path: &std::path::Path, sql: &str) {
    rusqlite::Connection::open(path)
        .expect("the file")
        .execute_batch(sql)
        .expect("the older shape");
}

/// An upgrade that brings a table keeps queries answering (see the contract's case).
#[tokio::test]
async fn an_older_inbox_without_a_newer_table_answers_while_its_successor_builds() {
    let dir = TempDir::new().expect("a temporary directory");
    let path = dir.path().join("readmodels.db");
    let store = SqliteReadModels::open(&path)
        .await
        .expect("the store opens");
    read_model_contract::an_older_inbox_without_a_newer_table_answers_while_its_successor_builds(
        Arc::new(store),
        |g| async move {
            execute(
                &path,
                &format!("DROP VIEW follow_spans; DROP TABLE follow_spans_g{g};"),
            );
        },
    )
    .await;
}

/// An upgrade keeps queries answering (see the contract's case).
#[tokio::test]
async fn an_older_live_generation_answers_while_its_successor_builds() {
    let dir = TempDir::new().expect("a temporary directory");
    let path = dir.path().join("readmodels.db");
    let store = SqliteReadModels::open(&path)
        .await
        .expect("the store opens");
    read_model_contract::an_older_live_generation_answers_while_its_successor_builds(
        Arc::new(store),
        |g| async move {
            execute(
                &path,
                &format!(
                    "ALTER TABLE feed_g{g} DROP COLUMN likes; \
                     ALTER TABLE feed_g{g} DROP COLUMN dislikes;"
                ),
            );
        },
    )
    .await;
}
