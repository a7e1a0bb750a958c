//! How fast projections rebuild on PostgreSQL, against the raw `COPY` rate of the same rows.
//!
//! ```text
//! pg_env="$(scripts/pg-start /tmp/benchpg)" && eval "$pg_env"
//! cargo bench -p infra --bench rebuild                      # TREEHOLE_BENCH_EVENTS=100000
//! cargo bench -p infra --bench rebuild -- --events 20000 --json
//! scripts/pg-stop /tmp/benchpg
//! ```
//!
//! The server is `TREEHOLE_BENCH_DATABASE_URL`, else `TREEHOLE_TEST_DATABASE_URL`; without
//! either the bench says so and succeeds. It runs in a database of its own, dropped at the end:
//!
//! 1. writes a synthetic forum history (registrations with their reservations and sessions,
//!    posts in Chinese and English, many pseudonymous comments, a few deletions) through
//!    `PostgresEventStore::append_many`, from the real event enums;
//! 2. rebuilds every projection of `projections::all()` that has read-model tables (the search
//!    index has a bench of its own, `benches/search.rs`) from that log into
//!    `PostgresReadModels`, one after the other, each reading the whole log;
//! 3. derives the rows those read models end with by folding the same projections' changes
//!    in memory, and loads them with `COPY ... FROM STDIN` into plain tables made `LIKE` the
//!    rebuilt ones (same columns, constraints and indexes): the baseline, what writing the
//!    result costs with no log to read and no per-event statement;
//! 4. checks that the baseline tables and the rebuilt ones hold exactly the same rows.
//!
//! Both rates are given in events of the log per second, so the ratio says what share of the
//! bulk-load speed a rebuild reaches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use commands::EventStore;
use domain::{Event, Position};
use infra::event_store::PostgresEventStore;
use infra::read_model::PostgresReadModels;
use infra::source::StoreSource;
use infra::synth::History;
use projections::runner::{rebuild, rebuild_together};
use projections::stats::StatsChange;
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

/// The read-model tables each projection owns, as `PostgresReadModels` names them.
const OWNED_TABLES: &[(&str, &[&str])] = &[
    ("users", &["users", "sessions"]),
    ("feed", &["feed"]),
    ("comments", &["comments"]),
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
    let scratch = ScratchDatabase::create(&server).await?;
    let outcome = measure(&scratch.url, options.events).await;
    scratch.drop_database().await?;
    let report = outcome?;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        report.print();
    }
    Ok(())
}

struct Options {
    events: u64,
    json: bool,
}

