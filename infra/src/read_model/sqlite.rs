//! SQLite read models (the embedded default), in their own database file beside the log.
//!
//! One writer thread owns the read-write connection: a projector's batch and its checkpoint
//! go to it as one transaction in two hand-offs (move the checkpoint; write the changes and
//! commit). Reader threads with read-only connections serve queries concurrently (WAL), one
//! hand-off per query ([`Readers`]). Both use rusqlite with prepared statements kept per
//! connection: sqlx's SQLite driver hands every statement and every row across a channel to
//! its worker thread, which cost a third of the server's samples under the `reads` load and
//! most of the read-model writer's (BENCHMARKS.md).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use projections::ReadModelError;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};
use uuid::Uuid;

use super::Store;
use super::readers::{self, QueryError, Readers, error};
use super::sql::{self, Db, Dialect, Map, Stmt, Tx, Value, parse_json, parse_ts, parse_uuid, ts};

/// The SQLite read models.
pub type SqliteReadModels = Store<SqliteDb>;

/// Bookkeeping: every generation of every projection, its state and its checkpoint.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS generations (
    projection TEXT NOT NULL,
    number     INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    position   INTEGER NOT NULL DEFAULT 0,
    -- Retired generations keep their row (tables dropped) so numbers are never reused and a
    -- stale writer of an abandoned build can never write into a newer one.
    state      TEXT NOT NULL CHECK (state IN ('building', 'live', 'retired')),
    PRIMARY KEY (projection, number)
);
-- The Kafka relay's checkpoint: the last position the broker acknowledged.
CREATE TABLE IF NOT EXISTS relay_checkpoints (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"#;

/// Reader threads: a few more than the cores, since a read may wait on the disk; each holds
/// a connection and its prepared statements.
const READER_THREADS: usize = 4;

impl SqliteReadModels {
    /// Opens (creating if needed) the read-model database at `path`.
    pub async fn open(path: &Path) -> Result<Self, ReadModelError> {
        let path = path.to_owned();
        let writer = tokio::task::spawn_blocking(move || Writer::open(&path).map(|w| (w, path)))
            .await
            .map_err(|e| ReadModelError::Unavailable(format!("opening the read models: {e}")))?;
        let (writer, path) = writer?;
        let readers = Readers::open(&path, READER_THREADS)?;
        Ok(Store::on(SqliteDb { writer, readers }))
    }
}

/// The SQLite backend: the writer thread and the reader threads.
pub struct SqliteDb {
    writer: Writer,
    readers: Readers,
}

type Job = Box<dyn FnOnce(&Connection) + Send>;

enum Message {
    Run(Job),
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// The thread owning the read-write connection, and whose turn it is to use it.
struct Writer {
    jobs: crossbeam_channel::Sender<Message>,
    /// Held by a transaction from its start to its end.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Held by a batch of a projection not in [`FIRST`] while it waits for the turn.
    front: tokio::sync::Mutex<()>,
}

/// The projections a client reads right after its own post or comment (`GET /posts/{id}` and
/// its comments, with `?after=`): their batches go before the other projections' that are
/// waiting for the one writer. All of a store's projections apply a batch per group commit of
/// the log, each a transaction on that writer; in turn, a comment was visible only once every
/// projection's transaction ahead of the `feed`'s had committed (BENCHMARKS.md, twenty-fifth
/// session: "the thread's projections go first"). The others are not starved: one of them is
/// always next but one.
const FIRST: &[&str] = &["feed", "comments"];

impl Writer {
    fn open(path: &Path) -> Result<Self, ReadModelError> {
        let connection = readers::open_writer(path).map_err(ReadModelError::Backend)?;
        // Read models are rebuildable from the log, and the checkpoint commits with the rows,
        // so NORMAL (no fsync per commit) can lose only whole recent batches.
        connection
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;")
            .map_err(error)?;
        connection.execute_batch(SCHEMA).map_err(error)?;
        // Room for every statement text the projections write, each table's new rows in up to
        // eight chunk sizes among them.
        connection.set_prepared_statement_cache_capacity(128);
        let (jobs, queue) = crossbeam_channel::unbounded::<Message>();
        std::thread::Builder::new()
            .name("sqlite-read-model-writer".into())
            .spawn(move || {
                while let Ok(message) = queue.recv() {
                    match message {
                        Message::Run(job) => job(&connection),
                        Message::Stop(done) => {
                            // Closing the last connection checkpoints the WAL.
                            drop(connection);
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })
            .map_err(|e| ReadModelError::Unavailable(format!("writer thread: {e}")))?;
        Ok(Self {
            jobs,
            turn: Arc::new(tokio::sync::Mutex::new(())),
            front: tokio::sync::Mutex::new(()),
        })
    }
}

fn closed() -> ReadModelError {
    ReadModelError::Unavailable("the read-model writer is closed".to_owned())
}

/// `$1`-style placeholders as SQLite's numbered `?1`. Copies the text between them in
/// slices: every statement of every batch comes through here.
fn sqlite_sql(sql: &str) -> Cow<'_, str> {
    if !sql.contains('$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let placeholder = rest.as_bytes().get(i + 1).is_some_and(u8::is_ascii_digit);
        out.push(if placeholder { '?' } else { '$' });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value as V;
        Ok(match self {
            Value::Int(n) => n.map_or(ToSqlOutput::Owned(V::Null), |n| {
                ToSqlOutput::Owned(V::Integer(n))
            }),
            Value::Bool(b) => ToSqlOutput::Owned(V::Integer(i64::from(*b))),
            Value::Text(s) => match s {
                Some(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
                None => ToSqlOutput::Owned(V::Null),
            },
            Value::Uuid(u) => optional(u.map(|u| u.to_string())),
            Value::Time(t) => optional(t.as_ref().map(ts)),
            Value::Json(j) => optional(j.as_ref().map(serde_json::Value::to_string)),
            Value::Tags(t) => optional(Some(serde_json::to_string(t).unwrap_or_default())),
            Value::Array(..) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "SQLite takes batches as JSON, not arrays".into(),
                ));
            }
        })
    }
}

fn optional(text: Option<String>) -> ToSqlOutput<'static> {
    use rusqlite::types::Value as V;
    ToSqlOutput::Owned(text.map_or(V::Null, V::Text))
}

/// Runs a statement on `connection`; its count of changed rows.
fn execute(connection: &Connection, stmt: &Stmt) -> rusqlite::Result<u64> {
    let sql = sqlite_sql(&stmt.sql);
    let changed = if stmt.args.is_empty() {
        // Schema statements: not worth a place in the cache.
        connection.execute(&sql, [])?
    } else {
        connection
            .prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(stmt.args.iter()))?
    };
    Ok(changed as u64)
}

