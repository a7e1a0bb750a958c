//! Another connection holding the write lock of a SQLite file while one of the stores writes
//! it: the log's writer and the key store's share `events.db`'s lock.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

/// Runs `write` while another connection holds the write lock of the file at `path`: checks
/// that it is still waiting after 300 ms, lets the lock go, and returns what `write` returned
/// (within 4 s).
pub async fn while_another_connection_holds_the_lock<T, W>(path: &Path, write: W) -> T
where
    T: Send + 'static,
    W: Future<Output = T> + Send + 'static,
{
    let mut other = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("a second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("the write lock");
    let writing = tokio::spawn(write);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !writing.is_finished(),
        "the write did not wait for the lock"
    );
    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("the lock let go");
    tokio::time::timeout(Duration::from_secs(4), writing)
        .await
        .expect("the write goes on once the lock is free")
        .expect("the write's task")
}
