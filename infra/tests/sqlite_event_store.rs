//! The SQLite event store: the whole contract suite, plus what only this backend promises
//! (group commit, WAL, the writer's memory of versions).

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

mod contract;
mod write_lock;

use std::sync::Arc;

use chrono::Utc;
use commands::{EventStore, ExpectedVersion, StoreError};
use domain::{Metadata, NewEvent, StreamId};
use infra::event_store::SqliteEventStore;
use sqlx::{ConnectOptions, Connection, sqlite::SqliteConnectOptions};
use tempfile::TempDir;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use uuid::Uuid;

struct SqliteHarness {
    dir: TempDir,
}

impl contract::Harness for SqliteHarness {
    async fn create() -> Self {
        Self {
            dir: TempDir::new().expect("a temporary directory"),
        }
    }

    async fn open(&self) -> contract::Store {
        Arc::new(
            SqliteEventStore::open_in(self.dir.path())
                .await
                .expect("the store opens"),
        )
    }
}

contract::event_store_contract!(SqliteHarness);

fn event() -> NewEvent {
    NewEvent {
        typed: Default::default(),
        event_id: Uuid::now_v7(),
        event_type: "Tested".into(),
        schema: 1,
        occurred_at: Utc::now(),
        data: serde_json::json!({}),
        metadata: Metadata::default(),
    }
}

fn stream(name: String) -> StreamId {
    StreamId::parse(name).expect("a valid stream id")
}

/// Runs `tasks` appends at once; task `i` appends to `stream(i)` with `expected(i)`.
async fn concurrent_appends(
    store: &Arc<SqliteEventStore>,
    tasks: usize,
    expected: fn(usize) -> ExpectedVersion,
) -> Vec<Result<commands::Committed, StoreError>> {
    let start = Arc::new(Barrier::new(tasks));
    let mut set = JoinSet::new();
    for i in 0..tasks {
        let (store, start) = (Arc::clone(store), Arc::clone(&start));
        set.spawn(async move {
            start.wait().await;
            let result = store
                .append(&stream(format!("task-{i}")), expected(i), vec![event()])
                .await;
            (i, result)
        });
    }
    // join_all answers in completion order.
    let mut results = set.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_shares_transactions_between_concurrent_appends() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(SqliteEventStore::open_in(dir.path()).await.unwrap());
    let results = concurrent_appends(&store, 200, |_| ExpectedVersion::NoStream).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(store.head().await.unwrap(), 200);
    let stats = store.stats();
    assert_eq!(stats.requests, 200);
    assert!(
        stats.transactions < 200,
        "200 concurrent appends took {} transactions",
        stats.transactions
    );
    assert!(stats.largest_batch > 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_append_does_not_spoil_its_batch() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(SqliteEventStore::open_in(dir.path()).await.unwrap());
    // Odd tasks expect a stream that does not exist: refused. Even tasks create theirs.
    let results = concurrent_appends(&store, 64, |i| {
        if i % 2 == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(5)
        }
    })
    .await;
    for (i, result) in results.iter().enumerate() {
        match (i % 2, result) {
            (0, Ok(c)) => assert!(!c.replayed),
            (1, Err(StoreError::Conflict { actual: 0, .. })) => {}
            _ => panic!("task {i}: {result:?}"),
        }
    }
    assert_eq!(store.head().await.unwrap(), 32);
    let stats = store.stats();
    assert_eq!(stats.requests, 64);
    assert!(
        stats.largest_batch > 1,
        "no batch mixed requests: {stats:?}"
    );
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    let dir = TempDir::new().unwrap();
    let _store = SqliteEventStore::open_in(dir.path()).await.unwrap();
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.path().join(infra::event_store::sqlite::FILE_NAME))
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

/// The key store writes the log's file through a connection of its own. While it holds the
/// write lock the log's writer waits (in short steps, see `busy_pause`), neither failing nor
/// giving up, and appends once the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waits_for_a_write_lock_held_by_another_connection() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(SqliteEventStore::open_in(dir.path()).await.unwrap());
    let appending = {
        let store = store.clone();
        async move {
            let s = stream("post-locked".into());
            store
                .append(&s, ExpectedVersion::NoStream, vec![event()])
                .await
        }
    };
    let file = dir.path().join(infra::event_store::sqlite::FILE_NAME);
    let appended = write_lock::while_another_connection_holds_the_lock(&file, appending).await;
    assert!(appended.is_ok(), "the append failed: {appended:?}");
    assert_eq!(store.head().await.unwrap(), 1);
}