/// Every row of a query on `connection`, mapped by `map`.
fn rows<T>(connection: &Connection, stmt: &Stmt, map: Map<T>) -> Result<Vec<T>, QueryError> {
    let mut statement = connection.prepare_cached(&sqlite_sql(&stmt.sql))?;
    let mut rows = statement.query(rusqlite::params_from_iter(stmt.args.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(&SqliteRow(row))?);
    }
    Ok(out)
}

fn query_error(e: QueryError) -> ReadModelError {
    match e {
        QueryError::Sqlite(e) => error(e),
        QueryError::Model(e) => e,
    }
}

#[async_trait]
impl Db for SqliteDb {
    const DIALECT: Dialect = Dialect::Sqlite;
    /// A batch costs little beyond its changes: no pause between a projector's batches.
    const PACE: Duration = Duration::ZERO;
    /// One read-write connection, on one thread: a transaction holds it to its end.
    const ONE_WRITER: bool = true;
    type Tx = SqliteTx;

    async fn rows<T: Send + 'static>(
        &self,
        stmt: Stmt,
        map: Map<T>,
    ) -> Result<Vec<T>, ReadModelError> {
        self.readers.run(move |c| rows(c, &stmt, map)).await
    }

    async fn rows_if<T: Send + 'static>(
        &self,
        probe: Stmt,
        query: Stmt,
        map: Map<T>,
    ) -> Result<Option<Vec<T>>, ReadModelError> {
        self.readers
            .run(move |c| {
                if rows(c, &probe, |_| Ok(()))?.is_empty() {
                    return Ok(None);
                }
                rows(c, &query, map).map(Some)
            })
            .await
    }

    /// A projector's batch takes its turn on the writer: [`FIRST`]'s right behind the
    /// transaction holding it and at most one other that is waiting, the others in order.
    /// (The others queue for `front` first, so at most one of them waits for the turn at a
    /// time; the turn goes to its waiters in order.)
    async fn begin_batch(&self, projection: &str) -> Result<SqliteTx, ReadModelError> {
        if FIRST.contains(&projection) {
            return self.begin(true).await;
        }
        let _front = self.writer.front.lock().await;
        self.begin(true).await
    }

    async fn begin(&self, _relaxed: bool) -> Result<SqliteTx, ReadModelError> {
        Ok(SqliteTx {
            _turn: self.writer.turn.clone().lock_owned().await,
            jobs: self.writer.jobs.clone(),
            pending: Vec::new(),
            begun: false,
            finished: false,
        })
    }

    async fn close(&self) {
        self.readers.close();
        let (done, stopped) = tokio::sync::oneshot::channel();
        if self.writer.jobs.send(Message::Stop(done)).is_ok() {
            let _ = stopped.await;
        }
    }
}

