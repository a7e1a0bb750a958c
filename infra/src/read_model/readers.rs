//! Reader threads for the SQLite read models and the SQLite log's reads: each owns one
//! rusqlite connection and runs a whole query there (prepare from its cache, bind, step, map
//! the rows to views or envelopes), so a page costs one hand-off to the thread and one back.
//!
//! Why not sqlx here: sqlx's SQLite driver runs each connection on a worker thread of its own
//! and sends every statement, and every row, across a channel to it, copying each value. Under
//! `treehole bench reads --mix pages` those hand-offs (futex) and copies were a third of the
//! server's samples (BENCHMARKS.md). The writers (the log's, the read models' and the key
//! store's) own a rusqlite connection on a thread of their own too, opened by [`open_writer`];
//! the two that share the log's file wait for its lock with [`wait_for_the_lock`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use projections::ReadModelError;
use rusqlite::{Connection, OpenFlags};

/// What a query on a reader thread fails with: SQLite's error, or a row that does not map to
/// what it is read into (a bad uuid or timestamp), as the caller's error `E` (the read
/// models' by default, the log's for the event store); `?` converts both.
pub(crate) enum QueryError<E = ReadModelError> {
    Sqlite(rusqlite::Error),
    Model(E),
}

impl<E> From<rusqlite::Error> for QueryError<E> {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<ReadModelError> for QueryError {
    fn from(e: ReadModelError) -> Self {
        Self::Model(e)
    }
}

impl From<commands::StoreError> for QueryError<commands::StoreError> {
    fn from(e: commands::StoreError) -> Self {
        Self::Model(e)
    }
}

type Job = Box<dyn FnOnce(&Connection) + Send>;

enum Message {
    Run(Job),
    Stop,
}

/// A fixed set of threads, each with a read-only connection, fed from one queue.
pub(crate) struct Readers {
    queue: crossbeam_channel::Sender<Message>,
    threads: usize,
    closed: AtomicBool,
}

impl Readers {
    /// Opens `threads` read-only connections to the database at `path` (which must exist, in
    /// WAL mode) and starts a thread for each.
    pub(crate) fn open(path: &Path, threads: usize) -> Result<Self, ReadModelError> {
        let connections = (0..threads)
            .map(|_| connect(path))
            .collect::<Result<Vec<_>, _>>()?;
        Self::start("sqlite-reader", connections)
    }

    /// One thread with the read-write connection `connection`, for a store that writes a file
    /// another writer shares (its busy handler should be [`wait_for_the_lock`]).
    pub(crate) fn writer(connection: Connection, name: &str) -> Result<Self, ReadModelError> {
        Self::start(name, vec![connection])
    }

    /// A thread named `name-N` for each of `connections`, all fed from one queue.
    fn start(name: &str, connections: Vec<Connection>) -> Result<Self, ReadModelError> {
        let threads = connections.len();
        let (queue, jobs) = crossbeam_channel::unbounded::<Message>();
        for (n, connection) in connections.into_iter().enumerate() {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    while let Ok(Message::Run(job)) = jobs.recv() {
                        job(&connection);
                    }
                })
                .map_err(|e| ReadModelError::Unavailable(format!("reader thread: {e}")))?;
        }
        Ok(Self {
            queue,
            threads,
            closed: AtomicBool::new(false),
        })
    }

    /// Runs `query` on one of the reader threads and returns its answer.
    pub(crate) async fn run<T, F>(&self, query: F) -> Result<T, ReadModelError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, QueryError> + Send + 'static,
    {
        match self.call(query).await.ok_or_else(closed)? {
            Ok(value) => Ok(value),
            Err(QueryError::Sqlite(e)) => Err(error(e)),
            Err(QueryError::Model(e)) => Err(e),
        }
    }

    /// Runs `job` on one of the reader threads and returns what it returned; `None` when the
    /// readers are closed (or the job panicked).
    pub(crate) async fn call<T, F>(&self, job: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> T + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let _ = answer.send(job(connection));
        });
        self.queue.send(Message::Run(job)).ok()?;
        // A dropped sender means the thread is gone (closed, or the job panicked).
        answered.await.ok()
    }

    /// Stops the threads once the queries already queued have run.
    pub(crate) fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            for _ in 0..self.threads {
                let _ = self.queue.send(Message::Stop);
            }
        }
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.close();
    }
}

