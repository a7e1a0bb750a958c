//! The SQLite key store (in the embedded event store's `events.db`) through the key-store
//! contract, plus what only this backend promises: once a key is shredded its bytes are in
//! neither the database file nor its write-ahead log (`secure_delete`, then a `TRUNCATE`
//! checkpoint that waits out readers).

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

mod key_store_contract;
mod write_lock;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use commands::{EventStore, ExpectedVersion, KeyStore, Keys, SealedStore, StreamWrite};
use domain::user::UserEvent;
use domain::{KeyRef, Metadata, NewEvent, Personal, UserId};
use infra::event_store::SqliteEventStore;
use infra::event_store::sqlite::FILE_NAME;
use infra::keys::SqliteKeyStore;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;
use uuid::Uuid;

/// Keeps the database's directory alive for the test.
struct SqliteHarness(TempDir);

impl key_store_contract::Harness for SqliteHarness {
    async fn create() -> Option<(Self, key_store_contract::Store)> {
        let dir = TempDir::new().expect("a temporary directory");
        let store = SqliteKeyStore::open_in(dir.path())
            .await
            .expect("the key store opens");
        Some((Self(dir), Arc::new(store)))
    }

    async fn reopen(&self) -> key_store_contract::Store {
        Arc::new(
            SqliteKeyStore::open_in(self.0.path())
                .await
                .expect("the key store opens again"),
        )
    }
}

key_store_contract::key_store_contract!(SqliteHarness);

// ---------------------------------------------------------------------------------------------
// The bytes of a shredded key

/// The database file and its write-ahead log, as bytes (the log may not exist).
fn files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let db = std::fs::read(dir.join(FILE_NAME)).expect("the database file");
    let wal = match std::fs::read(dir.join(format!("{FILE_NAME}-wal"))) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read the write-ahead log: {e}"),
    };
    (db, wal)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether any 16 consecutive bytes of `key` are in `haystack`: a partly overwritten copy
/// counts too (16 random bytes do not occur by chance).
fn any_part_of(haystack: &[u8], key: &[u8]) -> bool {
    key.windows(16).any(|part| contains(haystack, part))
}

fn registered(user: UserId) -> NewEvent {
    let k = KeyRef::user(user);
    let e = UserEvent::UserRegistered {
        user_id: user,
        email: Personal::new(k.clone(), format!("{user}@campus.edu")),
        username: Personal::new(k.clone(), format!("u{}", user.as_uuid().simple())),
        password_hash: Personal::new(k, "$argon2id$hash".into()),
    };
    NewEvent::from_domain(&e, Uuid::now_v7(), Utc::now(), Metadata::default())
}

/// As in a running server: the log and the keys share `events.db`, users have registered
/// (sealed events in the log, a key each), a reader is in the middle of a read when one user
/// is shredded. After `Keys::shred` the wrapped key, as `get_key` returned it before, is in
/// neither file, while the other users' keys still are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shredded_key_is_in_neither_the_database_file_nor_the_log() {
    tokio::time::timeout(Duration::from_secs(120), shredded_bytes_are_gone())
        .await
        .expect("timed out");
}

