//! Engine micro-benchmarks (criterion): the event stores' appends and scans, the projections'
//! apply rate, the sealing of personal values and the Post aggregate's pseudonym decision, each
//! beside a baseline that criterion measures in the same run, as a sibling function of the same
//! group.
//!
//! ```text
//! cargo bench -p infra --bench engine                      # every group, real sizes
//! cargo bench -p infra --bench engine -- append_sqlite     # one group (criterion's filter)
//! cargo test -p infra --bench engine                       # every function once, tiny sizes
//! ```
//!
//! The PostgreSQL groups need a server: `TREEHOLE_BENCH_DATABASE_URL`, else
//! `TREEHOLE_TEST_DATABASE_URL` (`pg_env="$(scripts/pg-start /tmp/benchpg)" && eval "$pg_env"`).
//! Each of them creates a database of its own, `treehole_engine_<uuid>`, and drops it at its end;
//! without a server they print `skipped: ...` and measure nothing. `TREEHOLE_BENCH_EVENTS` sets
//! the length of the scanned log and of the projections' history (100 000).
//!
//! | group               | figure                                     | baseline                      |
//! |---------------------|--------------------------------------------|-------------------------------|
//! | `append_sqlite`     | `SqliteEventStore`: one `append` per event | raw sqlx INSERTs, same rows   |
//! |                     | with its stream's expected version; 500    | and DDL, another file, same   |
//! |                     | events per `append_many` (`synth::group`)  | PRAGMAs, one transaction/call |
//! | `append_postgres`   | `PostgresEventStore`, the same two         | raw INSERTs into a table      |
//! |                     |                                            | `LIKE events INCLUDING ALL`;  |
//! |                     |                                            | postgres-es `persist`         |
//! | `read_all_sqlite`,  | the whole log through `read_all`, pages    | one raw `SELECT` of the same  |
//! | `read_all_postgres` | of 500 (the projection runner's batch)     | rows into the same `Envelope` |
//! |                     |                                            | (rusqlite on the bench's own  |
//! |                     |                                            | thread; sqlx on PostgreSQL)   |
//! | `projection_apply`  | decode, apply and coalesce, per batch of   | decoding the same envelopes   |
//! |                     | 500, for each projection with SQL tables   | only (the floor)              |
//! | `seal`              | `encode_and_seal`: 500 events of a grown   | `encode_only`: the same       |
//! |                     | forum encoded into `NewEvent`s, then       | events encoded into           |
//! |                     | `Keys::seal`ed, every key already cached   | `NewEvent`s, nothing sealed   |
//! | `pseudonym`         | `Post::decide` of an anonymous comment     | the bare lookup of the rule   |
//! |                     | under N commenters, new and returning      | on the same data (a HashMap)  |
//!
//! The append contenders all write the very same events, made once from one synthetic history
//! (`infra::synth`) and handed to each in the same order, on top of the same pre-filled log.
//! Single appends take the history's events one at a time (most are comments on existing
//! posts) with the expectation `NoStream` or `Exact(version)`; the raw baselines bind values
//! encoded before the clock starts and number versions in memory, so the store's encoding,
//! validation and version check count as its overhead. At the end of an append group the bench
//! checks that the rows both wrote are identical and that no stream has a hole in its versions.
//!
//! The seal group's keys are in a `SqliteKeyStore` on a temporary file, made (with the key
//! handles) before anything is timed, and every key and handle the batch needs is in the
//! `Keys`' memory before the clock starts: the timed work is CPU only (serde, the key lookups
//! in memory, random nonces, XChaCha20-Poly1305, base64). It checks (outside the timing) that
//! encoding reproduces the history's events, that sealing leaves no personal value open, and
//! that opening the sealed events gives the originals back.
//!
//! The pseudonym group asserts (outside the timing) that a new commenter gets the next unused
//! name and a returning one keeps theirs.
//!
//! Criterion prints every function with its elements per second. After the groups a summary
//! pairs each figure with its baseline, from criterion's estimates of this very run
//! (`<criterion home>/<group>/<function>/new/estimates.json`, the home being `CRITERION_HOME`,
//! else `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion`, as criterion
//! picks it). Every ratio is figure rate / baseline rate: 1 is as fast as the baseline.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::error::Error;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use commands::{EventStore, ExpectedVersion, StreamWrite};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use domain::{Envelope, NewEvent, Position, StreamId};
use futures::TryStreamExt;
use infra::synth::{self, History};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Executor};
use tokio::runtime::Runtime;
use uuid::Uuid;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Events per `append_many` call of the batched appends.
const BATCH: usize = 500;
/// Events per `read_all` call of the scans: the projection runner's batch.
const PAGE: usize = 500;

fn main() -> BenchResult<()> {
    let measuring = measuring();
    let sizes = Sizes::new(measuring)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let server = postgres_server();
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    let mut pairs = append::sqlite(&mut c, &runtime, &sizes);
    match &server {
        Some(server) => pairs.extend(append::postgres(&mut c, &runtime, &sizes, server)),
        None => println!("skipped: append_postgres: {NO_SERVER}"),
    }
    pairs.extend(scan::sqlite(&mut c, &runtime, &sizes));
    match &server {
        Some(server) => pairs.extend(scan::postgres(&mut c, &runtime, &sizes, server)),
        None => println!("skipped: read_all_postgres: {NO_SERVER}"),
    }
    pairs.extend(apply::rates(&mut c, &sizes));
    pairs.extend(seal::rates(&mut c, &runtime));
    pairs.extend(pseudonym::decisions(&mut c, &sizes));
    c.final_summary();
    if measuring {
        summary::print(&pairs, started);
    }
    Ok(())
}

const NO_SERVER: &str = "TREEHOLE_BENCH_DATABASE_URL (or TREEHOLE_TEST_DATABASE_URL) not set";