#[tokio::test]
async fn open_creates_missing_directories() {
    let dir = TempDir::new().unwrap();
    let nested = dir.path().join("a/b");
    let store = SqliteEventStore::open_in(&nested).await.unwrap();
    assert_eq!(store.head().await.unwrap(), 0);
    assert!(nested.join(infra::event_store::sqlite::FILE_NAME).exists());
}

mod batches;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_post_commits_in_batches_and_a_refused_command_fails_alone() {
    let dir = TempDir::new().expect("a temporary directory");
    let store = Arc::new(SqliteEventStore::open_in(dir.path()).await.expect("opens"));
    let counted = store.clone();
    batches::a_hot_post_commits_in_batches_and_a_refused_command_fails_alone(store, move || {
        counted.stats().requests
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handlers_with_stale_caches_decide_again() {
    let dir = TempDir::new().expect("a temporary directory");
    let store = Arc::new(SqliteEventStore::open_in(dir.path()).await.expect("opens"));
    batches::stale_handlers_decide_again(store.clone(), store).await;
}

/// The writer remembers stream versions, but a refusal made on a remembered version is checked
/// against the file: here another connection writes behind the store's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remembered_version_never_refuses_what_the_file_allows() {
    let dir = TempDir::new().unwrap();
    let store = SqliteEventStore::open_in(dir.path()).await.unwrap();
    let s = stream("test-behind".into());
    store
        .append(&s, ExpectedVersion::NoStream, vec![event()])
        .await
        .unwrap();
    let mut other = file_connection(&dir).await;
    insert_behind(&mut other, &s, 2).await;
    other.close().await.unwrap();

    // The writer remembers version 1; the file says 2.
    let committed = store
        .append(&s, ExpectedVersion::Exact(2), vec![event()])
        .await
        .expect("the file's version is the one that counts");
    assert_eq!(committed.results[0].first_version, 3);
    match store
        .append(&s, ExpectedVersion::Exact(1), vec![event()])
        .await
    {
        Err(StoreError::Conflict { actual: 3, .. }) => {}
        other => panic!("expected a conflict at version 3, got {other:?}"),
    }
    let versions: Vec<u64> = store
        .read_stream(&s, 1)
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2, 3]);
}

/// A batch that the plan cannot judge (a retried call whose events are stored) is rolled back
/// and done again with savepoints; the versions the writer remembers afterwards are the
/// committed ones, not those of the abandoned plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_redone_with_savepoints_leaves_the_versions_right() {
    const TASKS: usize = 48;
    let dir = TempDir::new().unwrap();
    let store = Arc::new(SqliteEventStore::open_in(dir.path()).await.unwrap());
    let stored = stream("test-stored".into());
    let original = vec![event()];
    let first = store
        .append(&stored, ExpectedVersion::NoStream, original.clone())
        .await
        .unwrap();

    for round in 0..3 {
        let start = Arc::new(Barrier::new(TASKS + 1));
        let mut set = JoinSet::new();
        for i in 0..TASKS {
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            set.spawn(async move {
                let s = stream(format!("task-{i}"));
                // Tasks alternate: one appends at the stream's version, the next is refused.
                let expected = if i % 2 == 0 {
                    ExpectedVersion::from_version(round)
                } else {
                    ExpectedVersion::Exact(round + 7)
                };
                start.wait().await;
                (i, store.append(&s, expected, vec![event()]).await)
            });
        }
        let (store2, start2) = (Arc::clone(&store), Arc::clone(&start));
        let (stored2, original2) = (stored.clone(), original.clone());
        let retry = tokio::spawn(async move {
            start2.wait().await;
            store2
                .append(&stored2, ExpectedVersion::Any, original2)
                .await
        });
        for (i, result) in set.join_all().await {
            match (i % 2, result) {
                (0, Ok(c)) => assert_eq!(c.results[0].first_version, round + 1),
                (1, Err(StoreError::Conflict { actual, .. })) => {
                    assert_eq!(actual, 0, "task {i}")
                }
                (_, other) => panic!("round {round}, task {i}: {other:?}"),
            }
        }
        let replayed = retry.await.unwrap().unwrap();
        assert!(replayed.replayed);
        assert_eq!(replayed.results, first.results);
    }
    for i in 0..TASKS {
        let s = stream(format!("task-{i}"));
        let want = if i % 2 == 0 { 3 } else { 0 };
        assert_eq!(store.read_stream(&s, 1).await.unwrap().len(), want);
    }
    let next = store
        .append(&stored, ExpectedVersion::Exact(1), vec![event()])
        .await
        .unwrap();
    assert_eq!(next.results[0].first_version, 2);
}

/// A connection of the test's own to the store's file in `dir` (created if missing).
async fn file_connection(dir: &TempDir) -> sqlx::SqliteConnection {
    SqliteConnectOptions::new()
        .filename(dir.path().join(infra::event_store::sqlite::FILE_NAME))
        .create_if_missing(true)
        .connect()
        .await
        .unwrap()
}

