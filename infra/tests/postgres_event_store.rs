//! The PostgreSQL event store: the whole contract suite, plus what only this backend promises:
//! one gapless position order shared by several processes (several stores on one database
//! stand in for them), notifications across processes, and reconnection.
//!
//! Needs a server: `TREEHOLE_TEST_DATABASE_URL=postgres://user:password@host:port/database`
//! (`scripts/test` starts a throwaway one with `scripts/pg-start`). Every test creates a
//! database of its own there and drops it afterwards. Without the variable each test returns at
//! once, saying `test-skipped: NAME: TREEHOLE_TEST_DATABASE_URL not set` on stderr, which
//! `scripts/test` counts as skipped, not passed.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

mod contract;
mod test_database;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use commands::{
    EventStore, ExpectedVersion, IdempotencyKey, StoreError, StreamWrite, Subscription,
};
use domain::{Envelope, Metadata, NewEvent, Position, StreamId};
use infra::event_store::PostgresEventStore;
use infra::event_store::postgres::{
    LISTENER_APPLICATION_NAME, WRITE_LOCK, WRITER_APPLICATION_NAME, WRITER_SESSION_SETTINGS,
    WRITER_STATE_READ, WRITER_TRUSTING_READ,
};
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use test_database::TestDatabase;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use uuid::Uuid;

/// What this suite does with a test database besides making and dropping it.
impl TestDatabase {
    async fn connect(&self) -> PostgresEventStore {
        PostgresEventStore::connect(&self.url)
            .await
            .expect("the store connects")
    }

    /// A plain connection, to look at (or interfere with) the database behind the store's back.
    async fn admin(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("an admin connection")
    }
}

struct PostgresHarness {
    db: TestDatabase,
}

impl contract::Harness for PostgresHarness {
    async fn create() -> Self {
        Self {
            db: TestDatabase::create("treehole_test").await,
        }
    }

    async fn open(&self) -> contract::Store {
        Arc::new(self.db.connect().await)
    }

    fn unavailable() -> Option<String> {
        TestDatabase::unavailable()
    }
}

contract::event_store_contract!(PostgresHarness);

// ---------------------------------------------------------------------------------------------
// Helpers

fn event(n: u64) -> NewEvent {
    NewEvent {
        typed: Default::default(),
        event_id: Uuid::now_v7(),
        event_type: "Tested".into(),
        schema: 1,
        occurred_at: Utc::now(),
        data: json!({ "n": n }),
        metadata: Metadata::default(),
    }
}

fn events(count: u64) -> Vec<NewEvent> {
    (0..count).map(event).collect()
}

fn stream(name: &str) -> StreamId {
    StreamId::parse(format!("test-{name}")).expect("a valid stream id")
}

fn write(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamWrite {
    StreamWrite {
        stream: stream.clone(),
        expected,
        events,
    }
}

/// The whole log, read in pages.
async fn everything(store: &dyn EventStore) -> Vec<Envelope> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &Envelope| e.position);
        let page = store.read_all(after, 1000).await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Fails the test if `f` takes longer than `limit` (a hang, not a slow machine).
async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {limit:?}"))
}

/// Waits until `store`'s watch reaches `position`.
async fn heard(store: &PostgresEventStore, position: Position) {
    let mut watch = store.watch();
    within(Duration::from_secs(10), "notification", async {
        while *watch.borrow_and_update() < position {
            watch.changed().await.expect("the store closed its watch");
        }
    })
    .await;
}