/// The PostgreSQL server the bench may create databases on, if any.
fn postgres_server() -> Option<String> {
    ["TREEHOLE_BENCH_DATABASE_URL", "TREEHOLE_TEST_DATABASE_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Whether criterion will measure (`cargo bench`) rather than run each function once as a test
/// (`cargo test`) or list them: its own reading of the arguments.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a.starts_with(flag));
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

/// How much each group works on: real sizes when measuring, tiny ones as a test.
struct Sizes {
    /// Events in each append contender's log before anything is timed.
    prefill: usize,
    /// Events in the scanned log and in the projections' history.
    log: usize,
    /// Distinct anonymous commenters under the post of the pseudonym group.
    commenters: &'static [usize],
}

impl Sizes {
    fn new(measuring: bool) -> BenchResult<Self> {
        if !measuring {
            return Ok(Self {
                prefill: 300,
                log: 2_000,
                commenters: &[10, 100],
            });
        }
        let log = match std::env::var("TREEHOLE_BENCH_EVENTS") {
            Ok(n) if !n.is_empty() => n.parse()?,
            _ => 100_000,
        };
        Ok(Self {
            prefill: 20_000,
            log,
            commenters: &[10, 1_000, 10_000],
        })
    }
}

/// A figure and its baseline: two functions of one group, `elements` per iteration each.
struct Pair {
    group: &'static str,
    figure: String,
    baseline: String,
    elements: u64,
}

impl Pair {
    fn new(group: &'static str, figure: &str, baseline: &str, elements: usize) -> Self {
        Self {
            group,
            figure: figure.to_owned(),
            baseline: baseline.to_owned(),
            elements: elements as u64,
        }
    }
}

/// `"function/parameter"` as criterion's id (directory `function/parameter`), or a plain name.
fn id(path: &str) -> BenchmarkId {
    match path.split_once('/') {
        Some((function, parameter)) => BenchmarkId::new(function, parameter),
        None => BenchmarkId::from_parameter(path),
    }
}

/// Settings for functions that each take milliseconds to seconds per iteration.
fn slow(group: &mut BenchmarkGroup<'_, WallTime>, measurement: Duration) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement);
}

// ---------------------------------------------------------------------------------------------
// What the append contenders write

/// An event as one contender writes it: its stream, the version and position it gets there.
#[derive(Clone)]
struct Planned {
    stream: StreamId,
    version: u64,
    position: Position,
    event: NewEvent,
}

/// How far one contender has got: through the tapes, and in its own log.
#[derive(Clone, Default)]
struct Progress {
    singles: usize,
    batches: usize,
    versions: HashMap<StreamId, u64>,
    head: Position,
}

impl Progress {
    fn plan(&mut self, events: impl IntoIterator<Item = (StreamId, NewEvent)>) -> Vec<Planned> {
        events
            .into_iter()
            .map(|(stream, event)| {
                let version = self.versions.entry(stream.clone()).or_default();
                *version += 1;
                self.head += 1;
                Planned {
                    version: *version,
                    position: self.head,
                    stream,
                    event,
                }
            })
            .collect()
    }
}

/// Items made once, on demand, and read by every contender from the start in the same order.
struct Tape<T> {
    make: Box<dyn FnMut() -> Vec<T>>,
    made: Vec<T>,
}

impl<T: Clone> Tape<T> {
    fn new(make: impl FnMut() -> Vec<T> + 'static) -> Self {
        Self {
            make: Box::new(make),
            made: Vec::new(),
        }
    }

    fn read(&mut self, from: usize, n: usize) -> Vec<T> {
        while self.made.len() < from + n {
            let more = (self.make)();
            self.made.extend(more);
        }
        self.made[from..from + n].to_vec()
    }
}

/// The events of an append group: a pre-filled log, then single events and batches, all from
/// one synthetic history, and how far each contender has got.
struct Script {
    singles: Tape<(StreamId, NewEvent)>,
    batches: Tape<Vec<(StreamId, NewEvent)>>,
    contenders: Vec<Progress>,
}

impl Script {
    /// Makes the pre-filled log (`prefill` events, in batches as `synth::group` orders them)
    /// and the tapes that continue the same history.
    fn new(prefill: usize, contenders: usize) -> (Self, Vec<Vec<Planned>>) {
        let mut history = History::new();
        let mut progress = Progress::default();
        let mut batches = Vec::new();
        let mut left = prefill;
        while left > 0 {
            let n = left.min(BATCH);
            batches.push(progress.plan(grouped(history.take(n))));
            left -= n;
        }
        let history = Rc::new(RefCell::new(history));
        let for_batches = Rc::clone(&history);
        let script = Self {
            singles: Tape::new(move || history.borrow_mut().take(1_000)),
            batches: Tape::new(move || vec![grouped(for_batches.borrow_mut().take(BATCH))]),
            contenders: vec![progress; contenders],
        };
        (script, batches)
    }

    /// The next `n` single events of contender `who`.
    fn singles(&mut self, who: usize, n: usize) -> Vec<Planned> {
        let progress = &mut self.contenders[who];
        let events = self.singles.read(progress.singles, n);
        progress.singles += n;
        progress.plan(events)
    }

    /// The next `n` batches of contender `who`.
    fn batches(&mut self, who: usize, n: usize) -> Vec<Vec<Planned>> {
        let progress = &mut self.contenders[who];
        let batches = self.batches.read(progress.batches, n);
        progress.batches += n;
        batches.into_iter().map(|b| progress.plan(b)).collect()
    }
}

/// A batch in the order `synth::group` writes it: stream by stream.
fn grouped(batch: Vec<(StreamId, NewEvent)>) -> Vec<(StreamId, NewEvent)> {
    synth::group(batch)
        .into_iter()
        .flat_map(|w| {
            let stream = w.stream;
            w.events.into_iter().map(move |e| (stream.clone(), e))
        })
        .collect()
}

/// One `append` call per event, with the expectation the stream is at.
fn single_appends(planned: Vec<Planned>) -> Vec<StreamWrite> {
    planned
        .into_iter()
        .map(|p| StreamWrite {
            stream: p.stream,
            expected: ExpectedVersion::from_version(p.version - 1),
            events: vec![p.event],
        })
        .collect()
}

/// One `append_many` call's writes, as the loader makes them.
fn batch_append(planned: Vec<Planned>) -> Vec<StreamWrite> {
    synth::group(planned.into_iter().map(|p| (p.stream, p.event)).collect())
}

/// Times `store` appending each write in a call of its own.
async fn time_store_singles(store: &dyn EventStore, writes: Vec<StreamWrite>) -> Duration {
    let started = Instant::now();
    for w in writes {
        store
            .append(&w.stream, w.expected, w.events)
            .await
            .expect("the store appends a single event");
    }
    started.elapsed()
}

/// Times `store` appending each batch in one `append_many` call.
async fn time_store_batches(store: &dyn EventStore, calls: Vec<Vec<StreamWrite>>) -> Duration {
    let started = Instant::now();
    for writes in calls {
        store
            .append_many(writes, None)
            .await
            .expect("the store appends a batch");
    }
    started.elapsed()
}

/// The JSON text the stores keep for an event's data and metadata.
fn json_text(event: &NewEvent) -> (String, String) {
    (
        serde_json::to_string(&event.data).expect("event data serialises"),
        serde_json::to_string(&event.metadata).expect("metadata serialises"),
    )
}

mod append {
    //! Appends: the stores against raw inserts of the same rows (and postgres-es).

    use super::*;

    const SQLITE: &str = "append_sqlite";
    const POSTGRES: &str = "append_postgres";

    pub fn sqlite(c: &mut Criterion, runtime: &Runtime, sizes: &Sizes) -> Vec<Pair> {
        let fixture = OnceCell::new();
        let fx = || {
            fixture.get_or_init(|| {
                runtime
                    .block_on(SqliteAppend::new(sizes.prefill))
                    .expect("setting up append_sqlite")
            })
        };
        let mut group = c.benchmark_group(SQLITE);
        slow(&mut group, Duration::from_secs(5));
        group.throughput(Throughput::Elements(1));
        group.bench_function(id("single/store"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| fx.store_singles(n));
        });
        group.bench_function(id("single/raw"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| fx.raw_singles(n));
        });
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(id("batch500/store"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| fx.store_batches(n));
        });
        group.bench_function(id("batch500/raw"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| fx.raw_batches(n));
        });
        group.finish();
        if let Some(fx) = fixture.into_inner() {
            runtime
                .block_on(fx.check())
                .expect("the SQLite contenders wrote the same rows");
        }
        vec![
            Pair::new(SQLITE, "single/store", "single/raw", 1),
            Pair::new(SQLITE, "batch500/store", "batch500/raw", BATCH),
        ]
    }

    const STORE: usize = 0;
    const RAW: usize = 1;
    const PEER: usize = 2;

    /// The SQLite store and, in another file, a plain table of the same DDL.
    struct SqliteAppend {
        store: infra::event_store::SqliteEventStore,
        raw: tokio::sync::Mutex<SqliteConnection>,
        script: RefCell<Script>,
        dir: tempfile::TempDir,
    }

    /// An event's columns as the SQLite store binds them.
    struct SqliteValues {
        event_id: String,
        stream: String,
        version: i64,
        event_type: String,
        schema: i64,
        occurred_at: String,
        data: String,
        metadata: String,
    }

    impl SqliteValues {
        fn of(p: &Planned) -> Self {
            let (data, metadata) = json_text(&p.event);
            Self {
                event_id: p.event.event_id.to_string(),
                stream: p.stream.to_string(),
                version: p.version as i64,
                event_type: p.event.event_type.clone(),
                schema: i64::from(p.event.schema),
                occurred_at: p
                    .event
                    .occurred_at
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
                data,
                metadata,
            }
        }
    }

    impl SqliteAppend {
        async fn new(prefill: usize) -> BenchResult<Self> {
            let dir = tempfile::tempdir()?;
            let store_file = dir.path().join("events.db");
            let store = infra::event_store::SqliteEventStore::open(&store_file).await?;
            let mut raw = sqlite_like_the_store(&dir.path().join("raw.db"))
                .connect()
                .await?;
            // The very DDL the store ran (its indexes come with the UNIQUE constraints).
            let mut reader = SqliteConnectOptions::new()
                .filename(&store_file)
                .read_only(true)
                .connect()
                .await?;
            let ddl: Vec<String> = sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND sql IS NOT NULL \
                 ORDER BY type DESC",
            )
            .fetch_all(&mut reader)
            .await?;
            reader.close().await?;
            for statement in ddl {
                raw.execute(statement.as_str()).await?;
            }
            let (script, prefill) = Script::new(prefill, 2);
            for batch in prefill {
                store.append_many(batch_append(batch.clone()), None).await?;
                insert_sqlite(
                    &mut raw,
                    &batch.iter().map(SqliteValues::of).collect::<Vec<_>>(),
                )
                .await?;
            }
            Ok(Self {
                store,
                raw: tokio::sync::Mutex::new(raw),
                script: RefCell::new(script),
                dir,
            })
        }

        async fn store_singles(&self, n: u64) -> Duration {
            let writes = single_appends(self.script.borrow_mut().singles(STORE, n as usize));
            time_store_singles(&self.store, writes).await
        }

        async fn store_batches(&self, n: u64) -> Duration {
            let calls = self.script.borrow_mut().batches(STORE, n as usize);
            time_store_batches(&self.store, calls.into_iter().map(batch_append).collect()).await
        }

        async fn raw_singles(&self, n: u64) -> Duration {
            let planned = self.script.borrow_mut().singles(RAW, n as usize);
            let calls = planned.iter().map(|p| vec![SqliteValues::of(p)]).collect();
            self.time_raw(calls).await
        }

        async fn raw_batches(&self, n: u64) -> Duration {
            let batches = self.script.borrow_mut().batches(RAW, n as usize);
            let calls = batches
                .iter()
                .map(|b| b.iter().map(SqliteValues::of).collect())
                .collect();
            self.time_raw(calls).await
        }

        async fn time_raw(&self, calls: Vec<Vec<SqliteValues>>) -> Duration {
            let mut raw = self.raw.lock().await;
            let started = Instant::now();
            for rows in calls {
                insert_sqlite(&mut raw, &rows)
                    .await
                    .expect("raw SQLite insert");
            }
            started.elapsed()
        }

        /// Both files hold the same rows for every event both wrote, every event each was
        /// given, and no stream with a hole in its versions.
        async fn check(self) -> BenchResult<()> {
            let mut raw = self.raw.into_inner();
            let store_file = self.dir.path().join("events.db");
            sqlx::query("ATTACH DATABASE ? AS store")
                .bind(store_file.to_string_lossy().into_owned())
                .execute(&mut raw)
                .await?;
            let (same, both): (i64, i64) = sqlx::query_as(
                "SELECT COALESCE(SUM(s.stream = r.stream AND s.type = r.type \
                   AND s.schema = r.schema AND s.occurred_at = r.occurred_at \
                   AND s.data = r.data AND s.metadata = r.metadata), 0), COUNT(*) \
                 FROM store.events s JOIN main.events r USING (event_id)",
            )
            .fetch_one(&mut raw)
            .await?;
            let script = self.script.into_inner();
            for (who, table) in [(STORE, "store.events"), (RAW, "main.events")] {
                let (rows, holes): (i64, i64) = sqlx::query_as(&format!(
                    "SELECT (SELECT COUNT(*) FROM {table}), (SELECT COUNT(*) FROM \
                     (SELECT stream FROM {table} GROUP BY stream \
                      HAVING MAX(version) <> COUNT(*)))"
                ))
                .fetch_one(&mut raw)
                .await?;
                check_log(table, rows, holes, &script.contenders[who])?;
            }
            check_same(SQLITE, same, both)?;
            raw.close().await?;
            Ok(())
        }
    }

    fn check_log(table: &str, rows: i64, holes: i64, progress: &Progress) -> BenchResult<()> {
        if rows as u64 != progress.head || holes != 0 {
            return Err(format!(
                "{table} holds {rows} events (given {}), {holes} streams with holes",
                progress.head
            )
            .into());
        }
        Ok(())
    }

    fn check_same(group: &str, same: i64, both: i64) -> BenchResult<()> {
        if same != both || both == 0 {
            return Err(format!("of {both} events written by both, only {same} are equal").into());
        }
        println!(
            "{group}: the {both} events that both the store and the raw baseline wrote are equal \
             in every column but position and version (each contender numbers its own log); no \
             stream of any contender has a hole in its versions"
        );
        Ok(())
    }

    /// Options with the store's PRAGMAs: WAL, synchronous=FULL, the same busy timeout.
    fn sqlite_like_the_store(path: &Path) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(5))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
    }

    /// One transaction, as the store's writer opens it, with one INSERT per row.
    async fn insert_sqlite(conn: &mut SqliteConnection, rows: &[SqliteValues]) -> sqlx::Result<()> {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        for row in rows {
            sqlx::query(
                "INSERT INTO events \
                 (event_id, stream, version, type, schema, occurred_at, data, metadata) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&row.event_id)
            .bind(&row.stream)
            .bind(row.version)
            .bind(&row.event_type)
            .bind(row.schema)
            .bind(&row.occurred_at)
            .bind(&row.data)
            .bind(&row.metadata)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok(())
    }

    pub fn postgres(
        c: &mut Criterion,
        runtime: &Runtime,
        sizes: &Sizes,
        server: &str,
    ) -> Vec<Pair> {
        let fixture = OnceCell::new();
        let fx = || {
            fixture.get_or_init(|| {
                runtime
                    .block_on(PostgresAppend::new(server, sizes.prefill))
                    .expect("setting up append_postgres")
            })
        };
        let mut group = c.benchmark_group(POSTGRES);
        slow(&mut group, Duration::from_secs(5));
        group.throughput(Throughput::Elements(1));
        group.bench_function(id("single/store"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| fx.store_singles(n));
        });
        group.bench_function(id("single/raw"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| fx.raw_singles(n));
        });
        group.bench_function(id("single/postgres_es"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| fx.peer_singles(n));
        });
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(id("batch500/store"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| fx.store_batches(n));
        });
        group.bench_function(id("batch500/raw"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| fx.raw_batches(n));
        });
        group.bench_function(id("batch500/postgres_es"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| fx.peer_batches(n));
        });
        group.finish();
        if let Some(fx) = fixture.into_inner() {
            runtime
                .block_on(fx.check())
                .expect("the PostgreSQL contenders wrote the same rows");
        }
        vec![
            Pair::new(POSTGRES, "single/store", "single/raw", 1),
            Pair::new(POSTGRES, "single/store", "single/postgres_es", 1),
            Pair::new(POSTGRES, "batch500/store", "batch500/raw", BATCH),
            Pair::new(POSTGRES, "batch500/store", "batch500/postgres_es", BATCH),
        ]
    }

    /// postgres-es's events table, as its `db/init.sql` defines it, under the name given to
    /// `with_tables` (the store's own table is `events`). Its snapshot table is not needed:
    /// nothing here persists a snapshot.
    const PEER_TABLE: &str = "CREATE TABLE cqrs_events (
        aggregate_type text                         NOT NULL,
        aggregate_id   text                         NOT NULL,
        sequence       bigint CHECK (sequence >= 0) NOT NULL,
        event_type     text                         NOT NULL,
        event_version  text                         NOT NULL,
        payload        json                         NOT NULL,
        metadata       json                         NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id, sequence)
    )";

    /// The PostgreSQL store, a plain table shaped like its log, and postgres-es, in one
    /// database of the bench's own.
    struct PostgresAppend {
        store: infra::event_store::PostgresEventStore,
        raw: tokio::sync::Mutex<PgConnection>,
        peer: postgres_es::PostgresEventRepository,
        script: RefCell<Script>,
        database: ScratchDatabase,
    }

    /// An event's columns as the PostgreSQL store binds them.
    struct PostgresValues {
        position: i64,
        event_id: Uuid,
        stream: String,
        version: i64,
        event_type: String,
        schema: i32,
        occurred_at: DateTime<Utc>,
        data: String,
        metadata: String,
    }

    impl PostgresValues {
        fn of(p: &Planned) -> Self {
            let (data, metadata) = json_text(&p.event);
            let millis = p.event.occurred_at.timestamp_millis();
            Self {
                position: p.position as i64,
                event_id: p.event.event_id,
                stream: p.stream.to_string(),
                version: p.version as i64,
                event_type: p.event.event_type.clone(),
                schema: p.event.schema as i32,
                occurred_at: DateTime::from_timestamp_millis(millis).expect("a valid time"),
                data,
                metadata,
            }
        }
    }

    /// A batch's values, a column each, as the PostgreSQL store binds them as arrays.
    #[derive(Default)]
    struct PostgresColumns {
        positions: Vec<i64>,
        ids: Vec<Uuid>,
        streams: Vec<String>,
        versions: Vec<i64>,
        types: Vec<String>,
        schemas: Vec<i32>,
        occurred_at: Vec<DateTime<Utc>>,
        data: Vec<String>,
        metadata: Vec<String>,
    }

    impl PostgresColumns {
        fn of(batch: &[Planned]) -> Self {
            let mut columns = Self::default();
            for v in batch.iter().map(PostgresValues::of) {
                columns.positions.push(v.position);
                columns.ids.push(v.event_id);
                columns.streams.push(v.stream);
                columns.versions.push(v.version);
                columns.types.push(v.event_type);
                columns.schemas.push(v.schema);
                columns.occurred_at.push(v.occurred_at);
                columns.data.push(v.data);
                columns.metadata.push(v.metadata);
            }
            columns
        }
    }

    /// The one aggregate type postgres-es files every event under; its ids are our stream ids.
    /// postgres-es needs a `cqrs_es::Aggregate` only for its `TYPE`.
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct TreeholeStream;

    /// An event as cqrs-es types it; never built here, the events are persisted serialised.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct StoredEvent(serde_json::Value);

    impl cqrs_es::DomainEvent for StoredEvent {
        fn event_type(&self) -> String {
            "StoredEvent".to_owned()
        }

        fn event_version(&self) -> String {
            "1".to_owned()
        }
    }

    impl cqrs_es::Aggregate for TreeholeStream {
        const TYPE: &'static str = "treehole";
        type Command = ();
        type Event = StoredEvent;
        type Error = std::convert::Infallible;
        type Services = ();

        async fn handle(
            &mut self,
            _command: (),
            _services: &(),
            _sink: &cqrs_es::event_sink::EventSink<Self>,
        ) -> Result<(), Self::Error> {
            Ok(())
        }

        fn apply(&mut self, _event: StoredEvent) {}
    }

    /// The same event as postgres-es persists it: stream as aggregate id, version as sequence,
    /// schema as event version, the same JSON payload and metadata.
    fn serialized(p: &Planned) -> cqrs_es::persist::SerializedEvent {
        cqrs_es::persist::SerializedEvent::new(
            p.stream.to_string(),
            p.version as usize,
            <TreeholeStream as cqrs_es::Aggregate>::TYPE.to_owned(),
            p.event.event_type.clone(),
            p.event.schema.to_string(),
            p.event.data.clone(),
            serde_json::to_value(&p.event.metadata).expect("metadata serialises"),
        )
    }

    impl PostgresAppend {
        async fn new(server: &str, prefill: usize) -> BenchResult<Self> {
            let database = ScratchDatabase::create(server).await?;
            let store = infra::event_store::PostgresEventStore::connect(&database.url).await?;
            // Acknowledged means durable for every contender, whatever the server's default.
            let options =
                PgConnectOptions::from_str(&database.url)?.options([("synchronous_commit", "on")]);
            let mut raw = options.connect().await?;
            raw.execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
                .await?;
            raw.execute(PEER_TABLE).await?;
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await?;
            let peer = postgres_es::PostgresEventRepository::new(pool)
                .with_tables("cqrs_events", "cqrs_snapshots");
            let (script, prefill) = Script::new(prefill, 3);
            for batch in prefill {
                store.append_many(batch_append(batch.clone()), None).await?;
                insert_postgres_batch(&mut raw, &PostgresColumns::of(&batch)).await?;
                persist(&peer, &batch.iter().map(serialized).collect::<Vec<_>>()).await?;
            }
            Ok(Self {
                store,
                raw: tokio::sync::Mutex::new(raw),
                peer,
                script: RefCell::new(script),
                database,
            })
        }

        async fn store_singles(&self, n: u64) -> Duration {
            let writes = single_appends(self.script.borrow_mut().singles(STORE, n as usize));
            time_store_singles(&self.store, writes).await
        }

        async fn store_batches(&self, n: u64) -> Duration {
            let calls = self.script.borrow_mut().batches(STORE, n as usize);
            time_store_batches(&self.store, calls.into_iter().map(batch_append).collect()).await
        }

        async fn raw_singles(&self, n: u64) -> Duration {
            let planned = self.script.borrow_mut().singles(RAW, n as usize);
            let rows: Vec<PostgresValues> = planned.iter().map(PostgresValues::of).collect();
            let mut raw = self.raw.lock().await;
            let started = Instant::now();
            for row in &rows {
                insert_postgres_row(&mut raw, row)
                    .await
                    .expect("raw PostgreSQL insert");
            }
            started.elapsed()
        }

        async fn raw_batches(&self, n: u64) -> Duration {
            let batches = self.script.borrow_mut().batches(RAW, n as usize);
            let calls: Vec<PostgresColumns> =
                batches.iter().map(|b| PostgresColumns::of(b)).collect();
            let mut raw = self.raw.lock().await;
            let started = Instant::now();
            for columns in &calls {
                insert_postgres_batch(&mut raw, columns)
                    .await
                    .expect("raw PostgreSQL batch insert");
            }
            started.elapsed()
        }

        async fn peer_singles(&self, n: u64) -> Duration {
            let planned = self.script.borrow_mut().singles(PEER, n as usize);
            let calls = planned.iter().map(|p| vec![serialized(p)]).collect();
            self.time_peer(calls).await
        }

        async fn peer_batches(&self, n: u64) -> Duration {
            let batches = self.script.borrow_mut().batches(PEER, n as usize);
            let calls = batches
                .iter()
                .map(|b| b.iter().map(serialized).collect())
                .collect();
            self.time_peer(calls).await
        }

        async fn time_peer(&self, calls: Vec<Vec<cqrs_es::persist::SerializedEvent>>) -> Duration {
            let started = Instant::now();
            for events in &calls {
                persist(&self.peer, events)
                    .await
                    .expect("postgres-es persists");
            }
            started.elapsed()
        }

        /// The store's and the raw table hold the same rows for every event both wrote; each
        /// contender's table holds every event it was given, with no hole in any stream.
        async fn check(self) -> BenchResult<()> {
            drop(self.store);
            let mut conn = self.raw.into_inner();
            let (same, both): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*) FILTER (WHERE s.stream = r.stream AND s.type = r.type \
                   AND s.schema = r.schema AND s.occurred_at = r.occurred_at \
                   AND s.data::text = r.data::text AND s.metadata::text = r.metadata::text), \
                   COUNT(*) \
                 FROM events s JOIN raw_events r USING (event_id)",
            )
            .fetch_one(&mut conn)
            .await?;
            let script = self.script.into_inner();
            for (who, table, stream, version) in [
                (STORE, "events", "stream", "version"),
                (RAW, "raw_events", "stream", "version"),
                (PEER, "cqrs_events", "aggregate_id", "sequence"),
            ] {
                let (rows, holes): (i64, i64) = sqlx::query_as(&format!(
                    "SELECT (SELECT COUNT(*) FROM {table}), (SELECT COUNT(*) FROM \
                     (SELECT {stream} FROM {table} GROUP BY {stream} \
                      HAVING MAX({version}) <> COUNT(*)) x)"
                ))
                .fetch_one(&mut conn)
                .await?;
                check_log(table, rows, holes, &script.contenders[who])?;
            }
            check_same(POSTGRES, same, both)?;
            conn.close().await?;
            drop(self.database);
            Ok(())
        }
    }

    async fn persist(
        peer: &postgres_es::PostgresEventRepository,
        events: &[cqrs_es::persist::SerializedEvent],
    ) -> Result<(), cqrs_es::persist::PersistenceError> {
        use cqrs_es::persist::PersistedEventRepository;
        peer.persist::<TreeholeStream>(events, None).await
    }

    /// One transaction with one INSERT of one row.
    async fn insert_postgres_row(
        conn: &mut PgConnection,
        row: &PostgresValues,
    ) -> sqlx::Result<()> {
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO raw_events \
             (position, event_id, stream, version, type, schema, occurred_at, data, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::json, $9::json)",
        )
        .bind(row.position)
        .bind(row.event_id)
        .bind(&row.stream)
        .bind(row.version)
        .bind(&row.event_type)
        .bind(row.schema)
        .bind(row.occurred_at)
        .bind(&row.data)
        .bind(&row.metadata)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// One transaction with one INSERT of every row, its values bound as arrays.
    async fn insert_postgres_batch(
        conn: &mut PgConnection,
        columns: &PostgresColumns,
    ) -> sqlx::Result<()> {
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO raw_events \
             (position, event_id, stream, version, type, schema, occurred_at, data, metadata) \
             SELECT p, i, s, v, t, sc, o, d::json, m::json \
             FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], \
                         $6::int[], $7::timestamptz[], $8::text[], $9::text[]) \
                  AS e(p, i, s, v, t, sc, o, d, m)",
        )
        .bind(&columns.positions)
        .bind(&columns.ids)
        .bind(&columns.streams)
        .bind(&columns.versions)
        .bind(&columns.types)
        .bind(&columns.schemas)
        .bind(&columns.occurred_at)
        .bind(&columns.data)
        .bind(&columns.metadata)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}

