//! How fast projections rebuild on PostgreSQL, against the raw `COPY` rate of the same rows, from
//! a log sealed as production stores it and from a plain one: what sealing costs a rebuild.
//!
//! ```text
//! pg_env="$(scripts/pg-start /tmp/benchpg)" && eval "$pg_env"
//! cargo bench -p infra --bench rebuild                      # TREEHOLE_BENCH_EVENTS=100000
//! cargo bench -p infra --bench rebuild -- --events 20000 --json
//! cargo bench -p infra --bench rebuild -- --sealed          # one log only (or --plain)
//! scripts/pg-stop /tmp/benchpg
//! ```
//!
//! The server is `TREEHOLE_BENCH_DATABASE_URL`, else `TREEHOLE_TEST_DATABASE_URL`; without
//! either the bench says so and succeeds. It measures two logs of the same history, the sealed
//! one first, each in a database of its own, dropped at its end (`--sealed`, `--plain`, or
//! `TREEHOLE_BENCH_LOG=sealed|plain`, measures one of them only):
//!
//! - **sealed**: the log as a running treehole stores it. The history goes through
//!   `commands::SealedStore` over `PostgresEventStore`, with `Keys` over `PostgresKeyStore`:
//!   every personal value (e-mails, usernames, password hashes, reservation owners, the
//!   authors of anonymous content) is sealed with its owner's data key on append, and opened
//!   on every read while the key exists: key lookups and XChaCha20-Poly1305 are in the
//!   measured path.
//! - **plain**: the same history straight into `PostgresEventStore`, personal values in their
//!   open form, nothing to open on read: the same work without sealing.
//!
//! For each log the bench
//!
//! 1. writes a synthetic forum history (registrations with their reservations and sessions,
//!    posts in Chinese and English, many pseudonymous comments, a few deletions, tasks)
//!    through `append_many`, from the real event enums; for the sealed log each new user's
//!    data key and each key handle is made before the batch that needs it
//!    (`History::write` with the sealing store's `Keys`), as registering and publishing do;
//! 2. rebuilds every projection of `projections::all()` that has read-model tables (the search
//!    index has a bench of its own, `benches/search.rs`) from that log into
//!    `PostgresReadModels`, one after the other, each reading the whole log, then all of them
//!    together in one pass over the log;
//! 3. derives the rows those read models end with by folding the same projections' changes
//!    in memory, and loads them with `COPY ... FROM STDIN` into plain tables made `LIKE` the
//!    rebuilt ones (same columns, constraints and indexes, the private `author_id` columns
//!    included): the baseline, what writing the result costs with no log to read and no
//!    per-event statement;
//! 4. checks that the baseline tables and the rebuilt ones hold exactly the same rows, and that
//!    the stored log holds no open personal value (sealed) or no sealed one (plain).
//!
//! Every read (each rebuild, the derivation) gets a sealing store with a `Keys` of its own,
//! its cache empty, as a `treehole rebuild` process starts: the first sight of a user's key or
//! of a key handle costs a query of the key store, every later one is a lookup in memory. The
//! key store counts its calls and the time they take, so each step of the sealed run says how
//! much of it was key-store round trips (`keys s`, `key calls`) rather than sealing proper.
//!
//! Both rates are given in events of the log per second, so the ratio says what share of the
//! bulk-load speed a rebuild reaches. With both logs, a last section sets the sealed run beside
//! the plain one: how many times as long each step took, and how many times as large the log is.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use projections::{CommentChange, FeedChange, UserChange};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use commands::{EventStore, KeyDump, KeyError, KeyStore, Keys, SealedStore};
use domain::{Event, Position, UserId};
use infra::event_store::PostgresEventStore;
use infra::keys::PostgresKeyStore;
use infra::read_model::PostgresReadModels;
use infra::source::StoreSource;
use infra::synth::History;
use projections::runner::{rebuild, rebuild_together};
use projections::stats::StatsChange;
use projections::tasks::TaskChange;
use projections::{Change, EventSource, Projection};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

type BenchResult<T> = Result<T, Box<dyn Error>>;

const DEFAULT_EVENTS: u64 = 100_000;
/// Events per `append_many` call while writing the history.
const APPEND_BATCH: usize = 500;
/// Events per read while deriving the baseline rows.
const READ_PAGE: usize = 5_000;
/// Bytes per `CopyData` message.
const COPY_CHUNK: usize = 1 << 20;
/// The server secret the sealed log's data keys are wrapped under.
const SERVER_SECRET: &[u8] = b"treehole rebuild bench";

/// The read-model tables each projection owns, as `PostgresReadModels` names them.
const OWNED_TABLES: &[(&str, &[&str])] = &[
    ("users", &["users", "sessions"]),
    ("feed", &["feed"]),
    ("comments", &["comments"]),
    ("tasks", &["models", "workers", "tasks", "task_history"]),
    ("stats", &["stats_counters", "stats_active", "stats_tasks"]),
];

/// The projections the bench rebuilds: those whose tables it knows.
fn benched() -> Vec<Arc<dyn Projection>> {
    projections::all()
        .into_iter()
        .filter(|p| OWNED_TABLES.iter().any(|(name, _)| *name == p.name()))
        .collect()
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let options = Options::from_args()?;
    let Some(server) = ["TREEHOLE_BENCH_DATABASE_URL", "TREEHOLE_TEST_DATABASE_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    else {
        println!("skipped: TREEHOLE_BENCH_DATABASE_URL not set");
        return Ok(());
    };
    let mut runs = Vec::new();
    let mut server_version = String::new();
    for &log in &options.logs {
        let mut scratch = ScratchDatabase::create(&server).await?;
        server_version = scratch.server_version().await?;
        let outcome = measure(&scratch.url, options.events, log).await;
        scratch.drop_database().await?;
        runs.push(outcome?);
    }
    check_same_row_counts(&runs)?;
    let report = Report {
        runs,
        server_version,
        machine: Machine::here(),
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        report.print();
    }
    Ok(())
}

/// How the log of a run is stored and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    /// Through `commands::SealedStore`: personal values sealed on append, opened on read.
    Sealed,
    /// Straight into the event store: personal values in their open form.
    Plain,
}

impl Log {
    fn name(self) -> &'static str {
        match self {
            Log::Sealed => "sealed",
            Log::Plain => "plain",
        }
    }

    fn parse(name: &str) -> BenchResult<Vec<Self>> {
        match name {
            "sealed" => Ok(vec![Log::Sealed]),
            "plain" => Ok(vec![Log::Plain]),
            "both" | "" => Ok(vec![Log::Sealed, Log::Plain]),
            other => {
                Err(format!("TREEHOLE_BENCH_LOG is sealed, plain or both, not {other}").into())
            }
        }
    }
}

struct Options {
    events: u64,
    json: bool,
    /// The logs to measure, in this order.
    logs: Vec<Log>,
}