/// Inserts event `version` of `stream` behind the store's back, at the next position.
async fn insert_behind(conn: &mut sqlx::SqliteConnection, stream: &StreamId, version: i64) {
    sqlx::query(
        "INSERT INTO events (event_id, stream, version, type, schema, occurred_at, data, metadata) \
         VALUES (?, ?, ?, 'Tested', 1, '2026-11-23T10:00:00.000Z', '{}', '{}')",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(stream.as_str())
    .bind(version)
    .execute(conn)
    .await
    .unwrap();
}

async fn versions_of(store: &SqliteEventStore, s: &StreamId, from: u64) -> Vec<u64> {
    let events = store.read_stream(s, from).await.unwrap();
    events.iter().map(|e| e.version).collect()
}

/// `(rows of stream_index, its highest position, stream_index_upto)`.
async fn stream_index_state(conn: &mut sqlx::SqliteConnection) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM stream_index), \
                (SELECT COALESCE(MAX(position), 0) FROM stream_index), \
                (SELECT position FROM stream_index_upto)",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// The stream index is written in batches: a stream's events are read whole whether they
/// are indexed or still in the log's tail, and its version counts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_read_across_its_indexed_events_and_the_tail() {
    let dir = TempDir::new().unwrap();
    let s = stream("test-split".into());
    let other = stream("test-other".into());
    {
        let store = SqliteEventStore::open_in(dir.path()).await.unwrap();
        store
            .append(&s, ExpectedVersion::NoStream, vec![event(), event()])
            .await
            .unwrap();
        store
            .append(&other, ExpectedVersion::NoStream, vec![event()])
            .await
            .unwrap();
    }
    // Opening indexes what the last run left in the tail.
    let store = SqliteEventStore::open_in(dir.path()).await.unwrap();
    let mut conn = file_connection(&dir).await;
    assert_eq!(stream_index_state(&mut conn).await, (3, 3, 3));
    // Two events the index does not hold.
    insert_behind(&mut conn, &s, 3).await;
    insert_behind(&mut conn, &s, 4).await;
    assert_eq!(stream_index_state(&mut conn).await, (3, 3, 3));
    conn.close().await.unwrap();

    assert_eq!(versions_of(&store, &s, 1).await, [1, 2, 3, 4]);
    assert_eq!(versions_of(&store, &s, 2).await, [2, 3, 4]);
    assert_eq!(versions_of(&store, &s, 4).await, [4]);
    assert_eq!(versions_of(&store, &other, 1).await, [1]);
    match store
        .append(&s, ExpectedVersion::Exact(2), vec![event()])
        .await
    {
        Err(StoreError::Conflict { actual: 4, .. }) => {}
        other => panic!("expected a conflict at version 4, got {other:?}"),
    }
    let committed = store
        .append(&s, ExpectedVersion::Exact(4), vec![event()])
        .await
        .unwrap();
    assert_eq!(committed.results[0].first_version, 5);
    assert_eq!(versions_of(&store, &s, 3).await, [3, 4, 5]);
}

/// A log made before the stream index (its events table with `UNIQUE (stream, version)`)
/// opens, has all its events indexed, and reads and appends as any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_made_before_the_stream_index_is_indexed_when_opened() {
    let dir = TempDir::new().unwrap();
    let s = stream("test-old".into());
    let mut conn = file_connection(&dir).await;
    sqlx::query(
        "CREATE TABLE events (
            position    INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id    TEXT    NOT NULL UNIQUE,
            stream      TEXT    NOT NULL,
            version     INTEGER NOT NULL CHECK (version >= 1),
            type        TEXT    NOT NULL,
            schema      INTEGER NOT NULL,
            occurred_at TEXT    NOT NULL,
            data        TEXT    NOT NULL,
            metadata    TEXT    NOT NULL,
            UNIQUE (stream, version)
        ) STRICT",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for version in 1..=3 {
        insert_behind(&mut conn, &s, version).await;
    }
    conn.close().await.unwrap();

    let store = SqliteEventStore::open_in(dir.path()).await.unwrap();
    let mut conn = file_connection(&dir).await;
    assert_eq!(stream_index_state(&mut conn).await, (3, 3, 3));
    conn.close().await.unwrap();
    assert_eq!(versions_of(&store, &s, 1).await, [1, 2, 3]);
    let committed = store
        .append(&s, ExpectedVersion::Exact(3), vec![event()])
        .await
        .unwrap();
    assert_eq!(committed.results[0].first_version, 4);
    assert_eq!(versions_of(&store, &s, 3).await, [3, 4]);
}