/// A write transaction on the writer thread: `BEGIN IMMEDIATE` with its first statement, so
/// it holds the database's write lock from its first answer to its commit.
pub struct SqliteTx {
    _turn: tokio::sync::OwnedMutexGuard<()>,
    jobs: crossbeam_channel::Sender<Message>,
    /// Statements not yet sent, which go with the next job.
    pending: Vec<Stmt>,
    begun: bool,
    finished: bool,
}

impl SqliteTx {
    /// Runs the pending statements, then `then`, on the writer thread, starting the
    /// transaction first if this is its first job.
    async fn send<T, F>(&mut self, then: F) -> Result<T, ReadModelError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, QueryError> + Send + 'static,
    {
        let begin = !self.begun;
        self.begun = true;
        let pending = std::mem::take(&mut self.pending);
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |c| {
            let run = || -> Result<T, QueryError> {
                if begin {
                    c.execute_batch("BEGIN IMMEDIATE")?;
                }
                for stmt in &pending {
                    execute(c, stmt)?;
                }
                then(c)
            };
            let _ = answer.send(run().map_err(query_error));
        });
        self.jobs.send(Message::Run(job)).map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

#[async_trait]
impl Tx for SqliteTx {
    async fn execute(&mut self, stmt: Stmt) -> Result<u64, ReadModelError> {
        self.send(move |c| Ok(execute(c, &stmt)?)).await
    }

    async fn execute_all(&mut self, stmts: Vec<Stmt>) -> Result<(), ReadModelError> {
        self.pending.extend(stmts);
        Ok(())
    }

    async fn rows<T: Send + 'static>(
        &mut self,
        stmt: Stmt,
        map: Map<T>,
    ) -> Result<Vec<T>, ReadModelError> {
        self.send(move |c| rows(c, &stmt, map)).await
    }