impl Options {
    /// `--events N` (else `TREEHOLE_BENCH_EVENTS`, else 100000), `--json`, and `--sealed` or
    /// `--plain` (else `TREEHOLE_BENCH_LOG`, else both). Anything else is ignored:
    /// `cargo bench` passes `--bench` of its own.
    fn from_args() -> BenchResult<Self> {
        let mut events = match std::env::var("TREEHOLE_BENCH_EVENTS") {
            Ok(n) if !n.is_empty() => n.parse()?,
            _ => DEFAULT_EVENTS,
        };
        let mut logs = Log::parse(&std::env::var("TREEHOLE_BENCH_LOG").unwrap_or_default())?;
        let mut json = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--json" => json = true,
                "--sealed" => logs = vec![Log::Sealed],
                "--plain" => logs = vec![Log::Plain],
                "--events" => events = args.next().ok_or("--events needs a number")?.parse()?,
                other => {
                    if let Some(n) = other.strip_prefix("--events=") {
                        events = n.parse()?;
                    }
                }
            }
        }
        if events == 0 {
            return Err("the history needs at least one event".into());
        }
        Ok(Self { events, json, logs })
    }
}

/// A database of the bench's own on the given server.
struct ScratchDatabase {
    admin: PgConnection,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(server: &str) -> BenchResult<Self> {
        let mut admin = PgConnection::connect(server).await?;
        let name = format!("treehole_bench_{}", Uuid::new_v4().simple());
        admin.execute(&*format!("CREATE DATABASE {name}")).await?;
        let mut url = url::Url::parse(server)?;
        url.set_path(&name);
        Ok(Self {
            admin,
            name,
            url: url.into(),
        })
    }

    async fn server_version(&mut self) -> BenchResult<String> {
        let (version,): (String,) = sqlx::query_as("SHOW server_version")
            .fetch_one(&mut self.admin)
            .await?;
        Ok(version)
    }

    /// Drops the database, ending the connections the stores may still hold.
    async fn drop_database(mut self) -> BenchResult<()> {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        self.admin.execute(&*drop).await?;
        Ok(())
    }
}

/// The log of one run: the PostgreSQL event store and, for a sealed log, its key store.
struct LogStore {
    events: Arc<PostgresEventStore>,
    keys: Option<Arc<CountingKeyStore>>,
}

impl LogStore {
    async fn connect(url: &str, log: Log) -> BenchResult<Self> {
        let events = Arc::new(PostgresEventStore::connect(url).await?);
        let keys = match log {
            Log::Sealed => Some(Arc::new(CountingKeyStore::new(
                PostgresKeyStore::connect(url).await?,
            ))),
            Log::Plain => None,
        };
        Ok(Self { events, keys })
    }

    /// The store as a fresh process sees the log: for a sealed log, a sealing store whose
    /// `Keys` has nothing cached yet, and those `Keys`.
    fn open(&self) -> (Arc<dyn EventStore>, Option<Arc<Keys>>) {
        match &self.keys {
            Some(store) => {
                let keys = Arc::new(Keys::new(store.clone(), SERVER_SECRET));
                let sealed = SealedStore::new(self.events.clone(), keys.clone());
                (Arc::new(sealed), Some(keys))
            }
            None => (self.events.clone(), None),
        }
    }

    /// The key-store calls made so far (none for a plain log).
    fn key_use(&self) -> KeyUse {
        self.keys
            .as_ref()
            .map_or_else(KeyUse::default, |k| k.used())
    }
}

/// Calls to the key store and the seconds spent waiting on them.
#[derive(Debug, Clone, Copy, Default)]
struct KeyUse {
    calls: u64,
    seconds: f64,
}

impl KeyUse {
    fn since(self, before: KeyUse) -> KeyUse {
        KeyUse {
            calls: self.calls - before.calls,
            seconds: self.seconds - before.seconds,
        }
    }

    fn plus(self, other: KeyUse) -> KeyUse {
        KeyUse {
            calls: self.calls + other.calls,
            seconds: self.seconds + other.seconds,
        }
    }
}

/// The PostgreSQL key store, counting its calls and the time they take, so that each step can
/// tell how much of it was the key store's round trips (making keys and handles on write,
/// resolving handles and fetching keys into an empty cache on read) rather than sealing itself.
struct CountingKeyStore {
    inner: PostgresKeyStore,
    calls: AtomicU64,
    nanos: AtomicU64,
}

impl CountingKeyStore {
    fn new(inner: PostgresKeyStore) -> Self {
        Self {
            inner,
            calls: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
        }
    }

    async fn count<T>(&self, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        out
    }

    fn used(&self) -> KeyUse {
        KeyUse {
            calls: self.calls.load(Ordering::Relaxed),
            seconds: self.nanos.load(Ordering::Relaxed) as f64 * 1e-9,
        }
    }
}

#[async_trait]
impl KeyStore for CountingKeyStore {
    async fn put_key(&self, user: UserId, wrapped: Vec<u8>) -> Result<Vec<u8>, KeyError> {
        self.count(self.inner.put_key(user, wrapped)).await
    }

    async fn get_key(&self, user: UserId) -> Result<Option<Vec<u8>>, KeyError> {
        self.count(self.inner.get_key(user)).await
    }

    async fn put_handle(&self, handle: &str, user: UserId, subject: &str) -> Result<(), KeyError> {
        self.count(self.inner.put_handle(handle, user, subject))
            .await
    }

    async fn subjects(&self, user: UserId, prefix: &str) -> Result<Vec<String>, KeyError> {
        self.count(self.inner.subjects(user, prefix)).await
    }

    async fn resolve(&self, handle: &str) -> Result<Option<UserId>, KeyError> {
        self.count(self.inner.resolve(handle)).await
    }

    async fn resolve_many(&self, handles: &[String]) -> Result<Vec<(String, UserId)>, KeyError> {
        self.count(self.inner.resolve_many(handles)).await
    }

    async fn put_keys(&self, keys: &[(UserId, Vec<u8>)]) -> Result<(), KeyError> {
        self.count(self.inner.put_keys(keys)).await
    }

    async fn put_handles(&self, handles: &[(String, UserId, String)]) -> Result<(), KeyError> {
        self.count(self.inner.put_handles(handles)).await
    }

    async fn get_keys(&self, users: &[UserId]) -> Result<Vec<(UserId, Vec<u8>)>, KeyError> {
        self.count(self.inner.get_keys(users)).await
    }

    async fn shred(&self, user: UserId) -> Result<(), KeyError> {
        self.count(self.inner.shred(user)).await
    }

    async fn all(&self) -> Result<KeyDump, KeyError> {
        self.count(self.inner.all()).await
    }
}