impl Options {
    /// `--events N` (else `TREEHOLE_BENCH_EVENTS`, else 100000) and `--json`. Anything else is
    /// ignored: `cargo bench` passes `--bench` of its own.
    fn from_args() -> BenchResult<Self> {
        let mut events = match std::env::var("TREEHOLE_BENCH_EVENTS") {
            Ok(n) if !n.is_empty() => n.parse()?,
            _ => DEFAULT_EVENTS,
        };
        let mut json = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--json" => json = true,
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
        Ok(Self { events, json })
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

    /// Drops the database, ending the connections the stores may still hold.
    async fn drop_database(mut self) -> BenchResult<()> {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        self.admin.execute(&*drop).await?;
        Ok(())
    }
}

/// Writes the history, rebuilds every projection and loads the baseline, timing each.
async fn measure(url: &str, events: u64) -> BenchResult<Report> {
    let store = Arc::new(PostgresEventStore::connect(url).await?);
    eprintln!("writing {events} events ...");
    let started = Instant::now();
    History::new()
        .write(&*store, events, APPEND_BATCH, |_| {})
        .await?;
    let write_seconds = started.elapsed().as_secs_f64();
    let log_length = store.head().await?;

    let models = Arc::new(PostgresReadModels::connect(url).await?);
    let source: Arc<dyn EventSource> = Arc::new(StoreSource::new(store.clone()));
    let mut rebuilt = Vec::new();
    for projection in benched() {
        eprintln!("rebuilding {} ...", projection.name());
        let started = Instant::now();
        let generation = rebuild(
            projection.clone(),
            source.clone(),
            models.clone(),
            None,
            &|_, _| {},
        )
        .await?;
        rebuilt.push((projection, generation.number, started.elapsed()));
    }
    // The same projections again, together: one pass over the log for all of them (what
    // `treehole rebuild all` does). These generations are the ones checked against the baseline.
    eprintln!("rebuilding them all together ...");
    let started = Instant::now();
    let together = rebuild_together(
        &benched(),
        source.clone(),
        models.clone(),
        None,
        &|_, _, _| {},
    )
    .await?;
    let together_seconds = started.elapsed().as_secs_f64();

    eprintln!("deriving the rows in memory ...");
    let started = Instant::now();
    let model = derive_rows(&*store).await?;
    let derive_seconds = started.elapsed().as_secs_f64();

    eprintln!("loading the baseline with COPY ...");
    let mut conn = PgConnection::connect(url).await?;
    let mut lines = Vec::new();
    for (projection, _, took) in rebuilt {
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
            copy_seconds,
        });
    }
    let server_version: (String,) = sqlx::query_as("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    models.close().await;
    Ok(Report {
        log_length,
        write_seconds,
        derive_seconds,
        lines,
        together_seconds,
        server_version: server_version.0,
        machine: Machine::here(),
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

    fn iter(&self) -> impl Iterator<Item = &R> {
        self.slots.iter().flatten()
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
    created_at: DateTime<Utc>,
    last_activity_at: DateTime<Utc>,
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

#[derive(Default)]
struct Model {
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
            Change::InsertUser {
                user_id,
                username,
                email,
                registered_at,
            } => self.users.insert(
                user_id.as_uuid(),
                UserRow {
                    user_id: user_id.as_uuid(),
                    username,
                    email,
                    is_admin: false,
                    registered_at,
                },
            ),
            Change::SetAdmin { user_id } => {
                if let Some(user) = self.users.get_mut(user_id.as_uuid()) {
                    user.is_admin = true;
                }
            }
            Change::InsertSession {
                session_id,
                user_id,
                token_hash,
                expires_at,
            } => self.sessions.insert(
                session_id.as_uuid(),
                SessionRow {
                    session_id: session_id.as_uuid(),
                    token_hash,
                    user_id: user_id.as_uuid(),
                    expires_at,
                },
            ),
            Change::EndSession { session_id } => self.sessions.remove(session_id.as_uuid()),
            Change::InsertPost {
                post_id,
                position,
                author_name,
                anonymous,
                title,
                body,
                tags,
                created_at,
            } => self.feed.insert(
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
                    created_at,
                    last_activity_at: created_at,
                },
            ),
            Change::DeletePost { post_id } => self.feed.remove(post_id.as_uuid()),
            Change::CountComment {
                post_id,
                delta,
                active_at,
            } => {
                if let Some(post) = self.feed.get_mut(post_id.as_uuid()) {
                    post.comment_count += delta;
                    if let Some(at) = active_at {
                        post.last_activity_at = at;
                    }
                }
            }
            Change::InsertComment {
                comment_id,
                post_id,
                position,
                author_name,
                anonymous,
                is_host,
                body,
                reply_to,
                created_at,
            } => {
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
                    },
                );
            }
            Change::DeleteComment { comment_id, .. } => self.comments.remove(comment_id.as_uuid()),
            Change::DeleteCommentsOf { post_id } => {
                for comment in self
                    .comments_of
                    .remove(&post_id.as_uuid())
                    .unwrap_or_default()
                {
                    self.comments.remove(comment);
                }
            }
            // The benchmark's history is a forum's: no models, workers or tasks.
            Change::Tasks(_) => unreachable!("the benchmark writes no task events"),
            Change::Stats(change) => self.apply_stats(change),
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
                        .end();
                }
                "session_id, token_hash, user_id, expires_at"
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
                        .time(r.created_at)
                        .time(r.last_activity_at)
                        .end();
                }
                "post_id, position, author_name, anonymous, title, body, tags, comment_count, \
                 created_at, last_activity_at"
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
                        .end();
                }
                "comment_id, post_id, position, author_name, anonymous, is_host, body, \
                 reply_to, created_at"
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

struct Line {
    projection: &'static str,
    rows: u64,
    rebuild_seconds: f64,
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

struct Report {
    log_length: Position,
    write_seconds: f64,
    derive_seconds: f64,
    lines: Vec<Line>,
    /// All the projections rebuilt in one pass over the log.
    together_seconds: f64,
    server_version: String,
    machine: Machine,
}

impl Report {
    fn rate(&self, seconds: f64) -> f64 {
        self.log_length as f64 / seconds.max(1e-9)
    }