async fn shredded_bytes_are_gone() {
    let dir = TempDir::new().expect("a temporary directory");
    let log: Arc<dyn EventStore> = Arc::new(
        SqliteEventStore::open_in(dir.path())
            .await
            .expect("the event store opens"),
    );
    let store = Arc::new(
        SqliteKeyStore::open_in(dir.path())
            .await
            .expect("the key store opens"),
    );
    let keys = Arc::new(Keys::new(store.clone(), b"server secret"));
    let sealed = SealedStore::new(log.clone(), keys.clone());

    let users: Vec<UserId> = (0..20).map(|_| UserId::new(Uuid::now_v7())).collect();
    for &u in &users {
        keys.create(u).await.expect("a key");
        sealed
            .append_many(
                vec![StreamWrite {
                    stream: u.stream(),
                    expected: ExpectedVersion::NoStream,
                    events: vec![registered(u)],
                }],
                None,
            )
            .await
            .expect("a registration");
    }
    let victim = users[13];
    let wrapped = store
        .get_key(victim)
        .await
        .expect("get_key")
        .expect("the victim's key");
    let others: Vec<Vec<u8>> = {
        let mut v = Vec::new();
        for &u in users.iter().filter(|&&u| u != victim) {
            v.push(store.get_key(u).await.expect("get_key").expect("a key"));
        }
        v
    };

    // The test can fail: before the shred the key is on disk, in the file or in the log.
    let (db, wal) = files(dir.path());
    assert!(
        contains(&db, &wrapped) || contains(&wal, &wrapped),
        "the wrapped key should be on disk before the shred (db {} bytes, wal {} bytes)",
        db.len(),
        wal.len()
    );

    // A reader in the middle of a read transaction that has seen the key: the checkpoint
    // cannot empty the log until it is done, so the shred must wait for it, not give up.
    let mut reader = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(dir.path().join(FILE_NAME))
            .read_only(true),
    )
    .await
    .expect("a reader");
    sqlx::raw_sql("BEGIN")
        .execute(&mut reader)
        .await
        .expect("BEGIN");
    let seen: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM data_keys WHERE user_id = ?")
        .bind(victim.to_string())
        .fetch_one(&mut reader)
        .await
        .expect("the reader sees the key");
    assert_eq!(seen, wrapped);
    let hold = Duration::from_millis(400);
    let release = async {
        tokio::time::sleep(hold).await;
        sqlx::raw_sql("COMMIT")
            .execute(&mut reader)
            .await
            .expect("COMMIT");
        // The connection stays open (idle), as a reader pool's do.
        Instant::now()
    };
    let started = Instant::now();
    let shred = async {
        keys.shred(victim).await.expect("shred");
        Instant::now()
    };
    let (shredded_at, released_at) = tokio::join!(shred, release);
    assert!(
        shredded_at >= released_at,
        "the shred returned {:?} after it started, before the reader it had to wait for was \
         done ({:?}): the log cannot have been emptied",
        shredded_at - started,
        released_at - started
    );

    assert_eq!(store.get_key(victim).await.expect("get_key"), None);
    let (db, wal) = files(dir.path());
    assert!(
        !any_part_of(&db, &wrapped),
        "the shredded key is still in {FILE_NAME}"
    );
    assert!(
        !any_part_of(&wal, &wrapped),
        "the shredded key is still in {FILE_NAME}-wal ({} bytes)",
        wal.len()
    );
    // The search finds what is there: every other key is still on disk, and still opens.
    for key in &others {
        assert!(
            contains(&db, key) || contains(&wal, key),
            "another user's key is missing from the files"
        );
    }
    for &u in users.iter().filter(|&&u| u != victim) {
        assert!(store.get_key(u).await.expect("get_key").is_some());
    }
    // The log itself still reads; the victim's registration is there, unreadable.
    let events = log.read_all(0, 1000).await.expect("read_all");
    assert_eq!(events.len(), users.len());
    drop(reader);
}

/// The log's writer shares the file's write lock. While another connection holds it, the key
/// store's writes wait (in short steps) and then go in, neither failing nor giving up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_handles_wait_for_a_write_lock_held_by_another_connection() {
    let dir = TempDir::new().unwrap();
    let keys = Arc::new(SqliteKeyStore::open_in(dir.path()).await.unwrap());
    let user = UserId::new(Uuid::now_v7());
    keys.put_key(user, vec![7; 40]).await.unwrap();
    let putting = {
        let keys = keys.clone();
        async move {
            keys.put_handles(&[("h-locked".into(), user, "post-1".into())])
                .await
        }
    };
    let file = dir.path().join(FILE_NAME);
    let put = write_lock::while_another_connection_holds_the_lock(&file, putting).await;
    assert!(put.is_ok(), "the write failed: {put:?}");
    assert_eq!(keys.resolve("h-locked").await.unwrap(), Some(user));
}