/// Writes the history, rebuilds every projection and loads the baseline, timing each.
async fn measure(url: &str, events: u64, log: Log) -> BenchResult<Run> {
    let stores = LogStore::connect(url, log).await?;
    eprintln!("{} log: writing {events} events ...", log.name());
    let (writer, keys) = stores.open();
    let (started, before) = (Instant::now(), stores.key_use());
    History::new()
        .write(&*writer, keys.as_deref(), events, APPEND_BATCH, |_| {})
        .await?;
    let write_seconds = started.elapsed().as_secs_f64();
    let write_keys = stores.key_use().since(before);
    drop((writer, keys));
    let log_length = stores.events.head().await?;

    let models = Arc::new(PostgresReadModels::connect(url).await?);
    let mut rebuilt = Vec::new();
    for projection in benched() {
        eprintln!("{} log: rebuilding {} ...", log.name(), projection.name());
        let source: Arc<dyn EventSource> = Arc::new(StoreSource::new(stores.open().0));
        let (started, before) = (Instant::now(), stores.key_use());
        rebuild(projection.clone(), source, models.clone(), None, &|_, _| {}).await?;
        let took = started.elapsed();
        rebuilt.push((projection, took, stores.key_use().since(before)));
    }
    // The same projections again, together: one pass over the log for all of them (what
    // `treehole rebuild all` does). These generations are the ones checked against the baseline.
    eprintln!("{} log: rebuilding them all together ...", log.name());
    let source: Arc<dyn EventSource> = Arc::new(StoreSource::new(stores.open().0));
    let (started, before) = (Instant::now(), stores.key_use());
    let together =
        rebuild_together(&benched(), source, models.clone(), None, &|_, _, _| {}).await?;
    let together_seconds = started.elapsed().as_secs_f64();
    let together_keys = stores.key_use().since(before);

    eprintln!("{} log: deriving the rows in memory ...", log.name());
    let reader = stores.open().0;
    let (started, before) = (Instant::now(), stores.key_use());
    let model = derive_rows(&*reader).await?;
    let derive_seconds = started.elapsed().as_secs_f64();
    let derive_keys = stores.key_use().since(before);

    eprintln!("{} log: loading the baseline with COPY ...", log.name());
    let mut conn = PgConnection::connect(url).await?;
    let mut lines = Vec::new();
    for (projection, took, keys) in rebuilt {
        let name = projection.name();
        let generation = together
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, g)| g.number)
            .ok_or_else(|| format!("the rebuild together did not build {name}"))?;
        let tables = OWNED_TABLES
            .iter()
            .find(|(p, _)| *p == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| format!("the bench does not know the tables of projection {name}"))?;
        let (rows, copy_seconds) = load_baseline(&mut conn, &model, tables, generation).await?;
        lines.push(Line {
            projection: name,
            rows,
            rebuild_seconds: took.as_secs_f64(),
            keys,
            copy_seconds,
        });
    }
    check_stored_form(&mut conn, log).await?;
    let (log_bytes,): (i64,) = sqlx::query_as("SELECT pg_total_relation_size('events')")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    models.close().await;
    Ok(Run {
        log,
        log_length,
        log_bytes: log_bytes as u64,
        write_seconds,
        write_keys,
        derive_seconds,
        derive_keys,
        lines,
        together_seconds,
        together_keys,
    })
}

/// Reads the whole log and folds every projection's changes into the rows they leave.
async fn derive_rows(store: &dyn EventStore) -> BenchResult<Model> {
    let projections = benched();
    let mut model = Model::default();
    let mut after: Position = 0;
    loop {
        let page = store.read_all(after, READ_PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(model);
        };
        after = last.position;
        for envelope in &page {
            let event = Event::decode(envelope)?;
            for projection in &projections {
                for change in projection.apply(envelope, &event) {
                    model.apply(change);
                }
            }
        }
    }
}

/// The stored text of a sealed log holds sealed personal values and no open one; a plain log
/// holds open ones only. Otherwise the run did not measure what it says.
async fn check_stored_form(conn: &mut PgConnection, log: Log) -> BenchResult<()> {
    let (sealed, open): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE data::text LIKE '%\"{}\"%'), \
                count(*) FILTER (WHERE data::text LIKE '%\"{}\"%') FROM events",
        domain::personal::SEALED,
        domain::personal::OPEN
    ))
    .fetch_one(&mut *conn)
    .await?;
    let as_expected = match log {
        Log::Sealed => sealed > 0 && open == 0,
        Log::Plain => sealed == 0 && open > 0,
    };
    if !as_expected {
        return Err(format!(
            "the {} log holds {sealed} events with sealed values and {open} with open ones",
            log.name()
        )
        .into());
    }
    Ok(())
}

/// Both logs hold the same history (the same seed, fresh ids), so their read models must hold
/// as many rows, table for table.
fn check_same_row_counts(runs: &[Run]) -> BenchResult<()> {
    let [a, b] = runs else { return Ok(()) };
    for (x, y) in a.lines.iter().zip(&b.lines) {
        if x.projection != y.projection || x.rows != y.rows {
            return Err(format!(
                "{} of the {} log has {} rows, {} of the {} log {}",
                x.projection,
                a.log.name(),
                x.rows,
                y.projection,
                b.log.name(),
                y.rows
            )
            .into());
        }
    }
    Ok(())
}

/// Copies `tables` of the model into fresh tables shaped like generation `generation` of the
/// rebuilt ones, checks both hold the same rows, and returns the rows and the seconds the
/// `COPY`s took.
async fn load_baseline(
    conn: &mut PgConnection,
    model: &Model,
    tables: &[&str],
    generation: u32,
) -> BenchResult<(u64, f64)> {
    let mut rows = 0;
    let mut seconds = 0.0;
    for &table in tables {
        let (baseline, rebuilt) = (
            format!("baseline_{table}"),
            format!("{table}_g{generation}"),
        );
        conn.execute(&*format!(
            "CREATE TABLE {baseline} (LIKE {rebuilt} INCLUDING ALL)"
        ))
        .await?;
        let csv = model
            .csv(table)
            .ok_or_else(|| format!("the bench does not know table {table}"))?;
        let started = Instant::now();
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY {baseline} ({}) FROM STDIN WITH (FORMAT csv)",
                csv.columns
            ))
            .await?;
        for chunk in csv.body.as_bytes().chunks(COPY_CHUNK) {
            copy.send(chunk).await?;
        }
        let copied = copy.finish().await?;
        seconds += started.elapsed().as_secs_f64();
        if copied != csv.rows {
            return Err(format!("COPY wrote {copied} rows of {table}, not {}", csv.rows).into());
        }
        check_same_rows(conn, &baseline, &rebuilt).await?;
        rows += copied;
    }
    Ok((rows, seconds))
}