    fn total(&self) -> Line {
        Line {
            projection: "total",
            rows: self.lines.iter().map(|l| l.rows).sum(),
            rebuild_seconds: self.lines.iter().map(|l| l.rebuild_seconds).sum(),
            copy_seconds: self.lines.iter().map(|l| l.copy_seconds).sum(),
        }
    }

    /// The rebuild of all the projections together, against the `COPY` of all their rows.
    fn together(&self) -> Line {
        Line {
            projection: "together",
            rebuild_seconds: self.together_seconds,
            ..self.total()
        }
    }

    fn print(&self) {
        let m = &self.machine;
        println!(
            "projection rebuild on PostgreSQL {}: {} events in the log",
            self.server_version, self.log_length
        );
        println!(
            "machine: {} CPUs ({}), {:.1} GiB RAM, {}; {}",
            m.cpus,
            m.cpu_model,
            m.memory_gib,
            m.os,
            Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        println!(
            "log written in {:.1} s ({:.0} events/s); read + decoded + applied in memory, all \
             projections at once, in {:.1} s ({:.0} events/s)",
            self.write_seconds,
            self.rate(self.write_seconds),
            self.derive_seconds,
            self.rate(self.derive_seconds)
        );
        println!();
        println!(
            "{:<10} {:>8} {:>10} {:>12} {:>8} {:>11} {:>12} {:>7}",
            "projection",
            "rows",
            "rebuild s",
            "rebuild ev/s",
            "COPY s",
            "COPY rows/s",
            "COPY ev/s",
            "ratio"
        );
        for line in self.lines.iter().chain([&self.total(), &self.together()]) {
            println!(
                "{:<10} {:>8} {:>10.2} {:>12.0} {:>8.3} {:>11.0} {:>12.0} {:>7.4}",
                line.projection,
                line.rows,
                line.rebuild_seconds,
                self.rate(line.rebuild_seconds),
                line.copy_seconds,
                line.rows as f64 / line.copy_seconds.max(1e-9),
                self.rate(line.copy_seconds),
                line.copy_seconds / line.rebuild_seconds.max(1e-9),
            );
        }
        let (total, together) = (self.total(), self.together());
        println!();
        println!(
            "total: one after another, a rebuild runs at {:.1}% of the COPY rate of its rows \
             ({:.0}x as long); together, in one pass over the log, at {:.1}% ({:.1}x as long)",
            100.0 * total.copy_seconds / total.rebuild_seconds.max(1e-9),
            total.rebuild_seconds / total.copy_seconds.max(1e-9),
            100.0 * together.copy_seconds / together.rebuild_seconds.max(1e-9),
            together.rebuild_seconds / together.copy_seconds.max(1e-9)
        );
        println!(
            "ev/s: events of the log per second (every projection reads the whole log); \
             ratio: rebuild ev/s / COPY ev/s"
        );
    }

    fn to_json(&self) -> serde_json::Value {
        let line = |l: &Line| {
            serde_json::json!({
                "projection": l.projection,
                "rows": l.rows,
                "rebuild_seconds": l.rebuild_seconds,
                "rebuild_events_per_second": self.rate(l.rebuild_seconds),
                "copy_seconds": l.copy_seconds,
                "copy_rows_per_second": l.rows as f64 / l.copy_seconds.max(1e-9),
                "copy_events_per_second": self.rate(l.copy_seconds),
                "ratio": l.copy_seconds / l.rebuild_seconds.max(1e-9),
            })
        };
        let m = &self.machine;
        serde_json::json!({
            "events": self.log_length,
            "postgresql": self.server_version,
            "date": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            "machine": {
                "cpus": m.cpus,
                "cpu_model": m.cpu_model,
                "memory_gib": m.memory_gib,
                "os": m.os,
            },
            "write_seconds": self.write_seconds,
            "derive_seconds": self.derive_seconds,
            "projections": self.lines.iter().map(line).collect::<Vec<_>>(),
            "total": line(&self.total()),
            "together": line(&self.together()),
        })
    }
}
