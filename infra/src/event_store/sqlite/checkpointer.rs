//! Checkpoints of the log's WAL on a thread of their own, beside the writer.
//!
//! SQLite's automatic checkpoint runs on the connection that commits, when its WAL has grown
//! past 1 000 pages: under `comments` that was the writer's thread, 57 times in a run of
//! 30 000 comments, each copying pages into the database file and syncing it twice while every
//! append in the queue waited. Those stalls were among the slowest requests' causes
//! (BENCHMARKS.md, "The log's checkpoints beside its writer"). So the writer's connection checkpoints nothing by itself
//! (`wal_autocheckpoint = 0`), and this thread, with a connection of its own, runs *passive*
//! checkpoints ([`PACE`] after a commit): they copy what is committed without taking the write
//! lock, so appends go on meanwhile.
//!
//! A WAL starts again from its beginning only when the writer begins a transaction with every
//! frame copied, which under steady appends a checkpoint beside them never achieves (frames keep
//! coming while it copies). So once the WAL holds [`RESTART_FRAMES`], this thread asks the
//! writer to finish the job: between two batches the writer runs a passive checkpoint itself,
//! which copies only what came since this thread's (a batch or two), and its next transaction
//! starts the WAL over. The WAL's size stays bounded, at about [`RESTART_FRAMES`] pages.
//!
//! Durability does not change: a commit is synced by the writer (`synchronous = FULL`) before it
//! is acknowledged, and a checkpoint syncs the WAL before it copies and the database file after.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::time::Duration;

use commands::StoreError;
use rusqlite::{Connection, OpenFlags};
use tracing::{debug, warn};

use super::{BUSY_TIMEOUT, sqlite_error};
use crate::read_model::readers;

/// How long after a commit the checkpoint runs, so that the commits of that time are copied
/// together (a page written by each of them is copied once).
pub(super) const PACE: Duration = Duration::from_millis(50);
/// The WAL's size, in frames (pages), past which the writer is asked to let it start over:
/// 16 MiB with SQLite's default page size.
pub(super) const RESTART_FRAMES: i64 = 4_096;

/// The writer's side.
pub(super) struct Checkpoints {
    /// Wakes the checkpointer; dropping it (with the writer) stops the thread.
    wake: SyncSender<()>,
    /// Set by the checkpointer when the WAL should start over.
    restart: Arc<AtomicBool>,
}

impl Checkpoints {
    /// Starts the checkpointer thread for the database at `path`.
    pub(super) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = open(path)?;
        let (wake, woken) = mpsc::sync_channel(1);
        let restart = Arc::new(AtomicBool::new(false));
        let checkpointer = Checkpointer {
            conn,
            restart: Arc::clone(&restart),
        };
        std::thread::Builder::new()
            .name("sqlite-log-ckpt".into())
            .spawn(move || checkpointer.run(&woken))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
        Ok(Self { wake, restart })
    }

    /// Tells the checkpointer that a transaction committed.
    pub(super) fn committed(&self) {
        // Full means a wake-up is pending already.
        let _ = self.wake.try_send(());
    }

    /// Whether the writer should run a checkpoint now (see the module's docs); asking takes
    /// the request. While the WAL stays that large (a reader still needed some of it), the
    /// checkpointer asks again after each of its own.
    pub(super) fn restart_due(&self) -> bool {
        self.restart.swap(false, Ordering::Relaxed)
    }
}

/// Runs a passive checkpoint on `conn`: copies what no reader still needs from the WAL, never
/// waiting for a lock. Returns the frames in the WAL and those copied, or `None` if another
/// checkpoint was running.
pub(super) fn passive(conn: &Connection) -> Result<Option<(i64, i64)>, StoreError> {
    let (busy, log, copied): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| sqlite_error("cannot checkpoint the log", e))?;
    Ok((busy == 0).then_some((log, copied)))
}

struct Checkpointer {
    conn: Connection,
    restart: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Checkpoints after commits until the writer is gone, then once more.
    fn run(self, woken: &Receiver<()>) {
        while woken.recv().is_ok() {
            // Let the commits of the next moment gather, then copy them all.
            std::thread::sleep(PACE);
            let gone = loop {
                match woken.try_recv() {
                    Ok(()) => {}
                    Err(TryRecvError::Empty) => break false,
                    Err(TryRecvError::Disconnected) => break true,
                }
            };
            self.checkpoint();
            if gone {
                break;
            }
        }
        debug!("log checkpointer stopped");
    }

    fn checkpoint(&self) {
        match passive(&self.conn) {
            Ok(Some((log, _))) if log >= RESTART_FRAMES => {
                self.restart.store(true, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "log checkpoint failed"),
        }
    }
}

/// The checkpointer's connection: read-write (a checkpoint writes the database file), syncing
/// as the writer does.
fn open(path: &Path) -> Result<Connection, StoreError> {
    let failed = |e| sqlite_error(&format!("cannot open {}", path.display()), e);
    let conn = readers::open(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| StoreError::Unavailable(format!("cannot open the checkpointer: {e}")))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(failed)?;
    Ok(conn)
}