/// Terminates the store connections with this `application_name` and waits until they are
/// gone, so that the next statement on them fails for sure.
async fn terminate(db: &TestDatabase, application_name: &str) -> usize {
    let mut admin = db.admin().await;
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = $1",
    )
    .bind(application_name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    for &pid in &pids {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut admin)
            .await
            .unwrap();
    }
    within(Duration::from_secs(10), "terminating connections", async {
        loop {
            let alive: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind(&pids)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
            if alive == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    pids.len()
}

// ---------------------------------------------------------------------------------------------
// Connecting

#[tokio::test]
async fn an_unreachable_server_is_named_without_its_password() {
    // Nothing listens on port 1; no server is needed for this test.
    let url = "postgres://treehole:s3cret-pw@127.0.0.1:1/treehole";
    match PostgresEventStore::connect(url).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1:1"), "{message}");
            assert!(!message.contains("s3cret-pw"), "{message}");
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to port 1"),
    }
    match PostgresEventStore::connect("postgres://treehole:s3cret-pw@127.0.0.1:port/x").await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("malformed"), "{message}");
            assert!(!message.contains("s3cret-pw"), "{message}");
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected with a malformed URL"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_starting_together_create_the_tables_once() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let mut connecting = JoinSet::new();
    for _ in 0..4 {
        let url = db.url.clone();
        connecting.spawn(async move { PostgresEventStore::connect(&url).await });
    }
    for store in connecting.join_all().await {
        let store = store.expect("every store connects");
        assert_eq!(store.head().await.unwrap(), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// One order for every process

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_appenders_on_distinct_streams_share_transactions() {
    const TASKS: u64 = 16;
    const APPENDS: u64 = 50;
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let store = Arc::new(db.connect().await);
    let start = Arc::new(Barrier::new(TASKS as usize));
    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        tasks.spawn(async move {
            let s = stream(&format!("appender{t}"));
            start.wait().await;
            let mut version = 0;
            for i in 0..APPENDS {
                let count = 1 + (i + t) % 3;
                let committed = store
                    .append(&s, ExpectedVersion::from_version(version), events(count))
                    .await
                    .unwrap_or_else(|e| panic!("{s}: {e}"));
                assert_eq!(committed.results[0].first_version, version + 1);
                version += count;
            }
            version
        });
    }
    let total: u64 = within(Duration::from_secs(60), "appends", tasks.join_all())
        .await
        .into_iter()
        .sum();
    let all = everything(&*store).await;
    // Gapless: the allocator reuses nothing and skips nothing.
    let positions: Vec<Position> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    let stats = store.stats();
    assert_eq!(stats.requests, TASKS * APPENDS);
    assert!(
        stats.transactions < stats.requests && stats.largest_batch > 1,
        "no transaction was shared: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_of_several_processes_append_in_one_gapless_order() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    several_stores_append_in_one_gapless_order(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stricter_default_isolation_level_changes_nothing() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    // Were the writer to inherit this, its transaction snapshot would predate the write lock
    // and it would number its events from a stale maximum.
    db.admin()
        .await
        .execute(&*format!(
            "ALTER DATABASE {} SET default_transaction_isolation = 'serializable'",
            db.name
        ))
        .await
        .unwrap();
    several_stores_append_in_one_gapless_order(&db).await;
}

/// Four stores, as four processes would, append concurrently, each also to a shared stream.
async fn several_stores_append_in_one_gapless_order(db: &TestDatabase) {
    const STORES: usize = 4;
    const TASKS: usize = 4;
    const APPENDS: usize = 40;
    let mut stores = Vec::new();
    for _ in 0..STORES {
        stores.push(Arc::new(db.connect().await));
    }
    let start = Arc::new(Barrier::new(STORES * TASKS));
    let mut tasks = JoinSet::new();
    for (p, store) in stores.iter().enumerate() {
        for t in 0..TASKS {
            let (store, start) = (Arc::clone(store), Arc::clone(&start));
            tasks.spawn(async move {
                // Everybody also appends to one shared stream, from every process.
                let (own, shared) = (stream(&format!("p{p}-t{t}")), stream("shared"));
                start.wait().await;
                let mut committed = Vec::new();
                for i in 0..APPENDS {
                    let writes = vec![
                        write(&own, ExpectedVersion::from_version(i as u64), events(1)),
                        write(&shared, ExpectedVersion::Any, events(1)),
                    ];
                    committed.push(store.append_many(writes, None).await.unwrap());
                }
                committed
            });
        }
    }
    let committed: Vec<_> = within(Duration::from_secs(60), "appends", tasks.join_all())
        .await
        .into_iter()
        .flatten()
        .collect();
    let all = everything(&*stores[0]).await;
    let total = (STORES * TASKS * APPENDS * 2) as u64;
    let positions: Vec<Position> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    // What each append was told is what the log holds.
    for c in &committed {
        for r in &c.results {
            let at = &all[(r.first_position - 1) as usize];
            assert_eq!((&at.stream, at.version), (&r.stream, r.first_version));
        }
    }
    let shared = stores[1].read_stream(&stream("shared"), 1).await.unwrap();
    let versions: Vec<u64> = shared.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=total / 2).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tailing_readers_see_fifty_thousand_events_from_four_processes_once_in_order() {
    const STORES: usize = 4;
    const WRITERS_PER_STORE: usize = 4;
    const APPENDS: usize = 625;
    const EVENTS_PER_APPEND: usize = 5;
    const TOTAL: usize = STORES * WRITERS_PER_STORE * APPENDS * EVENTS_PER_APPEND;
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..STORES {
        stores.push(Arc::new(db.connect().await));
    }
    // One reader in a writing process, one in a process that only reads and so hears of every
    // commit through LISTEN/NOTIFY.
    let observer: Arc<dyn EventStore> = Arc::new(db.connect().await);
    let readers: Vec<_> = [Arc::clone(&stores[0]) as Arc<dyn EventStore>, observer]
        .into_iter()
        .map(|store| {
            let mut subscription = Subscription::new(store, 0, 500);
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(TOTAL);
                while seen.len() < TOTAL {
                    seen.extend(subscription.next_batch().await.unwrap());
                }
                seen
            })
        })
        .collect();

    let started = Instant::now();
    let start = Arc::new(Barrier::new(STORES * WRITERS_PER_STORE));
    let mut writers = JoinSet::new();
    for (p, store) in stores.iter().enumerate() {
        for w in 0..WRITERS_PER_STORE {
            let (store, start) = (Arc::clone(store), Arc::clone(&start));
            writers.spawn(async move {
                let own = stream(&format!("p{p}-w{w}"));
                let shared = stream(&format!("shared{w}"));
                let mut version = 0;
                let mut appended = Vec::with_capacity(APPENDS * EVENTS_PER_APPEND);
                start.wait().await;
                for i in 0..APPENDS {
                    let batch = events(EVENTS_PER_APPEND as u64);
                    appended.extend(batch.iter().map(|e| e.event_id));
                    let expected = ExpectedVersion::from_version(version);
                    let writes = if i % 2 == 0 {
                        vec![write(&own, expected, batch)]
                    } else {
                        // Two streams at once, one of them written by every process.
                        let mut batch = batch;
                        let rest = batch.split_off(2);
                        vec![
                            write(&own, expected, batch),
                            write(&shared, ExpectedVersion::Any, rest),
                        ]
                    };
                    version += writes[0].events.len() as u64;
                    store.append_many(writes, None).await.unwrap();
                }
                appended
            });
        }
    }
    let appended: Vec<Uuid> = within(Duration::from_secs(300), "writers", writers.join_all())
        .await
        .into_iter()
        .flatten()
        .collect();
    let elapsed = started.elapsed();
    assert_eq!(appended.len(), TOTAL);
    let appended: HashSet<Uuid> = appended.into_iter().collect();
    eprintln!(
        "{TOTAL} events in {} appends by {} writers in {elapsed:?}",
        STORES * WRITERS_PER_STORE * APPENDS,
        STORES * WRITERS_PER_STORE
    );

    let log = everything(&*stores[1]).await;
    for reader in readers {
        let seen = within(
            Duration::from_secs(30),
            "a tailing reader (an event or a notification was lost)",
            reader,
        )
        .await
        .unwrap();
        assert_eq!(seen.len(), TOTAL, "the reader saw extra events");
        for pair in seen.windows(2) {
            assert!(pair[0].position < pair[1].position, "out of order");
        }
        let ids: HashSet<Uuid> = seen.iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), TOTAL, "the reader saw an event twice");
        assert_eq!(ids, appended, "the reader missed events");
        assert!(seen == log, "the reader's log differs from the stored one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_the_database_refuses_fails_alone_and_its_batch_commits() {
    const NEIGHBOURS: u64 = 32;
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let store = Arc::new(db.connect().await);
    let append = |name: String, key: Option<IdempotencyKey>| {
        let store = Arc::clone(&store);
        async move {
            let writes = vec![write(&stream(&name), ExpectedVersion::NoStream, events(1))];
            store.append_many(writes, key).await
        }
    };

    // First, that the requests sent while the writer waits all go into its next batch.
    let mut neighbours = one_batch(&db, &store, |queue| {
        for n in 0..=NEIGHBOURS {
            queue.spawn(append(format!("control{n}"), None));
        }
    })
    .await;
    while let Some(answer) = neighbours.join_next().await {
        answer
            .unwrap()
            .expect("a request of the control batch commits");
    }
    assert_eq!(store.stats().largest_batch, NEIGHBOURS + 1, "not one batch");

    // Then the same with one of them refused by the database alone: a key too long for its
    // index.
    let long_key: String = (0..1000)
        .map(|_| Uuid::new_v4().simple().to_string())
        .collect();
    let key = IdempotencyKey {
        key: long_key,
        fingerprint: "fp".into(),
    };
    let mut refused = None;
    let mut neighbours = one_batch(&db, &store, |queue| {
        for n in 0..NEIGHBOURS {
            queue.spawn(append(format!("neighbour{n}"), None));
        }
        refused = Some(queue.spawn(append("refused".into(), Some(key))).id());
    })
    .await;
    let mut committed = 0;
    while let Some(answer) = neighbours.join_next_with_id().await {
        let (id, answer) = answer.unwrap();
        match answer {
            Err(StoreError::Backend(_)) if Some(id) == refused => {}
            Ok(_) if Some(id) != refused => committed += 1,
            other => panic!("unexpected answer: {other:?}"),
        }
    }
    assert_eq!(committed, NEIGHBOURS);
    let all = everything(&*store).await;
    let positions: Vec<Position> = all.iter().map(|e| e.position).collect();
    // Two plugs, the control batch and the neighbours.
    let total = 2 + (NEIGHBOURS + 1) + NEIGHBOURS;
    assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    assert!(all.iter().all(|e| e.stream != stream("refused")));
}

type Answers = JoinSet<Result<commands::Committed, StoreError>>;

/// Makes the requests that `send` queues go to the writer in one batch: holds the write lock
/// while a plug request makes the writer wait for it, and lets go once they are queued.
async fn one_batch(
    db: &TestDatabase,
    store: &Arc<PostgresEventStore>,
    send: impl FnOnce(&mut Answers),
) -> Answers {
    let mut holder = db.admin().await;
    holder
        .execute(&*format!("SELECT pg_advisory_lock({WRITE_LOCK})"))
        .await
        .unwrap();
    let plug = {
        let store = Arc::clone(store);
        let s = stream(&format!("plug-{}", Uuid::new_v4().simple()));
        tokio::spawn(async move { store.append(&s, ExpectedVersion::NoStream, events(1)).await })
    };
    writer_waits_for_the_lock(db).await;
    let mut answers = JoinSet::new();
    send(&mut answers);
    // Queueing takes no time once the tasks run; give them ample time to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    holder
        .execute(&*format!("SELECT pg_advisory_unlock({WRITE_LOCK})"))
        .await
        .unwrap();
    plug.await.unwrap().expect("the plug commits");
    answers
}

/// Waits until the store's writer is blocked on a lock.
async fn writer_waits_for_the_lock(db: &TestDatabase) {
    let mut admin = db.admin().await;
    within(
        Duration::from_secs(10),
        "the writer waiting for the lock",
        async {
            loop {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = $1 AND wait_event_type = 'Lock'",
                )
                .bind(WRITER_APPLICATION_NAME)
                .fetch_one(&mut admin)
                .await
                .unwrap();
                if waiting > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Notifications and reconnection

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_store_hears_of_the_first_ones_appends() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let (writer, reader) = (db.connect().await, db.connect().await);
    let s = stream("announced");
    let mut watch = reader.watch();
    for round in 0..3u64 {
        let committed = writer
            .append(&s, ExpectedVersion::from_version(round * 2), events(2))
            .await
            .unwrap();
        within(Duration::from_secs(5), "notification", watch.changed())
            .await
            .unwrap();
        // One commit, one notification, carrying its head.
        assert_eq!(*watch.borrow_and_update(), committed.last_position());
        let read = reader.read_all(committed.last_position() - 2, 10).await;
        assert_eq!(read.unwrap().len(), 2);
    }
    assert_eq!(reader.stats().requests, 0, "the reader wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listener_that_lost_its_connection_listens_again_and_catches_up() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let (writer, reader) = (db.connect().await, db.connect().await);
    let s = stream("relistened");
    let first = writer
        .append(&s, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    heard(&reader, first.last_position()).await;

    assert_eq!(terminate(&db, LISTENER_APPLICATION_NAME).await, 2);
    // Committed while nobody listens: only the re-read after reconnecting can announce it.
    let second = writer
        .append(&s, ExpectedVersion::Exact(1), events(1))
        .await
        .unwrap();
    heard(&reader, second.last_position()).await;
    // And notifications flow again.
    let third = writer
        .append(&s, ExpectedVersion::Exact(2), events(1))
        .await
        .unwrap();
    heard(&reader, third.last_position()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_that_lost_its_connection_reconnects_unnoticed() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let store = db.connect().await;
    let s = stream("rewritten");
    store
        .append(&s, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    assert_eq!(terminate(&db, WRITER_APPLICATION_NAME).await, 1);
    let after = store
        .append(&s, ExpectedVersion::Exact(1), events(1))
        .await
        .expect("the writer reconnects before its next batch");
    assert_eq!(after.results[0].first_version, 2);
    assert_eq!(store.read_stream(&s, 1).await.unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Storage

#[tokio::test]
async fn payloads_are_stored_as_sent_even_with_nul_characters() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let store = db.connect().await;
    // JSONB would refuse "\u0000"; a client's payload may well carry one.
    let sent = NewEvent {
        typed: Default::default(),
        data: json!({"text": "nul \u{0} here", "z": 1, "a": [1.5, -0.0, 1e300]}),
        ..event(0)
    };
    store
        .append(
            &stream("nul"),
            ExpectedVersion::NoStream,
            vec![sent.clone()],
        )
        .await
        .unwrap();
    let read = store.read_stream(&stream("nul"), 1).await.unwrap();
    assert_eq!(read[0].data, sent.data);
}

// ---------------------------------------------------------------------------------------------
// The command handler's batches, and two processes' handlers on one hot post

mod batches;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_post_commits_in_batches_and_a_refused_command_fails_alone() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let store = Arc::new(db.connect().await);
    let counted = store.clone();
    batches::a_hot_post_commits_in_batches_and_a_refused_command_fails_alone(store, move || {
        counted.stats().requests
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_hot_post_never_give_two_users_one_name() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let (first, second) = (Arc::new(db.connect().await), Arc::new(db.connect().await));
    batches::stale_handlers_decide_again(first, second).await;
}

/// A writer trusts its memory of the versions it committed; another process's appends make
/// that memory old, and the unique index on `(stream, version)` tells it so. Both a write that
/// would take a stored version and a refusal made on a remembered version are decided again on
/// the table; a real conflict is still refused.
#[tokio::test]
async fn a_version_remembered_by_one_writer_and_moved_by_another_is_read_again() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let (a, b) = (db.connect().await, db.connect().await);
    let s = stream("shared");
    a.append(&s, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    b.append(&s, ExpectedVersion::Exact(1), events(2))
        .await
        .unwrap();
    // `a` remembers version 1: its insert at version 2 meets `b`'s event.
    let any = a.append(&s, ExpectedVersion::Any, events(1)).await.unwrap();
    assert_eq!(any.results[0].first_version, 4);
    b.append(&s, ExpectedVersion::Exact(4), events(1))
        .await
        .unwrap();
    // `a` remembers version 4, the table holds 5: the expectation holds on the table.
    let exact = a
        .append(&s, ExpectedVersion::Exact(5), events(1))
        .await
        .unwrap();
    assert_eq!(exact.results[0].first_version, 6);
    let refused = a
        .append(&s, ExpectedVersion::Exact(5), events(1))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Conflict { actual: 6, .. }),
        "{refused:?}"
    );
    let read = b.read_stream(&s, 1).await.unwrap();
    let versions: Vec<u64> = read.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=6).collect::<Vec<_>>());
}

/// The writer plans its state read once per connection, on the table as it is then. Planned
/// on a log of three events that was just analysed (where a scan is the cheapest plan), the
/// plan must still read the log by its indexes after it has grown, or every group commit would
/// scan the whole log.
#[tokio::test]
async fn the_writer_s_state_read_keeps_to_the_indexes_as_the_log_grows() {
    let Some(db) = TestDatabase::create_or_skip("treehole_test").await else {
        return;
    };
    let store = db.connect().await;
    let mut admin = db.admin().await;
    // No analysis behind the test's back: it would make the plan again.
    admin
        .execute("ALTER TABLE events SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    let small = stream("small");
    store
        .append(&small, ExpectedVersion::NoStream, events(3))
        .await
        .unwrap();
    admin.execute("ANALYZE events").await.unwrap();

    let mut writer = db.admin().await;
    writer.execute(WRITER_SESSION_SETTINGS).await.unwrap();
    writer
        .execute(&*format!(
            "PREPARE state_read (text[], uuid[], text[]) AS {WRITER_STATE_READ}"
        ))
        .await
        .unwrap();
    writer
        .execute(&*format!(
            "PREPARE trusting_read (text[]) AS {WRITER_TRUSTING_READ}"
        ))
        .await
        .unwrap();
    let args = format!(
        "('{{{}}}', '{{{}}}', '{{}}')",
        small.as_str(),
        Uuid::now_v7()
    );
    let trusting_args = format!("('{{{}}}')", small.as_str());
    for execute in [
        format!("EXECUTE state_read {args}"),
        format!("EXECUTE trusting_read {trusting_args}"),
    ] {
        writer.execute(&*execute).await.unwrap();
    }

    for n in 0..20 {
        let grown = stream(&format!("grown-{n}"));
        store
            .append(&grown, ExpectedVersion::NoStream, events(500))
            .await
            .unwrap();
    }
    for execute in [
        format!("EXECUTE state_read {args}"),
        format!("EXECUTE trusting_read {trusting_args}"),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {execute}"))
            .fetch_all(&mut writer)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("events_pkey"), "{execute}: {plan}");
        assert!(!plan.contains("Seq Scan on events"), "{execute}: {plan}");
    }
}