    async fn commit(mut self) -> Result<(), ReadModelError> {
        if !self.begun && self.pending.is_empty() {
            self.finished = true;
            return Ok(());
        }
        self.send(|c| Ok(c.execute_batch("COMMIT")?)).await?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for SqliteTx {
    /// A transaction not committed rolls back, before the next one gets its turn (the job
    /// is queued while this one still holds the turn).
    fn drop(&mut self) {
        if self.begun && !self.finished {
            let job: Job = Box::new(|c| {
                let _ = c.execute_batch("ROLLBACK");
            });
            let _ = self.jobs.send(Message::Run(job));
        }
    }
}

/// A row on a rusqlite connection, read into the shapes [`sql::Row`] promises.
struct SqliteRow<'a, 'b>(&'a rusqlite::Row<'b>);

fn column(i: usize, e: impl std::fmt::Display) -> ReadModelError {
    ReadModelError::Backend(format!("column {i}: {e}"))
}

impl SqliteRow<'_, '_> {
    fn opt_str(&self, i: usize) -> Result<Option<&str>, ReadModelError> {
        self.0
            .get_ref(i)
            .map_err(|e| column(i, e))?
            .as_str_or_null()
            .map_err(|e| column(i, e))
    }
}

impl sql::Row for SqliteRow<'_, '_> {
    fn opt_int(&self, i: usize) -> Result<Option<i64>, ReadModelError> {
        self.0.get(i).map_err(|e| column(i, e))
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>, ReadModelError> {
        self.0.get(i).map_err(|e| column(i, e))
    }

    fn opt_uuid(&self, i: usize) -> Result<Option<Uuid>, ReadModelError> {
        self.opt_str(i)?.map(parse_uuid).transpose()
    }

    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, ReadModelError> {
        self.opt_str(i)?.map(parse_ts).transpose()
    }

    fn opt_json(&self, i: usize) -> Result<Option<serde_json::Value>, ReadModelError> {
        self.opt_str(i)?.map(parse_json).transpose()
    }

    fn flag(&self, i: usize) -> Result<bool, ReadModelError> {
        self.0.get(i).map_err(|e| column(i, e))
    }

    fn tags(&self, i: usize) -> Result<Vec<String>, ReadModelError> {
        let text = self.opt_str(i)?.ok_or_else(|| column(i, "NULL"))?;
        serde_json::from_str(text).map_err(|e| column(i, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The feed's batch waits behind the transaction holding the turn and one other batch,
    /// not behind every batch queued before it.
    #[tokio::test]
    async fn the_thread_s_projections_wait_behind_one_other_batch_at_most() {
        let dir = tempfile::TempDir::new().expect("a temporary directory");
        let path = dir.path().join("readmodels.db");
        let writer = Writer::open(&path).expect("the writer opens");
        let readers = Readers::open(&path, 1).expect("the readers open");
        let db = Arc::new(SqliteDb { writer, readers });
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let holding = db.begin_batch("stats").await.expect("the turn");
        let mut waiting = tokio::task::JoinSet::new();
        for name in ["tasks", "users", "moderation", "inbox", "feed"] {
            let (db, order) = (Arc::clone(&db), Arc::clone(&order));
            waiting.spawn(async move {
                let tx = db.begin_batch(name).await.expect("a turn");
                order.lock().expect("not poisoned").push(name);
                drop(tx);
            });
            // Each queues before the next one starts.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        drop(holding);
        while waiting.join_next().await.is_some() {}
        let order = order.lock().expect("not poisoned").clone();
        assert_eq!(order.len(), 5);
        let feed = order.iter().position(|n| *n == "feed");
        assert_eq!(feed, Some(1), "{order:?}");
    }

    #[test]
    fn placeholders_become_numbered_question_marks() {
        assert_eq!(
            sqlite_sql("UPDATE t SET a = $1, b = $12 WHERE c = '$' AND d = $2"),
            "UPDATE t SET a = ?1, b = ?12 WHERE c = '$' AND d = ?2"
        );
        assert_eq!(sqlite_sql("SELECT '价$', $3, $"), "SELECT '价$', ?3, $");
        assert!(matches!(sqlite_sql("SELECT 1"), Cow::Borrowed(_)));
    }
}