async fn check_same_rows(conn: &mut PgConnection, a: &str, b: &str) -> BenchResult<()> {
    let (differing,): (i64,) = sqlx::query_as(&format!(
        "SELECT (SELECT count(*) FROM (TABLE {a} EXCEPT ALL TABLE {b}) x) \
              + (SELECT count(*) FROM (TABLE {b} EXCEPT ALL TABLE {a}) y)"
    ))
    .fetch_one(&mut *conn)
    .await?;
    if differing != 0 {
        return Err(format!("{a} and {b} differ in {differing} rows").into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The rows the projections leave, folded in memory

/// Rows under a primary key, in insertion order; inserting an existing key does nothing, as
/// the store's `ON CONFLICT DO NOTHING`.
struct Rows<R> {
    slots: Vec<Option<R>>,
    index: HashMap<Uuid, usize>,
}

impl<R> Default for Rows<R> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<R> Rows<R> {
    fn insert(&mut self, key: Uuid, row: R) {
        if !self.index.contains_key(&key) {
            self.index.insert(key, self.slots.len());
            self.slots.push(Some(row));
        }
    }

    fn get_mut(&mut self, key: Uuid) -> Option<&mut R> {
        let slot = *self.index.get(&key)?;
        self.slots[slot].as_mut()
    }

    fn remove(&mut self, key: Uuid) {
        if let Some(slot) = self.index.remove(&key) {
            self.slots[slot] = None;
        }
    }

    /// Removes every row `remove` says so of, as a `DELETE ... WHERE` would.
    fn remove_where(&mut self, remove: impl Fn(&R) -> bool) {
        let slots = &mut self.slots;
        self.index.retain(|_, slot| {
            let gone = slots[*slot].as_ref().is_some_and(&remove);
            if gone {
                slots[*slot] = None;
            }
            !gone
        });
    }

    fn iter(&self) -> impl Iterator<Item = &R> {
        self.slots.iter().flatten()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut R> {
        self.slots.iter_mut().flatten()
    }
}

struct UserRow {
    user_id: Uuid,
    username: String,
    email: String,
    is_admin: bool,
    registered_at: DateTime<Utc>,
}

struct SessionRow {
    session_id: Uuid,
    token_hash: String,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    device: Option<String>,
    created_at: DateTime<Utc>,
    /// Midnight (UTC) of the last day seen.
    last_seen: DateTime<Utc>,
}

struct PostRow {
    post_id: Uuid,
    position: Position,
    author_name: String,
    anonymous: bool,
    title: Option<String>,
    body: String,
    tags: Vec<String>,
    comment_count: i64,
    commenters: i64,
    created_unix: i64,
    likes: i64,
    dislikes: i64,
    followers: i64,
    poll_options: Option<String>,
    poll_counts: Option<String>,
    created_at: DateTime<Utc>,
    last_activity_at: DateTime<Utc>,
    /// The author of a named post (a private column); `None` when anonymous or forgotten.
    author_id: Option<Uuid>,
}

struct CommentRow {
    comment_id: Uuid,
    post_id: Uuid,
    position: Position,
    author_name: String,
    anonymous: bool,
    is_host: bool,
    body: String,
    reply_to: Option<Uuid>,
    created_at: DateTime<Utc>,
    likes: i64,
    dislikes: i64,
    /// The author of a named comment (a private column); `None` when anonymous or forgotten.
    author_id: Option<Uuid>,
}

struct TaskRow {
    task_id: Uuid,
    model: String,
    published_ms: i64,
    first_claimed_ms: Option<i64>,
    claimed_ms: Option<i64>,
    finished_ms: Option<i64>,
    finished_day: Option<String>,
    state: Option<&'static str>,
}

struct ModelRow {
    name: String,
    kind: String,
    input_schema: serde_json::Value,
    max_concurrent: i64,
    enabled: bool,
    registered_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct WorkerRow {
    worker_id: Uuid,
    name: String,
    models: serde_json::Value,
    token_hash: String,
    revoked: bool,
    registered_at: DateTime<Utc>,
}

/// A row of the `tasks` projection's `tasks` table.
struct QueuedRow {
    task_id: Uuid,
    position: Position,
    submitter_id: Uuid,
    model: String,
    input: serde_json::Value,
    webhook_url: Option<String>,
    priority: i64,
    status: String,
    worker_id: Option<Uuid>,
    attempts: i64,
    max_attempts: i64,
    lease_until: Option<DateTime<Utc>>,
    result: Option<serde_json::Value>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    webhook_state: Option<String>,
    webhook_attempts: i64,
    webhook_last_at: Option<DateTime<Utc>>,
}

struct HistoryRow {
    position: Position,
    task_id: Uuid,
    event: String,
    detail: serde_json::Value,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct Model {
    models: BTreeMap<String, ModelRow>,
    workers: Rows<WorkerRow>,
    tasks: Rows<QueuedRow>,
    task_history: BTreeMap<Position, HistoryRow>,
    users: Rows<UserRow>,
    sessions: Rows<SessionRow>,
    feed: Rows<PostRow>,
    comments: Rows<CommentRow>,
    comments_of: HashMap<Uuid, Vec<Uuid>>,
    /// (day, metric, key) -> value
    stats_counters: BTreeMap<(String, &'static str, String), i64>,
    /// (day, user id)
    stats_active: BTreeSet<(String, String)>,
    stats_tasks: Rows<TaskRow>,
}

/// A day as the `sessions.last_seen` column holds it.
fn midnight(day: chrono::NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// One table's rows as `COPY ... WITH (FORMAT csv)` input.
struct Csv {
    columns: &'static str,
    body: String,
    rows: u64,
}

impl Model {
    /// What the PostgreSQL store's statement for `change` does to its table.
    fn apply(&mut self, change: Change) {
        match change {
            Change::Users(UserChange::InsertUser {
                user_id,
                username,
                email,
                registered_at,
            }) => self.users.insert(
                user_id.as_uuid(),
                UserRow {
                    user_id: user_id.as_uuid(),
                    username,
                    email,
                    is_admin: false,
                    registered_at,
                },
            ),
            Change::Users(UserChange::SetAdmin { user_id }) => {
                if let Some(user) = self.users.get_mut(user_id.as_uuid()) {
                    user.is_admin = true;
                }
            }
            Change::Users(UserChange::InsertSession {
                session_id,
                user_id,
                token_hash,
                expires_at,
                device,
                created_at,
            }) => self.sessions.insert(
                session_id.as_uuid(),
                SessionRow {
                    session_id: session_id.as_uuid(),
                    token_hash,
                    user_id: user_id.as_uuid(),
                    expires_at,
                    device,
                    created_at,
                    last_seen: midnight(created_at.date_naive()),
                },
            ),
            Change::Users(UserChange::SeeSession { session_id, day }) => {
                if let Some(session) = self.sessions.get_mut(session_id.as_uuid()) {
                    session.last_seen = session.last_seen.max(midnight(day));
                }
            }
            Change::Users(UserChange::EndSession { session_id }) => {
                self.sessions.remove(session_id.as_uuid())
            }
            Change::Users(UserChange::DeleteUser { user_id }) => {
                let user_id = user_id.as_uuid();
                self.sessions.remove_where(|s| s.user_id == user_id);
                self.users.remove(user_id);
            }
            Change::Feed(FeedChange::InsertPost {
                post_id,
                position,
                author_id,
                author_name,
                anonymous,
                title,
                body,
                tags,
                created_at,
            }) => self.feed.insert(
                post_id.as_uuid(),
                PostRow {
                    post_id: post_id.as_uuid(),
                    position,
                    author_name,
                    anonymous,
                    title,
                    body,
                    tags,
                    comment_count: 0,
                    commenters: 0,
                    created_unix: created_at.timestamp(),
                    likes: 0,
                    dislikes: 0,
                    followers: 0,
                    poll_options: None,
                    poll_counts: None,
                    created_at,
                    last_activity_at: created_at,
                    author_id: author_id.map(|a| a.as_uuid()),
                },
            ),
            Change::Feed(FeedChange::DeletePost { post_id }) => self.feed.remove(post_id.as_uuid()),
            Change::Feed(FeedChange::ForgetPostAuthor { user_id }) => {
                let author = Some(user_id.as_uuid());
                for post in self.feed.iter_mut().filter(|p| p.author_id == author) {
                    post.author_name = projections::DELETED_USER.to_owned();
                    post.author_id = None;
                }
            }
            Change::Feed(FeedChange::OpenPoll { post_id, options }) => {
                if let Some(post) = self.feed.get_mut(post_id.as_uuid()) {
                    post.poll_counts = serde_json::to_string(&vec![0; options.len()]).ok();
                    post.poll_options = serde_json::to_string(&options).ok();
                }
            }
            Change::Feed(FeedChange::SetPollCounts { post_id, counts }) => {
                if let Some(post) = self.feed.get_mut(post_id.as_uuid()) {
                    post.poll_counts = serde_json::to_string(&counts).ok();
                }
            }
            Change::Feed(FeedChange::SetReactions {
                post_id,
                likes,
                dislikes,
            }) => {
                if let Some(post) = self.feed.get_mut(post_id.as_uuid()) {
                    (post.likes, post.dislikes) = (likes, dislikes);
                }
            }
            Change::Feed(FeedChange::SetFollowers { post_id, followers }) => {
                if let Some(post) = self.feed.get_mut(post_id.as_uuid()) {
                    post.followers = followers;
                }
            }
            // `feed_marks` is not among the tables the bench compares (see `OWNED_TABLES`).
            Change::Feed(FeedChange::Mark { .. }) => {}
            // The inbox is not among the benched projections (see `OWNED_TABLES`).
            Change::Inbox(_) => {}
            // The synthetic log has no moderation: no reports, acts, roles or sanctions.
            Change::Moderation(_)
            | Change::Feed(FeedChange::Fold { .. } | FeedChange::Remove { .. })
            | Change::Comments(CommentChange::Fold { .. } | CommentChange::Remove { .. })
            | Change::Users(
                UserChange::SetModerator { .. }
                | UserChange::InsertSanction { .. }
                | UserChange::AppealSanction { .. }
                | UserChange::DecideAppeal { .. },
            ) => {}
            Change::Comments(CommentChange::SetReactions {
                comment_id,
                likes,
                dislikes,
            }) => {
                if let Some(comment) = self.comments.get_mut(comment_id.as_uuid()) {
                    (comment.likes, comment.dislikes) = (likes, dislikes);
                }
            }
            Change::Feed(FeedChange::CountComment {
                post_id,
                delta,
                commenters,
                active_at,
            }) => {
                if let Some(post) = self.feed.get_mut(post_id.as_uuid()) {
                    post.comment_count += delta;
                    post.commenters += commenters;
                    if let Some(at) = active_at {
                        post.last_activity_at = at;
                    }
                }
            }
            Change::Comments(CommentChange::InsertComment {
                comment_id,
                post_id,
                position,
                author_id,
                author_name,
                anonymous,
                is_host,
                body,
                reply_to,
                created_at,
            }) => {
                self.comments_of
                    .entry(post_id.as_uuid())
                    .or_default()
                    .push(comment_id.as_uuid());
                self.comments.insert(
                    comment_id.as_uuid(),
                    CommentRow {
                        comment_id: comment_id.as_uuid(),
                        post_id: post_id.as_uuid(),
                        position,
                        author_name,
                        anonymous,
                        is_host,
                        body,
                        reply_to: reply_to.map(|r| r.as_uuid()),
                        created_at,
                        likes: 0,
                        dislikes: 0,
                        author_id: author_id.map(|a| a.as_uuid()),
                    },
                );
            }
            Change::Comments(CommentChange::DeleteComment { comment_id, .. }) => {
                self.comments.remove(comment_id.as_uuid())
            }
            Change::Comments(CommentChange::ForgetCommentAuthor { user_id }) => {
                let author = Some(user_id.as_uuid());
                for comment in self.comments.iter_mut().filter(|c| c.author_id == author) {
                    comment.author_name = projections::DELETED_USER.to_owned();
                    comment.author_id = None;
                }
            }
            Change::Comments(CommentChange::DeleteCommentsOf { post_id }) => {
                for comment in self
                    .comments_of
                    .remove(&post_id.as_uuid())
                    .unwrap_or_default()
                {
                    self.comments.remove(comment);
                }
            }
            Change::Tasks(change) => self.apply_tasks(change),
            Change::Stats(change) => self.apply_stats(change),
        }
    }

    /// What the tasks statements do to their tables.
    fn apply_tasks(&mut self, change: TaskChange) {
        match change {
            TaskChange::InsertModel {
                name,
                spec,
                enabled,
                at,
            } => {
                self.models
                    .entry(name.as_str().to_owned())
                    .or_insert_with(|| ModelRow {
                        name: name.as_str().to_owned(),
                        kind: spec.kind,
                        input_schema: spec.input_schema,
                        max_concurrent: i64::from(spec.max_concurrent),
                        enabled,
                        registered_at: at,
                        updated_at: at,
                    });
            }
            TaskChange::UpdateModel { name, spec, at } => {
                if let Some(m) = self.models.get_mut(name.as_str()) {
                    m.kind = spec.kind;
                    m.input_schema = spec.input_schema;
                    m.max_concurrent = i64::from(spec.max_concurrent);
                    m.updated_at = at;
                }
            }
            TaskChange::EnableModel { name, enabled, at } => {
                if let Some(m) = self.models.get_mut(name.as_str()) {
                    m.enabled = enabled;
                    m.updated_at = at;
                }
            }
            TaskChange::InsertWorker {
                worker_id,
                name,
                models,
                token_hash,
                at,
            } => self.workers.insert(
                worker_id.as_uuid(),
                WorkerRow {
                    worker_id: worker_id.as_uuid(),
                    name,
                    models: serde_json::Value::Array(
                        models
                            .iter()
                            .map(|m| serde_json::Value::String(m.as_str().to_owned()))
                            .collect(),
                    ),
                    token_hash,
                    revoked: false,
                    registered_at: at,
                },
            ),
            TaskChange::RevokeWorker { worker_id } => {
                if let Some(w) = self.workers.get_mut(worker_id.as_uuid()) {
                    w.revoked = true;
                }
            }
            TaskChange::InsertTask {
                task_id,
                position,
                submitter_id,
                model,
                input,
                webhook_url,
                priority,
                max_attempts,
                at,
            } => self.tasks.insert(
                task_id.as_uuid(),
                QueuedRow {
                    task_id: task_id.as_uuid(),
                    position,
                    submitter_id: submitter_id.as_uuid(),
                    model: model.as_str().to_owned(),
                    input,
                    webhook_url,
                    priority: i64::from(priority),
                    status: "queued".into(),
                    worker_id: None,
                    attempts: 0,
                    max_attempts: i64::from(max_attempts),
                    lease_until: None,
                    result: None,
                    error: None,
                    created_at: at,
                    started_at: None,
                    finished_at: None,
                    webhook_state: None,
                    webhook_attempts: 0,
                    webhook_last_at: None,
                },
            ),
            TaskChange::Running {
                task_id,
                worker_id,
                attempt,
                lease_until,
                at,
            } => {
                if let Some(t) = self.tasks.get_mut(task_id.as_uuid()) {
                    t.status = "running".into();
                    t.worker_id = Some(worker_id.as_uuid());
                    t.attempts = i64::from(attempt);
                    t.lease_until = Some(lease_until);
                    t.started_at = Some(at);
                }
            }
            TaskChange::ExtendLease {
                task_id,
                lease_until,
            } => {
                if let Some(t) = self.tasks.get_mut(task_id.as_uuid()) {
                    t.lease_until = Some(lease_until);
                }
            }
            TaskChange::AttemptFailed { task_id, error } => {
                if let Some(t) = self.tasks.get_mut(task_id.as_uuid()) {
                    t.error = Some(error);
                }
            }
            TaskChange::Requeued { task_id } => {
                if let Some(t) = self.tasks.get_mut(task_id.as_uuid()) {
                    t.status = "queued".into();
                    t.worker_id = None;
                    t.lease_until = None;
                }
            }
            TaskChange::Finished {
                task_id,
                status,
                result,
                error,
                at,
            } => {
                if let Some(t) = self.tasks.get_mut(task_id.as_uuid()) {
                    t.status = status.as_str().to_owned();
                    t.result = result;
                    t.error = error.or(t.error.take());
                    t.lease_until = None;
                    t.finished_at = Some(at);
                    t.webhook_state = t.webhook_url.as_ref().map(|_| {
                        projections::tasks::WebhookState::Pending
                            .as_str()
                            .to_owned()
                    });
                }
            }
            TaskChange::WebhookAttempted {
                task_id,
                attempt,
                delivered,
                at,
            } => {
                if let Some(t) = self.tasks.get_mut(task_id.as_uuid()) {
                    t.webhook_attempts = i64::from(attempt);
                    t.webhook_last_at = Some(at);
                    t.webhook_state = Some(
                        if delivered {
                            projections::tasks::WebhookState::Delivered
                        } else {
                            projections::tasks::WebhookState::Pending
                        }
                        .as_str()
                        .to_owned(),
                    );
                }
            }
            TaskChange::WebhookAbandoned { task_id } => {
                if let Some(t) = self.tasks.get_mut(task_id.as_uuid()) {
                    t.webhook_state = Some(
                        projections::tasks::WebhookState::Abandoned
                            .as_str()
                            .to_owned(),
                    );
                }
            }
            TaskChange::History {
                task_id,
                position,
                event,
                detail,
                at,
            } => {
                self.task_history.entry(position).or_insert(HistoryRow {
                    position,
                    task_id: task_id.as_uuid(),
                    event,
                    detail,
                    at,
                });
            }
        }
    }

    /// What the statistics statements do to their tables.
    fn apply_stats(&mut self, change: StatsChange) {
        match change {
            StatsChange::Count {
                day,
                metric,
                key,
                delta,
            } => {
                *self
                    .stats_counters
                    .entry((day.to_string(), metric.as_str(), key))
                    .or_default() += delta;
            }
            StatsChange::Active { day, user_id } => {
                self.stats_active
                    .insert((day.to_string(), user_id.to_string()));
            }
            StatsChange::TaskPublished { task_id, model, at } => self.stats_tasks.insert(
                task_id.as_uuid(),
                TaskRow {
                    task_id: task_id.as_uuid(),
                    model,
                    published_ms: at.timestamp_millis(),
                    first_claimed_ms: None,
                    claimed_ms: None,
                    finished_ms: None,
                    finished_day: None,
                    state: None,
                },
            ),
            StatsChange::TaskClaimed { task_id, at } => {
                if let Some(task) = self.stats_tasks.get_mut(task_id.as_uuid()) {
                    task.first_claimed_ms = task.first_claimed_ms.or(Some(at.timestamp_millis()));
                    task.claimed_ms = Some(at.timestamp_millis());
                }
            }
            StatsChange::TaskFinished { task_id, state, at } => {
                if let Some(task) = self.stats_tasks.get_mut(task_id.as_uuid()) {
                    task.finished_ms = Some(at.timestamp_millis());
                    task.finished_day = Some(at.date_naive().to_string());
                    task.state = Some(state.as_str());
                }
            }
        }
    }

    /// The rows of one read-model table, `None` for a table the bench does not know.
    fn csv(&self, table: &str) -> Option<Csv> {
        let mut out = CsvWriter::default();
        let columns = match table {
            "users" => {
                for r in self.users.iter() {
                    out.uuid(r.user_id)
                        .text(&r.username)
                        .text(&r.email)
                        .bool(r.is_admin)
                        .time(r.registered_at)
                        .end();
                }
                "user_id, username, email, is_admin, registered_at"
            }
            "sessions" => {
                for r in self.sessions.iter() {
                    out.uuid(r.session_id)
                        .text(&r.token_hash)
                        .uuid(r.user_id)
                        .time(r.expires_at)
                        .optional_text(r.device.as_deref())
                        .time(r.created_at)
                        .time(r.last_seen)
                        .end();
                }
                "session_id, token_hash, user_id, expires_at, device, created_at, last_seen"
            }
            "feed" => {
                for r in self.feed.iter() {
                    out.uuid(r.post_id)
                        .int(r.position as i64)
                        .text(&r.author_name)
                        .bool(r.anonymous)
                        .optional_text(r.title.as_deref())
                        .text(&r.body)
                        .text_array(&r.tags)
                        .int(r.comment_count)
                        .int(r.commenters)
                        .int(r.created_unix)
                        .int(r.likes)
                        .int(r.dislikes)
                        .int(r.followers)
                        .optional_text(r.poll_options.as_deref())
                        .optional_text(r.poll_counts.as_deref())
                        .time(r.created_at)
                        .time(r.last_activity_at)
                        .optional_uuid(r.author_id)
                        .end();
                }
                "post_id, position, author_name, anonymous, title, body, tags, comment_count, \
                 commenters, created_unix, likes, dislikes, followers, poll_options, poll_counts, created_at, \
                 last_activity_at, author_id"
            }
            "comments" => {
                for r in self.comments.iter() {
                    out.uuid(r.comment_id)
                        .uuid(r.post_id)
                        .int(r.position as i64)
                        .text(&r.author_name)
                        .bool(r.anonymous)
                        .bool(r.is_host)
                        .text(&r.body)
                        .optional_uuid(r.reply_to)
                        .time(r.created_at)
                        .int(r.likes)
                        .int(r.dislikes)
                        .optional_uuid(r.author_id)
                        .end();
                }
                "comment_id, post_id, position, author_name, anonymous, is_host, body, \
                 reply_to, created_at, likes, dislikes, author_id"
            }
            "models" => {
                for r in self.models.values() {
                    out.text(&r.name)
                        .text(&r.kind)
                        .text(&r.input_schema.to_string())
                        .int(r.max_concurrent)
                        .bool(r.enabled)
                        .time(r.registered_at)
                        .time(r.updated_at)
                        .end();
                }
                "name, kind, input_schema, max_concurrent, enabled, registered_at, updated_at"
            }
            "workers" => {
                for r in self.workers.iter() {
                    out.uuid(r.worker_id)
                        .text(&r.name)
                        .text(&r.models.to_string())
                        .text(&r.token_hash)
                        .bool(r.revoked)
                        .time(r.registered_at)
                        .end();
                }
                "worker_id, name, models, token_hash, revoked, registered_at"
            }
            "tasks" => {
                for r in self.tasks.iter() {
                    out.uuid(r.task_id)
                        .int(r.position as i64)
                        .uuid(r.submitter_id)
                        .text(&r.model)
                        .text(&r.input.to_string())
                        .optional_text(r.webhook_url.as_deref())
                        .int(r.priority)
                        .text(&r.status)
                        .optional_uuid(r.worker_id)
                        .int(r.attempts)
                        .int(r.max_attempts)
                        .optional_time(r.lease_until)
                        .optional_text(r.result.as_ref().map(|v| v.to_string()).as_deref())
                        .optional_text(r.error.as_deref())
                        .time(r.created_at)
                        .optional_time(r.started_at)
                        .optional_time(r.finished_at)
                        .optional_text(r.webhook_state.as_deref())
                        .int(r.webhook_attempts)
                        .optional_time(r.webhook_last_at)
                        .end();
                }
                "task_id, position, submitter_id, model, input, webhook_url, priority, status, \
                 worker_id, attempts, max_attempts, lease_until, result, error, created_at, \
                 started_at, finished_at, webhook_state, webhook_attempts, webhook_last_at"
            }
            "task_history" => {
                for r in self.task_history.values() {
                    out.int(r.position as i64)
                        .uuid(r.task_id)
                        .text(&r.event)
                        .text(&r.detail.to_string())
                        .time(r.at)
                        .end();
                }
                "position, task_id, event, detail, at"
            }
            "stats_counters" => {
                for ((day, metric, key), value) in &self.stats_counters {
                    out.text(day).text(metric).text(key).int(*value).end();
                }
                "day, metric, key, value"
            }
            "stats_active" => {
                for (day, user_id) in &self.stats_active {
                    out.text(day).text(user_id).end();
                }
                "day, user_id"
            }
            "stats_tasks" => {
                for r in self.stats_tasks.iter() {
                    out.text(&r.task_id.to_string())
                        .text(&r.model)
                        .int(r.published_ms)
                        .optional_int(r.first_claimed_ms)
                        .optional_int(r.claimed_ms)
                        .optional_int(r.finished_ms)
                        .optional_text(r.finished_day.as_deref())
                        .optional_text(r.state)
                        .end();
                }
                "task_id, model, published_ms, first_claimed_ms, claimed_ms, finished_ms, \
                 finished_day, state"
            }
            _ => return None,
        };
        Some(Csv {
            columns,
            body: out.body,
            rows: out.rows,
        })
    }
}

/// PostgreSQL's CSV: every text quoted (so an empty string is not NULL), NULL as nothing.
#[derive(Default)]
struct CsvWriter {
    body: String,
    rows: u64,
    fields: usize,
}

impl CsvWriter {
    fn raw(&mut self, value: &str) -> &mut Self {
        if self.fields > 0 {
            self.body.push(',');
        }
        self.fields += 1;
        self.body.push_str(value);
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.raw(&format!("\"{}\"", value.replace('"', "\"\"")))
    }

    fn optional_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(v),
            None => self.raw(""),
        }
    }

    fn uuid(&mut self, value: Uuid) -> &mut Self {
        self.raw(&value.to_string())
    }

    fn optional_uuid(&mut self, value: Option<Uuid>) -> &mut Self {
        match value {
            Some(v) => self.uuid(v),
            None => self.raw(""),
        }
    }

    fn int(&mut self, value: i64) -> &mut Self {
        self.raw(&value.to_string())
    }

    fn optional_int(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(v) => self.int(v),
            None => self.raw(""),
        }
    }

    fn bool(&mut self, value: bool) -> &mut Self {
        self.raw(if value { "t" } else { "f" })
    }

    fn time(&mut self, value: DateTime<Utc>) -> &mut Self {
        self.raw(&value.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    fn optional_time(&mut self, value: Option<DateTime<Utc>>) -> &mut Self {
        match value {
            Some(v) => self.time(v),
            None => self.raw(""),
        }
    }

    /// An array literal (`{"a","b"}`, elements backslash-escaped) inside a CSV field.
    fn text_array(&mut self, values: &[String]) -> &mut Self {
        let elements: Vec<String> = values
            .iter()
            .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        self.text(&format!("{{{}}}", elements.join(",")))
    }

    fn end(&mut self) {
        self.body.push('\n');
        self.rows += 1;
        self.fields = 0;
    }
}

// ---------------------------------------------------------------------------------------------
// The report

#[derive(Clone)]
struct Line {
    projection: &'static str,
    rows: u64,
    rebuild_seconds: f64,
    /// What the rebuild asked of the key store (sealed log only).
    keys: KeyUse,
    copy_seconds: f64,
}

struct Machine {
    cpus: usize,
    cpu_model: String,
    memory_gib: f64,
    os: &'static str,
}

impl Machine {
    fn here() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let memory_kib: f64 = field(&meminfo, "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".into()),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            os: std::env::consts::OS,
        }
    }
}

/// What one log's run measured.
struct Run {
    log: Log,
    log_length: Position,
    /// The events table with its indexes and TOAST, as PostgreSQL stores it.
    log_bytes: u64,
    write_seconds: f64,
    write_keys: KeyUse,
    derive_seconds: f64,
    derive_keys: KeyUse,
    lines: Vec<Line>,
    /// All the projections rebuilt in one pass over the log.
    together_seconds: f64,
    together_keys: KeyUse,
}

impl Run {
    fn rate(&self, seconds: f64) -> f64 {
        self.log_length as f64 / seconds.max(1e-9)
    }

    fn total(&self) -> Line {
        Line {
            projection: "total",
            rows: self.lines.iter().map(|l| l.rows).sum(),
            rebuild_seconds: self.lines.iter().map(|l| l.rebuild_seconds).sum(),
            keys: self
                .lines
                .iter()
                .fold(KeyUse::default(), |sum, l| sum.plus(l.keys)),
            copy_seconds: self.lines.iter().map(|l| l.copy_seconds).sum(),
        }
    }

    /// The rebuild of all the projections together, against the `COPY` of all their rows.
    fn together(&self) -> Line {
        Line {
            projection: "together",
            rebuild_seconds: self.together_seconds,
            keys: self.together_keys,
            ..self.total()
        }
    }

    /// The projections, the total and the rebuild together.
    fn all_lines(&self) -> Vec<Line> {
        let mut lines = self.lines.clone();
        lines.extend([self.total(), self.together()]);
        lines
    }

    /// The timed steps: (name, seconds, key-store use).
    fn steps(&self) -> Vec<(String, f64, KeyUse)> {
        let mut steps = vec![
            ("write".to_owned(), self.write_seconds, self.write_keys),
            ("derive".to_owned(), self.derive_seconds, self.derive_keys),
        ];
        for line in self.all_lines() {
            steps.push((
                format!("rebuild {}", line.projection),
                line.rebuild_seconds,
                line.keys,
            ));
        }
        steps
    }

    fn print(&self) {
        let what = match self.log {
            Log::Sealed => "personal values sealed on append, opened on every read",
            Log::Plain => "personal values in their open form, nothing sealed",
        };
        println!(
            "{} log ({what}): {} events, {:.1} MiB",
            self.log.name(),
            self.log_length,
            self.log_bytes as f64 / (1024.0 * 1024.0)
        );
        let in_key_store = |k: KeyUse| match self.log {
            Log::Sealed => format!(", {:.2} s of it in {} key-store calls", k.seconds, k.calls),
            Log::Plain => String::new(),
        };
        println!(
            "log written in {:.1} s ({:.0} events/s{}); read + decoded + applied in memory, all \
             projections at once, in {:.1} s ({:.0} events/s{})",
            self.write_seconds,
            self.rate(self.write_seconds),
            in_key_store(self.write_keys),
            self.derive_seconds,
            self.rate(self.derive_seconds),
            in_key_store(self.derive_keys)
        );
        println!(
            "{:<10} {:>8} {:>10} {:>12} {:>7} {:>9} {:>8} {:>11} {:>12} {:>7}",
            "projection",
            "rows",
            "rebuild s",
            "rebuild ev/s",
            "keys s",
            "key calls",
            "COPY s",
            "COPY rows/s",
            "COPY ev/s",
            "ratio"
        );
        for line in self.all_lines() {
            println!(
                "{:<10} {:>8} {:>10.2} {:>12.0} {:>7.2} {:>9} {:>8.3} {:>11.0} {:>12.0} {:>7.4}",
                line.projection,
                line.rows,
                line.rebuild_seconds,
                self.rate(line.rebuild_seconds),
                line.keys.seconds,
                line.keys.calls,
                line.copy_seconds,
                line.rows as f64 / line.copy_seconds.max(1e-9),
                self.rate(line.copy_seconds),
                line.copy_seconds / line.rebuild_seconds.max(1e-9),
            );
        }
        let (total, together) = (self.total(), self.together());
        println!(
            "total: one after another, a rebuild runs at {:.1}% of the COPY rate of its rows \
             ({:.0}x as long); together, in one pass over the log, at {:.1}% ({:.1}x as long)",
            100.0 * total.copy_seconds / total.rebuild_seconds.max(1e-9),
            total.rebuild_seconds / total.copy_seconds.max(1e-9),
            100.0 * together.copy_seconds / together.rebuild_seconds.max(1e-9),
            together.rebuild_seconds / together.copy_seconds.max(1e-9)
        );
    }

    fn to_json(&self) -> serde_json::Value {
        let keys = |k: KeyUse| serde_json::json!({ "calls": k.calls, "seconds": k.seconds });
        let line = |l: &Line| {
            serde_json::json!({
                "projection": l.projection,
                "rows": l.rows,
                "rebuild_seconds": l.rebuild_seconds,
                "rebuild_events_per_second": self.rate(l.rebuild_seconds),
                "rebuild_key_store": keys(l.keys),
                "copy_seconds": l.copy_seconds,
                "copy_rows_per_second": l.rows as f64 / l.copy_seconds.max(1e-9),
                "copy_events_per_second": self.rate(l.copy_seconds),
                "ratio": l.copy_seconds / l.rebuild_seconds.max(1e-9),
            })
        };
        serde_json::json!({
            "log": self.log.name(),
            "events": self.log_length,
            "log_bytes": self.log_bytes,
            "write_seconds": self.write_seconds,
            "write_events_per_second": self.rate(self.write_seconds),
            "write_key_store": keys(self.write_keys),
            "derive_seconds": self.derive_seconds,
            "derive_events_per_second": self.rate(self.derive_seconds),
            "derive_key_store": keys(self.derive_keys),
            "projections": self.lines.iter().map(line).collect::<Vec<_>>(),
            "total": line(&self.total()),
            "together": line(&self.together()),
        })
    }
}

/// The sealed run beside the plain one: each step's time sealed / plain, with and without the
/// time the sealed run spent waiting on the key store.
struct Price<'a> {
    sealed: &'a Run,
    plain: &'a Run,
}

/// One step of both runs.
struct Step {
    name: String,
    sealed: f64,
    keys: KeyUse,
    plain: f64,
}

impl Step {
    fn times(&self) -> f64 {
        self.sealed / self.plain.max(1e-9)
    }

    /// Sealed without its key-store round trips, against plain: sealing and opening proper
    /// (serde, the cipher, larger rows).
    fn times_without_key_store(&self) -> f64 {
        (self.sealed - self.keys.seconds) / self.plain.max(1e-9)
    }
}

impl<'a> Price<'a> {
    fn of(runs: &'a [Run]) -> Option<Self> {
        let find = |log| runs.iter().find(|r| r.log == log);
        Some(Self {
            sealed: find(Log::Sealed)?,
            plain: find(Log::Plain)?,
        })
    }

    fn steps(&self) -> Vec<Step> {
        self.sealed
            .steps()
            .into_iter()
            .zip(self.plain.steps())
            .map(|((name, sealed, keys), (_, plain, _))| Step {
                name,
                sealed,
                keys,
                plain,
            })
            .collect()
    }

    fn size(&self) -> f64 {
        self.sealed.log_bytes as f64 / (self.plain.log_bytes as f64).max(1.0)
    }

    fn print(&self) {
        println!(
            "price of sealing: each step of the sealed run beside the plain one (x: times as \
             long; x w/o keys: without the sealed run's waits on the key store)"
        );
        println!(
            "{:<18} {:>10} {:>8} {:>10} {:>8} {:>12}",
            "step", "sealed s", "keys s", "plain s", "x", "x w/o keys"
        );
        for step in self.steps() {
            println!(
                "{:<18} {:>10.2} {:>8.2} {:>10.2} {:>8.2} {:>12.2}",
                step.name,
                step.sealed,
                step.keys.seconds,
                step.plain,
                step.times(),
                step.times_without_key_store()
            );
        }
        println!(
            "log size: {:.1} MiB sealed, {:.1} MiB plain ({:.2}x)",
            self.sealed.log_bytes as f64 / (1024.0 * 1024.0),
            self.plain.log_bytes as f64 / (1024.0 * 1024.0),
            self.size()
        );
    }

    fn to_json(&self) -> serde_json::Value {
        let steps: Vec<_> = self
            .steps()
            .iter()
            .map(|step| {
                serde_json::json!({
                    "step": step.name,
                    "sealed_seconds": step.sealed,
                    "sealed_key_store_seconds": step.keys.seconds,
                    "plain_seconds": step.plain,
                    "times_as_long": step.times(),
                    "times_as_long_without_key_store": step.times_without_key_store(),
                })
            })
            .collect();
        serde_json::json!({ "steps": steps, "log_bytes_times": self.size() })
    }
}

struct Report {
    runs: Vec<Run>,
    server_version: String,
    machine: Machine,
}

impl Report {
    fn print(&self) {
        let m = &self.machine;
        println!("projection rebuild on PostgreSQL {}", self.server_version);
        println!(
            "machine: {} CPUs ({}), {:.1} GiB RAM, {}; {}",
            m.cpus,
            m.cpu_model,
            m.memory_gib,
            m.os,
            Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        for run in &self.runs {
            println!();
            run.print();
        }
        println!();
        println!(
            "ev/s: events of the log per second (every projection reads the whole log); \
             ratio: rebuild ev/s / COPY ev/s; keys s, key calls: the rebuild's waits on the key \
             store (a sealed log's reader starts with an empty key cache)"
        );
        if let Some(price) = Price::of(&self.runs) {
            println!();
            price.print();
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let m = &self.machine;
        serde_json::json!({
            "postgresql": self.server_version,
            "date": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            "machine": {
                "cpus": m.cpus,
                "cpu_model": m.cpu_model,
                "memory_gib": m.memory_gib,
                "os": m.os,
            },
            "runs": self.runs.iter().map(Run::to_json).collect::<Vec<_>>(),
            "price_of_sealing": Price::of(&self.runs).map(|p| p.to_json()),
        })
    }
}