// ---------------------------------------------------------------------------------------------
// Scans

mod scan {
    //! The whole log through the store's paged `read_all`, against one raw `SELECT`.

    use super::*;

    /// position, event_id, stream, version, type, schema, occurred_at, data, metadata, as the
    /// SQLite store stores them.
    type SqliteEvent = (
        i64,
        String,
        String,
        i64,
        String,
        i64,
        String,
        String,
        String,
    );
    /// The same, as the PostgreSQL store selects them (JSON as text).
    type PgEvent = (
        i64,
        Uuid,
        String,
        i64,
        String,
        i32,
        DateTime<Utc>,
        String,
        String,
    );

    const SELECT_ALL: &str = "SELECT position, event_id, stream, version, type, schema, \
         occurred_at, data, metadata FROM events ORDER BY position";
    const SELECT_ALL_PG: &str = "SELECT position, event_id, stream, version, type, schema, \
         occurred_at, data::text, metadata::text FROM events ORDER BY position";

    pub fn sqlite(c: &mut Criterion, runtime: &Runtime, sizes: &Sizes) -> Vec<Pair> {
        const GROUP: &str = "read_all_sqlite";
        let fixture = OnceCell::new();
        let fx = || {
            fixture.get_or_init(|| {
                runtime
                    .block_on(SqliteLog::new(sizes.log))
                    .expect("setting up read_all_sqlite")
            })
        };
        let log = sizes.log;
        let mut group = c.benchmark_group(GROUP);
        slow(&mut group, Duration::from_secs(8));
        group
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Elements(sizes.log as u64));
        group.bench_function(id("store"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| async move {
                let started = Instant::now();
                for _ in 0..n {
                    assert_eq!(scan_store(&fx.store).await, log, "the scan missed events");
                }
                started.elapsed()
            });
        });
        group.bench_function(id("raw_select"), |b| {
            let fx = fx();
            b.iter_custom(|n| {
                let raw = fx.raw.lock().expect("the raw connection");
                let started = Instant::now();
                for _ in 0..n {
                    assert_eq!(scan_raw_sqlite(&raw), log, "the scan missed events");
                }
                started.elapsed()
            });
        });
        group.finish();
        vec![Pair::new(GROUP, "store", "raw_select", sizes.log)]
    }

    pub fn postgres(
        c: &mut Criterion,
        runtime: &Runtime,
        sizes: &Sizes,
        server: &str,
    ) -> Vec<Pair> {
        const GROUP: &str = "read_all_postgres";
        let fixture = OnceCell::new();
        let fx = || {
            fixture.get_or_init(|| {
                runtime
                    .block_on(PostgresLog::new(server, sizes.log))
                    .expect("setting up read_all_postgres")
            })
        };
        let log = sizes.log;
        let mut group = c.benchmark_group(GROUP);
        slow(&mut group, Duration::from_secs(8));
        group
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Elements(sizes.log as u64));
        group.bench_function(id("store"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| async move {
                let started = Instant::now();
                for _ in 0..n {
                    assert_eq!(scan_store(&fx.store).await, log, "the scan missed events");
                }
                started.elapsed()
            });
        });
        group.bench_function(id("raw_select"), |b| {
            let fx = fx();
            b.to_async(runtime).iter_custom(|n| async move {
                let mut raw = fx.raw.lock().await;
                let started = Instant::now();
                for _ in 0..n {
                    assert_eq!(
                        scan_raw_postgres(&mut raw).await,
                        log,
                        "the scan missed events"
                    );
                }
                started.elapsed()
            });
        });
        group.finish();
        if let Some(fx) = fixture.into_inner() {
            // The store's connections go first, then the database.
            drop(fx.store);
            drop(fx.raw);
        }
        vec![Pair::new(GROUP, "store", "raw_select", sizes.log)]
    }

    struct SqliteLog {
        store: infra::event_store::SqliteEventStore,
        raw: std::sync::Mutex<rusqlite::Connection>,
        _dir: tempfile::TempDir,
    }

    impl SqliteLog {
        async fn new(events: usize) -> BenchResult<Self> {
            let dir = tempfile::tempdir()?;
            let file = dir.path().join("events.db");
            let store = infra::event_store::SqliteEventStore::open(&file).await?;
            History::new()
                .write(&store, None, events as u64, BATCH, |_| {})
                .await?;
            let raw = rusqlite::Connection::open_with_flags(
                &file,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            Ok(Self {
                store,
                raw: std::sync::Mutex::new(raw),
                _dir: dir,
            })
        }
    }

    struct PostgresLog {
        store: infra::event_store::PostgresEventStore,
        raw: tokio::sync::Mutex<PgConnection>,
        _database: ScratchDatabase,
    }

    impl PostgresLog {
        async fn new(server: &str, events: usize) -> BenchResult<Self> {
            let database = ScratchDatabase::create(server).await?;
            let store = infra::event_store::PostgresEventStore::connect(&database.url).await?;
            History::new()
                .write(&store, None, events as u64, BATCH, |_| {})
                .await?;
            let raw = PgConnection::connect(&database.url).await?;
            Ok(Self {
                store,
                raw: tokio::sync::Mutex::new(raw),
                _database: database,
            })
        }
    }

    async fn scan_store(store: &dyn EventStore) -> usize {
        let (mut after, mut seen) = (0, 0);
        loop {
            let page = store.read_all(after, PAGE).await.expect("read_all");
            let Some(last) = page.last() else {
                return seen;
            };
            after = last.position;
            seen += page.len();
            black_box(page);
        }
    }

    /// One SELECT of the whole log with rusqlite on the calling thread, each row into an
    /// envelope: no hand-off to another thread at all.
    fn scan_raw_sqlite(conn: &rusqlite::Connection) -> usize {
        let mut statement = conn.prepare_cached(SELECT_ALL).expect("raw SELECT");
        let mut rows = statement.query([]).expect("raw SELECT");
        let mut seen = 0;
        while let Some(row) = rows.next().expect("raw SELECT") {
            let event: SqliteEvent = (
                row.get(0).expect("position"),
                row.get(1).expect("event_id"),
                row.get(2).expect("stream"),
                row.get(3).expect("version"),
                row.get(4).expect("type"),
                row.get(5).expect("schema"),
                row.get(6).expect("occurred_at"),
                row.get(7).expect("data"),
                row.get(8).expect("metadata"),
            );
            black_box(from_sqlite(event));
            seen += 1;
        }
        seen
    }

    async fn scan_raw_postgres(conn: &mut PgConnection) -> usize {
        let mut rows = sqlx::query_as::<_, PgEvent>(SELECT_ALL_PG).fetch(conn);
        let mut seen = 0;
        while let Some(row) = rows.try_next().await.expect("raw SELECT") {
            black_box(from_postgres(row));
            seen += 1;
        }
        seen
    }

    fn from_sqlite(row: SqliteEvent) -> Envelope {
        let (position, event_id, stream, version, event_type, schema, occurred_at, data, meta) =
            row;
        Envelope {
            position: position as u64,
            event_id: event_id.parse().expect("a stored event id"),
            stream: StreamId::parse(stream).expect("a stored stream id"),
            version: version as u64,
            event_type,
            schema: schema as u32,
            occurred_at: DateTime::parse_from_rfc3339(&occurred_at)
                .expect("a stored time")
                .with_timezone(&Utc),
            data: serde_json::from_str(&data).expect("stored data"),
            metadata: serde_json::from_str(&meta).expect("stored metadata"),
        }
    }

    fn from_postgres(row: PgEvent) -> Envelope {
        let (position, event_id, stream, version, event_type, schema, occurred_at, data, meta) =
            row;
        Envelope {
            position: position as u64,
            event_id,
            stream: StreamId::parse(stream).expect("a stored stream id"),
            version: version as u64,
            event_type,
            schema: schema as u32,
            occurred_at,
            data: serde_json::from_str(&data).expect("stored data"),
            metadata: serde_json::from_str(&meta).expect("stored metadata"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Projections

mod apply {
    //! The pure part of every projection with SQL tables, against decoding alone.

    use domain::Event;
    use projections::Projection;

    use super::*;

    /// The projections whose read models are SQL tables (`search` writes an index and has a
    /// bench of its own).
    const WITH_TABLES: &[&str] = &["users", "feed", "comments", "tasks", "stats"];

    pub fn rates(c: &mut Criterion, sizes: &Sizes) -> Vec<Pair> {
        const GROUP: &str = "projection_apply";
        let envelopes = envelopes(History::new().take(sizes.log));
        let projections: Vec<Arc<dyn Projection>> = projections::all()
            .into_iter()
            .filter(|p| WITH_TABLES.contains(&p.name()))
            .collect();
        assert_eq!(
            projections.len(),
            WITH_TABLES.len(),
            "a projection with tables is missing from projections::all()"
        );
        let mut group = c.benchmark_group(GROUP);
        slow(&mut group, Duration::from_secs(5));
        group
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Elements(envelopes.len() as u64));
        group.bench_function(id("decode_only"), |b| b.iter(|| decode_all(&envelopes)));
        let mut pairs = Vec::new();
        for projection in &projections {
            let name = format!("apply/{}", projection.name());
            group.bench_function(id(&name), |b| {
                b.iter(|| apply_all(&**projection, &envelopes))
            });
            pairs.push(Pair::new(GROUP, &name, "decode_only", envelopes.len()));
        }
        group.finish();
        pairs
    }

    /// The history as a store would hand it out: positions, versions, times to the millisecond.
    fn envelopes(history: Vec<(StreamId, NewEvent)>) -> Vec<Envelope> {
        let mut versions: HashMap<StreamId, u64> = HashMap::new();
        history
            .into_iter()
            .zip(1..)
            .map(|((stream, e), position)| {
                let version = versions.entry(stream.clone()).or_default();
                *version += 1;
                let millis = e.occurred_at.timestamp_millis();
                Envelope {
                    position,
                    event_id: e.event_id,
                    stream,
                    version: *version,
                    event_type: e.event_type,
                    schema: e.schema,
                    occurred_at: DateTime::from_timestamp_millis(millis).expect("a valid time"),
                    data: e.data,
                    metadata: e.metadata,
                }
            })
            .collect()
    }

    fn decode_all(envelopes: &[Envelope]) -> usize {
        for envelope in envelopes {
            black_box(Event::decode(envelope).expect("a synthetic event decodes"));
        }
        envelopes.len()
    }

    /// What the projection runner does to each batch before the store: decode, apply,
    /// coalesce. Returns the number of changes.
    fn apply_all(projection: &dyn Projection, envelopes: &[Envelope]) -> usize {
        envelopes
            .chunks(BATCH)
            .map(|batch| {
                let mut changes = Vec::with_capacity(batch.len());
                for envelope in batch {
                    let event = Event::decode(envelope).expect("a synthetic event decodes");
                    changes.extend(projection.apply(envelope, &event));
                }
                black_box(projections::change::coalesce(changes)).len()
            })
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Sealing

mod seal {
    //! Encoding events and sealing their personal values, against encoding them only.

    use commands::Keys;
    use domain::personal::{OPEN, has_sealed, visit_mut};
    use domain::{Event, Metadata};
    use infra::keys::SqliteKeyStore;
    use serde_json::Value;

    use super::*;

    const GROUP: &str = "seal";
    /// Events of the history before the timed batch: the batch is a grown forum's (mostly
    /// comments and posts, a few registrations), not its first registrations.
    const GROWN: usize = 5_000;
    /// The server secret the bench's data keys are wrapped under.
    const SECRET: &[u8] = b"treehole engine bench";

    pub fn rates(c: &mut Criterion, runtime: &Runtime) -> Vec<Pair> {
        let fixture = OnceCell::new();
        let fx =
            || fixture.get_or_init(|| runtime.block_on(Batch::new()).expect("setting up seal"));
        let mut group = c.benchmark_group(GROUP);
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(id("encode_only"), |b| {
            let fx = fx();
            b.iter(|| fx.encode());
        });
        group.bench_function(id("encode_and_seal"), |b| {
            let fx = fx();
            b.to_async(runtime).iter(|| fx.encode_and_seal());
        });
        group.finish();
        vec![Pair::new(GROUP, "encode_and_seal", "encode_only", BATCH)]
    }

    /// An event of the batch as a command handler holds it before the append: decoded, with
    /// the id, time and metadata its `NewEvent` gets.
    struct Decided {
        stream: StreamId,
        event_id: Uuid,
        occurred_at: DateTime<Utc>,
        metadata: Metadata,
        event: Event,
    }

    impl Decided {
        fn encode(&self) -> NewEvent {
            let (event_type, schema, data) = self.event.encode();
            NewEvent {
                typed: Default::default(),
                event_id: self.event_id,
                event_type: event_type.to_owned(),
                schema,
                occurred_at: self.occurred_at,
                data,
                metadata: self.metadata.clone(),
            }
        }
    }

    /// `BATCH` events of a synthetic history and the keys to seal them with.
    struct Batch {
        events: Vec<Decided>,
        keys: Keys,
        _dir: tempfile::TempDir,
    }

    impl Batch {
        /// Takes the batch, makes its users' keys and its key handles in the key store, and
        /// seals it once untimed: that checks it and leaves every key and handle it needs in
        /// the `Keys`' memory.
        async fn new() -> BenchResult<Self> {
            let dir = tempfile::tempdir()?;
            let store = SqliteKeyStore::open(&dir.path().join("keys.db")).await?;
            let keys = Keys::new(Arc::new(store), SECRET);
            let mut history = History::new();
            history.take(GROWN);
            let pending = history.take(BATCH);
            synth::prepare(&keys, &history.take_keys()).await?;
            let mut events = Vec::with_capacity(pending.len());
            let mut originals = Vec::with_capacity(pending.len());
            for (stream, e) in pending {
                let envelope = envelope(&stream, &e);
                events.push(Decided {
                    event: Event::decode(&envelope)?,
                    stream,
                    event_id: e.event_id,
                    occurred_at: e.occurred_at,
                    metadata: e.metadata.clone(),
                });
                originals.push(e);
            }
            let batch = Self {
                events,
                keys,
                _dir: dir,
            };
            batch.check(&originals).await?;
            Ok(batch)
        }

        fn encode(&self) -> Vec<NewEvent> {
            self.events.iter().map(Decided::encode).collect()
        }

        async fn encode_and_seal(&self) -> Vec<NewEvent> {
            let mut events = self.encode();
            for event in &mut events {
                self.keys.seal(event).await.expect("every key is there");
            }
            events
        }

        /// Encoding gives the history's own events back; sealing leaves no open value; opening
        /// the sealed events restores them.
        async fn check(&self, originals: &[NewEvent]) -> BenchResult<()> {
            let encoded = self.encode();
            let sealed = self.encode_and_seal().await;
            let (mut personal, mut values) = (0, 0);
            for (((decided, original), encoded), sealed) in
                self.events.iter().zip(originals).zip(&encoded).zip(&sealed)
            {
                if encoded.data != original.data {
                    return Err(format!("{} encodes differently", original.event_type).into());
                }
                let open = count_open(&encoded.data);
                if count_open(&sealed.data) != 0 || (open > 0) != has_sealed(&sealed.data) {
                    return Err(format!("{} is not sealed", original.event_type).into());
                }
                let mut opened = envelope(&decided.stream, sealed);
                self.keys.open(&mut opened).await?;
                if opened.data != original.data {
                    return Err(format!("{} does not open to itself", original.event_type).into());
                }
                personal += usize::from(open > 0);
                values += open;
            }
            println!(
                "{GROUP}: of the {} events of the batch, {personal} carry {values} personal values; \
                 sealed, none is left open, and opened they equal the originals",
                self.events.len()
            );
            Ok(())
        }
    }

    /// The open personal values in an event's data.
    fn count_open(data: &Value) -> usize {
        let mut data = data.clone();
        let mut n = 0;
        let _ = visit_mut::<()>(&mut data, &mut |tag, _| {
            n += usize::from(tag == OPEN);
            Ok(())
        });
        n
    }

    /// The event as a store hands it back (position and version do not matter here).
    fn envelope(stream: &StreamId, e: &NewEvent) -> Envelope {
        Envelope {
            position: 1,
            event_id: e.event_id,
            stream: stream.clone(),
            version: 1,
            event_type: e.event_type.clone(),
            schema: e.schema,
            occurred_at: e.occurred_at,
            data: e.data.clone(),
            metadata: e.metadata.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pseudonym rule

mod pseudonym {
    //! The Post aggregate naming an anonymous commenter, against the bare lookup of the rule.

    use domain::post::{Author, Post, PostCommand, PostEvent, PostServices};
    use domain::values::{Actor, CommentBody};
    use domain::{Aggregate, AuthorToken, CommentId, PostId, UserId};

    use super::*;

    pub fn decisions(c: &mut Criterion, sizes: &Sizes) -> Vec<Pair> {
        const GROUP: &str = "pseudonym";
        let mut group = c.benchmark_group(GROUP);
        group
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Elements(1));
        let mut pairs = Vec::new();
        for &n in sizes.commenters {
            let thread = Thread::with_commenters(n);
            thread.check_the_rule();
            for (who, commenter) in [("new", &thread.newcomer), ("returning", &thread.returning)] {
                let command = thread.comment_by(commenter);
                let (figure, baseline) =
                    (format!("aggregate_{who}/{n}"), format!("lookup_{who}/{n}"));
                group.bench_function(id(&figure), |b| {
                    b.iter(|| thread.post.decide(black_box(&command), &thread.services))
                });
                group.bench_function(id(&baseline), |b| {
                    b.iter(|| thread.lookup(black_box(&commenter.token)))
                });
                pairs.push(Pair::new(GROUP, &figure, &baseline, 1));
            }
        }
        group.finish();
        pairs
    }

    /// A user and their author token under the bench's post.
    struct Commenter {
        actor: Actor,
        token: AuthorToken,
    }

    /// User `n`, with a token shaped like the write side's (`t` and 32 hex digits).
    fn user(n: u128) -> Commenter {
        Commenter {
            actor: Actor {
                user_id: UserId::new(Uuid::from_u128(n)),
                username: format!("user{n}"),
                is_admin: false,
            },
            token: AuthorToken::new(format!("t{n:032x}")),
        }
    }

    /// A post with `n` distinct anonymous commenters, built by applying their events; the
    /// same names in a plain map; someone about to comment for the first time, and one of
    /// the `n` about to comment again.
    struct Thread {
        post: Post,
        services: PostServices,
        names: HashMap<AuthorToken, String>,
        newcomer: Commenter,
        returning: Commenter,
    }

    impl Thread {
        fn with_commenters(n: usize) -> Self {
            let services = PostServices::default();
            let scheme = &services.pseudonyms;
            let post_id = PostId::new(Uuid::from_u128(u128::MAX));
            let host = user(0);
            let mut post = Post::default();
            post.evolve(&PostEvent::PostPublished {
                post_id,
                author: Author::anonymous(host.token, scheme.host_name(), host.actor.user_id),
                anonymous: true,
                title: None,
                body: "树洞说一句".to_owned(),
                tags: vec![],
            });
            let mut names = HashMap::with_capacity(n);
            for i in 0..n {
                let commenter = user(i as u128 + 1);
                let author_name = scheme.name_at(i);
                post.evolve(&PostEvent::CommentAdded {
                    post_id,
                    comment_id: CommentId::new(Uuid::from_u128((1 << 64) + i as u128)),
                    author: Author::anonymous(
                        commenter.token.clone(),
                        author_name.clone(),
                        commenter.actor.user_id,
                    ),
                    anonymous: true,
                    is_host: false,
                    body: "me too".to_owned(),
                    reply_to: None,
                    new_commenter: true,
                    addressee: None,
                });
                names.insert(commenter.token, author_name);
            }
            Self {
                post,
                newcomer: user(n as u128 + 1),
                returning: user(n as u128 / 2 + 1),
                names,
                services,
            }
        }

        fn comment_by(&self, commenter: &Commenter) -> PostCommand {
            PostCommand::AddComment {
                comment_id: CommentId::new(Uuid::from_u128(1 << 100)),
                author: commenter.actor.clone(),
                token: commenter.token.clone(),
                body: CommentBody::parse("同意楼上").expect("a valid body"),
                anonymous: true,
                reply_to: None,
            }
        }

        /// The rule's own data work: the commenter's name if they have one, else the next.
        fn lookup(&self, token: &AuthorToken) -> String {
            self.names
                .get(token)
                .cloned()
                .unwrap_or_else(|| self.services.pseudonyms.name_at(self.names.len()))
        }

        fn decided_name(&self, commenter: &Commenter) -> String {
            let events = self
                .post
                .decide(&self.comment_by(commenter), &self.services)
                .expect("the comment is accepted");
            match events.as_slice() {
                [PostEvent::CommentAdded { author, .. }] => author
                    .display_name()
                    .expect("an anonymous author has a pseudonym")
                    .to_owned(),
                other => panic!("expected one CommentAdded, got {other:?}"),
            }
        }

        /// A new commenter gets the next unused name, a returning one keeps theirs, and the
        /// baseline answers the same.
        fn check_the_rule(&self) {
            let n = self.names.len();
            let fresh = self.decided_name(&self.newcomer);
            assert_eq!(fresh, self.services.pseudonyms.name_at(n));
            assert!(
                !self.names.values().any(|name| *name == fresh),
                "{fresh} is taken"
            );
            assert_ne!(fresh, self.services.pseudonyms.host_name());
            let kept = self.decided_name(&self.returning);
            assert_eq!(Some(&kept), self.names.get(&self.returning.token));
            assert_eq!(self.lookup(&self.newcomer.token), fresh);
            assert_eq!(self.lookup(&self.returning.token), kept);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Support

/// A database of the bench's own on the PostgreSQL server, dropped with the value.
struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(server: &str) -> BenchResult<Self> {
        let mut admin = PgConnection::connect(server).await?;
        let name = format!("treehole_engine_{}", Uuid::new_v4().simple());
        admin.execute(&*format!("CREATE DATABASE {name}")).await?;
        admin.close().await?;
        let mut url = url::Url::parse(server)?;
        url.set_path(&name);
        Ok(Self {
            server: server.to_owned(),
            name,
            url: url.into(),
        })
    }
}

impl Drop for ScratchDatabase {
    /// Drops the database (ending the connections still open to it) from a thread of its own,
    /// so that it also works while a runtime is unwinding a panic.
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || -> BenchResult<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await?;
                let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                admin.execute(statement.as_str()).await?;
                admin.close().await?;
                Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop the database {}", self.name),
        }
    }
}

mod summary {
    //! The figures beside their baselines, from criterion's estimates of this run.

    use super::*;

    pub fn print(pairs: &[Pair], since: SystemTime) {
        let home = criterion_home();
        let lines: Vec<_> = pairs
            .iter()
            .filter_map(|pair| {
                let figure = rate(&home, pair.group, &pair.figure, pair.elements, since)?;
                let baseline = rate(&home, pair.group, &pair.baseline, pair.elements, since)?;
                Some((pair, figure, baseline))
            })
            .collect();
        println!();
        println!(
            "engine summary: elements per second from criterion's estimates of this run ({}); \
             ratio = figure / baseline",
            home.display()
        );
        println!(
            "{:<18} {:<24} {:>14} {:<22} {:>14} {:>8}",
            "group", "figure", "elements/s", "baseline", "elements/s", "ratio"
        );
        for (pair, figure, baseline) in &lines {
            println!(
                "{:<18} {:<24} {:>14.0} {:<22} {:>14.0} {:>8.4}",
                pair.group,
                pair.figure,
                figure,
                pair.baseline,
                baseline,
                figure / baseline
            );
        }
        if lines.is_empty() {
            println!("(no figure was measured beside its baseline in this run)");
        }
    }

    /// Elements per second of one function, if criterion measured it in this run: its typical
    /// time per iteration (the slope when it fitted one, else the mean), as criterion reports.
    fn rate(
        home: &Path,
        group: &str,
        function: &str,
        elements: u64,
        since: SystemTime,
    ) -> Option<f64> {
        let file = home.join(group).join(function).join("new/estimates.json");
        let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok()?;
        if modified < since {
            return None;
        }
        let estimates: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
        let typical = ["slope", "mean"]
            .iter()
            .find_map(|k| estimates[k]["point_estimate"].as_f64())?;
        Some(elements as f64 / (typical * 1e-9))
    }

    /// Where criterion writes: `CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
    /// target directory `cargo metadata` names, else `target/criterion`.
    fn criterion_home() -> PathBuf {
        if let Some(home) = std::env::var_os("CRITERION_HOME") {
            return home.into();
        }
        if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
            return PathBuf::from(target).join("criterion");
        }
        cargo_target_directory()
            .unwrap_or_else(|| PathBuf::from("target"))
            .join("criterion")
    }

    fn cargo_target_directory() -> Option<PathBuf> {
        let output = std::process::Command::new(std::env::var_os("CARGO")?)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()?;
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        metadata["target_directory"].as_str().map(PathBuf::from)
    }
}