/// How long a writer waits for the write lock of a file another connection holds.
const WRITE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a writer waits between two tries for that lock.
const BUSY_STEP: Duration = Duration::from_micros(100);

/// The pause before try `tries + 1` for a write lock, or `None` once [`WRITE_LOCK_TIMEOUT`]
/// has gone by. The log's file has two writers: the log's, and the key store's, which puts a
/// first comment's key handles there in a transaction of a millisecond or so. SQLite's own
/// handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries, so each writer slept on for
/// milliseconds after the other's lock was free (about 110 ms of sleeps in the second of
/// `hot-post`'s waves, the log's writer, which every command waits for, 60 of them); short
/// steps take the lock within a step of its release.
fn busy_pause(tries: i32) -> Option<Duration> {
    let tries = u32::try_from(tries).unwrap_or(0);
    (BUSY_STEP * tries < WRITE_LOCK_TIMEOUT).then_some(BUSY_STEP)
}

/// A writer's busy handler (see [`busy_pause`]): `true` to try again.
pub(crate) fn wait_for_the_lock(tries: i32) -> bool {
    busy_pause(tries).map(std::thread::sleep).is_some()
}

/// A connection to the database at `path` opened with `flags` (no mutex: one thread uses
/// it), waiting up to 10 s for a lock, temporary data in memory.
pub(crate) fn open(path: &Path, flags: OpenFlags) -> Result<Connection, ReadModelError> {
    connection(path, flags).map_err(error)
}

fn connection(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        flags | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.execute_batch("PRAGMA temp_store = memory;")?;
    Ok(connection)
}

/// The one connection that writes the database at `path` (created if missing), switched to
/// WAL so that the reader threads read beside it; refused if SQLite will not use WAL there.
/// Fails with a message naming the file, for the caller to put in its own error (the log's or
/// the read models').
pub(crate) fn open_writer(path: &Path) -> Result<Connection, String> {
    let cannot = |e: rusqlite::Error| format!("cannot open {}: {e}", path.display());
    let connection = connection(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
    .map_err(cannot)?;
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(cannot)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "{} would not use WAL (journal mode {mode})",
            path.display()
        ));
    }
    Ok(connection)
}

fn connect(path: &Path) -> Result<Connection, ReadModelError> {
    let connection = open(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // Every page a reader needs is prepared once per connection and kept (the statements are
    // few and fixed); views redefined by a promotion are re-prepared by SQLite itself.
    connection.set_prepared_statement_cache_capacity(32);
    Ok(connection)
}

fn closed() -> ReadModelError {
    ReadModelError::Unavailable("the read-model readers are closed".to_owned())
}

/// Busy and locked are worth retrying; a missing file or a closed database is unavailable;
/// the rest (a schema out of step with the code, a bad value) is a backend failure.
pub(crate) fn error(e: rusqlite::Error) -> ReadModelError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                ReadModelError::Transient(e.to_string())
            }
            ErrorCode::CannotOpen | ErrorCode::NotADatabase | ErrorCode::SystemIoFailure => {
                ReadModelError::Unavailable(e.to_string())
            }
            _ => ReadModelError::Backend(e.to_string()),
        },
        _ => ReadModelError::Backend(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_tries_for_a_busy_lock_in_short_steps_until_the_timeout() {
        let mut waited = Duration::ZERO;
        let mut tries = 0;
        while let Some(pause) = busy_pause(tries) {
            assert!(
                pause <= Duration::from_micros(100),
                "a long pause: {pause:?}"
            );
            waited += pause;
            tries += 1;
        }
        assert!(waited >= WRITE_LOCK_TIMEOUT, "gave up after {waited:?}");
        assert!(
            waited < WRITE_LOCK_TIMEOUT + BUSY_STEP * 2,
            "waited on: {waited:?}"
        );
        assert_eq!(busy_pause(-1), Some(BUSY_STEP));
    }
}
