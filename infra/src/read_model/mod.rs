//! Read-model stores: where projections write and queries read.

pub mod postgres;
pub(crate) mod readers;
pub mod sqlite;
mod stats;
pub(crate) mod tasks;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
pub use postgres::PostgresReadModels;
use projections::tasks::TaskQueries;
use projections::{ForumQueries, ReadModelError, ReadModelStore, StatsQueries};
pub use sqlite::SqliteReadModels;
use uuid::Uuid;

/// Both sides of a read-model backend, as the composition root holds it.
#[async_trait]
pub trait ReadModels:
    ReadModelStore + ForumQueries + TaskQueries + StatsQueries + crate::kafka::RelayCheckpoints
{
    /// Releases the connections (the SQLite store checkpoints its WAL).
    async fn close(&self);
}

#[async_trait]
impl ReadModels for SqliteReadModels {
    async fn close(&self) {
        SqliteReadModels::close(self).await;
    }
}

#[async_trait]
impl ReadModels for PostgresReadModels {
    async fn close(&self) {
        PostgresReadModels::close(self).await;
    }
}

/// One table of a projection, with its definition for each backend. Generation `g` lives in
/// `<name>_g<g>`; queries read the view `<name>`, which points at the live generation.
pub(crate) struct Table {
    pub projection: &'static str,
    pub name: &'static str,
    /// Column definitions and constraints, per backend.
    pub sqlite: &'static str,
    pub postgres: &'static str,
    /// Extra statements run after creating the table; `{t}` is the table's name.
    pub indexes: &'static [&'static str],
    /// Columns and order of a dump.
    pub columns: &'static str,
    pub order: &'static str,
}

impl Table {
    /// The statements that create generation `number` of this table afresh from its
    /// `definition` (the backend's columns): drop leftovers, create, index.
    pub(crate) fn create_statements(&self, number: u32, definition: &str) -> Vec<String> {
        let name = format!("{}_g{number}", self.name);
        let mut statements = vec![
            format!("DROP TABLE IF EXISTS {name}"),
            format!("CREATE TABLE {name} ({definition})"),
        ];
        statements.extend(self.indexes.iter().map(|i| i.replace("{t}", &name)));
        statements
    }

    /// The statements that point this table's view at generation `number`.
    pub(crate) fn view_statements(&self, number: u32) -> [String; 2] {
        [
            format!("DROP VIEW IF EXISTS {}", self.name),
            format!("CREATE VIEW {0} AS SELECT * FROM {0}_g{number}", self.name),
        ]
    }

    pub(crate) fn drop_statement(&self, number: u32) -> String {
        format!("DROP TABLE IF EXISTS {}_g{number}", self.name)
    }
}

pub(crate) const TABLES: &[Table] = &[
    Table {
        projection: "users",
        name: "users",
        sqlite: "user_id TEXT PRIMARY KEY, username TEXT NOT NULL, email TEXT NOT NULL, \
                     is_admin INTEGER NOT NULL DEFAULT 0, registered_at TEXT NOT NULL",
        postgres: "user_id UUID PRIMARY KEY, username TEXT NOT NULL, email TEXT NOT NULL, \
                     is_admin BOOLEAN NOT NULL DEFAULT FALSE, registered_at TIMESTAMPTZ NOT NULL",
        indexes: &[],
        columns: "user_id, username, email, is_admin, registered_at",
        order: "user_id",
    },
    Table {
        projection: "users",
        name: "sessions",
        sqlite: "session_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, \
                     user_id TEXT NOT NULL, expires_at TEXT NOT NULL",
        postgres: "session_id UUID PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, \
                     user_id UUID NOT NULL, expires_at TIMESTAMPTZ NOT NULL",
        indexes: &[],
        columns: "session_id, token_hash, user_id, expires_at",
        order: "session_id",
    },
    Table {
        projection: "feed",
        name: "feed",
        sqlite: "post_id TEXT PRIMARY KEY, position INTEGER NOT NULL UNIQUE, \
                     author_name TEXT NOT NULL, anonymous INTEGER NOT NULL, title TEXT, \
                     body TEXT NOT NULL, tags TEXT NOT NULL, \
                     comment_count INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, \
                     last_activity_at TEXT NOT NULL, author_id TEXT",
        postgres: "post_id UUID PRIMARY KEY, position BIGINT NOT NULL UNIQUE, \
                     author_name TEXT NOT NULL, anonymous BOOLEAN NOT NULL, title TEXT, \
                     body TEXT NOT NULL, tags TEXT[] NOT NULL, \
                     comment_count BIGINT NOT NULL DEFAULT 0, created_at TIMESTAMPTZ NOT NULL, \
                     last_activity_at TIMESTAMPTZ NOT NULL, author_id UUID",
        indexes: &["CREATE INDEX {t}_author ON {t} (author_id) WHERE author_id IS NOT NULL"],
        columns: "post_id, position, author_name, anonymous, title, body, tags, comment_count, \
                  created_at, last_activity_at, author_id",
        order: "position",
    },
    Table {
        projection: "comments",
        name: "comments",
        sqlite: "comment_id TEXT PRIMARY KEY, post_id TEXT NOT NULL, \
                     position INTEGER NOT NULL UNIQUE, author_name TEXT NOT NULL, \
                     anonymous INTEGER NOT NULL, is_host INTEGER NOT NULL, body TEXT NOT NULL, \
                     reply_to TEXT, created_at TEXT NOT NULL, author_id TEXT",
        postgres: "comment_id UUID PRIMARY KEY, post_id UUID NOT NULL, \
                     position BIGINT NOT NULL UNIQUE, author_name TEXT NOT NULL, \
                     anonymous BOOLEAN NOT NULL, is_host BOOLEAN NOT NULL, body TEXT NOT NULL, \
                     reply_to UUID, created_at TIMESTAMPTZ NOT NULL, author_id UUID",
        indexes: &[
            "CREATE INDEX {t}_post ON {t} (post_id, position)",
            "CREATE INDEX {t}_author ON {t} (author_id) WHERE author_id IS NOT NULL",
        ],
        columns: "comment_id, post_id, position, author_name, anonymous, is_host, body, \
                  reply_to, created_at, author_id",
        order: "position",
    },
    Table {
        projection: "tasks",
        name: "models",
        sqlite: "name TEXT PRIMARY KEY, kind TEXT NOT NULL, input_schema TEXT NOT NULL, \
                     max_concurrent INTEGER NOT NULL, enabled INTEGER NOT NULL, \
                     registered_at TEXT NOT NULL, updated_at TEXT NOT NULL",
        postgres: "name TEXT PRIMARY KEY, kind TEXT NOT NULL, input_schema JSONB NOT NULL, \
                     max_concurrent BIGINT NOT NULL, enabled BOOLEAN NOT NULL, \
                     registered_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL",
        indexes: &[],
        columns: "name, kind, input_schema, max_concurrent, enabled, registered_at, updated_at",
        order: "name",
    },
    Table {
        projection: "tasks",
        name: "workers",
        sqlite: "worker_id TEXT PRIMARY KEY, name TEXT NOT NULL, models TEXT NOT NULL, \
                     token_hash TEXT NOT NULL UNIQUE, revoked INTEGER NOT NULL DEFAULT 0, \
                     registered_at TEXT NOT NULL",
        postgres: "worker_id UUID PRIMARY KEY, name TEXT NOT NULL, models JSONB NOT NULL, \
                     token_hash TEXT NOT NULL UNIQUE, revoked BOOLEAN NOT NULL DEFAULT FALSE, \
                     registered_at TIMESTAMPTZ NOT NULL",
        indexes: &[],
        columns: "worker_id, name, models, token_hash, revoked, registered_at",
        order: "worker_id",
    },
    Table {
        projection: "tasks",
        name: "tasks",
        sqlite: "task_id TEXT PRIMARY KEY, position INTEGER NOT NULL UNIQUE, \
                     submitter_id TEXT NOT NULL, model TEXT NOT NULL, input TEXT NOT NULL, \
                     webhook_url TEXT, priority INTEGER NOT NULL, status TEXT NOT NULL, \
                     worker_id TEXT, attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, \
                     lease_until TEXT, result TEXT, error TEXT, created_at TEXT NOT NULL, \
                     started_at TEXT, finished_at TEXT, webhook_state TEXT, \
                     webhook_attempts INTEGER NOT NULL, webhook_last_at TEXT",
        postgres: "task_id UUID PRIMARY KEY, position BIGINT NOT NULL UNIQUE, \
                     submitter_id UUID NOT NULL, model TEXT NOT NULL, input JSONB NOT NULL, \
                     webhook_url TEXT, priority BIGINT NOT NULL, status TEXT NOT NULL, \
                     worker_id UUID, attempts BIGINT NOT NULL, max_attempts BIGINT NOT NULL, \
                     lease_until TIMESTAMPTZ, result JSONB, error TEXT, \
                     created_at TIMESTAMPTZ NOT NULL, started_at TIMESTAMPTZ, \
                     finished_at TIMESTAMPTZ, webhook_state TEXT, \
                     webhook_attempts BIGINT NOT NULL, webhook_last_at TIMESTAMPTZ",
        indexes: &[
            "CREATE INDEX {t}_queue ON {t} (status, model, priority DESC, position)",
            "CREATE INDEX {t}_submitter ON {t} (submitter_id, position)",
            "CREATE INDEX {t}_lease ON {t} (status, lease_until)",
            "CREATE INDEX {t}_webhook ON {t} (webhook_state, finished_at)",
        ],
        columns: "task_id, position, submitter_id, model, input, webhook_url, priority, status, \
                  worker_id, attempts, max_attempts, lease_until, result, error, created_at, \
                  started_at, finished_at, webhook_state, webhook_attempts, webhook_last_at",
        order: "position",
    },
    Table {
        projection: "tasks",
        name: "task_history",
        sqlite: "position INTEGER PRIMARY KEY, task_id TEXT NOT NULL, event TEXT NOT NULL, \
                     detail TEXT NOT NULL, at TEXT NOT NULL",
        postgres: "position BIGINT PRIMARY KEY, task_id UUID NOT NULL, event TEXT NOT NULL, \
                     detail JSONB NOT NULL, at TIMESTAMPTZ NOT NULL",
        indexes: &["CREATE INDEX {t}_task ON {t} (task_id, position)"],
        columns: "position, task_id, event, detail, at",
        order: "position",
    },
    Table {
        projection: "stats",
        name: "stats_counters",
        sqlite: stats::COUNTERS,
        postgres: stats::COUNTERS,
        indexes: &[],
        columns: "day, metric, key, value",
        order: "day, metric, key",
    },
    Table {
        projection: "stats",
        name: "stats_active",
        sqlite: stats::ACTIVE,
        postgres: stats::ACTIVE,
        indexes: &[],
        columns: "day, user_id",
        order: "day, user_id",
    },
    Table {
        projection: "stats",
        name: "stats_tasks",
        sqlite: stats::TASKS,
        postgres: stats::TASKS,
        indexes: &["CREATE INDEX {t}_finished ON {t} (finished_day)"],
        columns: "task_id, model, published_ms, first_claimed_ms, claimed_ms, finished_ms, \
                  finished_day, state",
        order: "task_id",
    },
];

/// The tables of a projection, or [`ReadModelError::UnknownProjection`].
pub(crate) fn tables_of(projection: &str) -> Result<Vec<&'static Table>, ReadModelError> {
    let tables: Vec<_> = TABLES
        .iter()
        .filter(|t| t.projection == projection)
        .collect();
    if tables.is_empty() {
        Err(ReadModelError::UnknownProjection(projection.to_owned()))
    } else {
        Ok(tables)
    }
}

/// A timestamp as the SQLite tables and the shared task statements store it: RFC 3339, UTC,
/// milliseconds (so text order is time order).
pub(crate) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>, ReadModelError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ReadModelError::Backend(format!("bad timestamp {s:?}: {e}")))
}

pub(crate) fn uuid(s: &str) -> Result<Uuid, ReadModelError> {
    Uuid::parse_str(s).map_err(|e| ReadModelError::Backend(format!("bad uuid {s:?}: {e}")))
}

/// Connection-level failures are `Unavailable` (worth retrying); the rest are `Backend`.
/// A column of a row, decoded into a typed error instead of a panic: a column missing or of
/// another type (a schema out of step with the code) fails the query, not the process.
pub(crate) trait Column {
    type Database: sqlx::Database;

    fn col<'r, T>(&'r self, name: &str) -> Result<T, ReadModelError>
    where
        T: sqlx::Decode<'r, Self::Database> + sqlx::Type<Self::Database>;
}

impl<R> Column for R
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    type Database = R::Database;

    fn col<'r, T>(&'r self, name: &str) -> Result<T, ReadModelError>
    where
        T: sqlx::Decode<'r, Self::Database> + sqlx::Type<Self::Database>,
    {
        self.try_get(name)
            .map_err(|e| ReadModelError::Backend(format!("column {name}: {e}")))
    }
}

pub(crate) fn backend(e: sqlx::Error) -> ReadModelError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            ReadModelError::Unavailable(e.to_string())
        }
        other if is_transient(&other) => ReadModelError::Transient(other.to_string()),
        other => ReadModelError::Backend(other.to_string()),
    }
}

/// A deadlock victim (`40P01`) or a serialisation failure (`40001`): PostgreSQL's SQLSTATEs
/// for work that succeeds when tried again.
fn is_transient(e: &sqlx::Error) -> bool {
    const DEADLOCK_DETECTED: &str = "40P01";
    const SERIALIZATION_FAILURE: &str = "40001";
    e.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == DEADLOCK_DETECTED || code == SERIALIZATION_FAILURE)
}

/// The query listing a table's rows as JSON text in dump order; `object` is the backend's
/// JSON-object function and `as_text` what turns its result into text.
pub(crate) fn dump_query(table: &Table, object: &str, as_text: &str) -> String {
    let pairs: Vec<String> = table
        .columns
        .split(',')
        .map(|c| format!("'{0}', {0}", c.trim()))
        .collect();
    let (pairs, name, order) = (pairs.join(", "), table.name, table.order);
    format!("SELECT {object}({pairs}){as_text} FROM {name} ORDER BY {order}")
}

/// Runs `attempt` again when PostgreSQL aborted it as a deadlock victim or a serialisation
/// failure: a promotion swaps views under an exclusive lock, and a query joining two views
/// can take their locks in the other order. Both are transient by definition.
pub(crate) async fn retry_transient<T, F, Fut>(mut attempt: F) -> Result<T, ReadModelError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ReadModelError>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(ReadModelError::Transient(_)) if tries < 5 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(5 << tries)).await;
            }
            other => return other,
        }
    }
}

/// The kinds of change a backend writes many rows of with one statement: most of a busy log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    InsertComment,
    CountComment,
    StatsCount,
    StatsActive,
}

impl Run {
    pub(crate) fn of(change: &projections::Change) -> Option<Run> {
        use projections::Change;
        use projections::stats::StatsChange;
        match change {
            Change::InsertComment { .. } => Some(Run::InsertComment),
            Change::CountComment { .. } => Some(Run::CountComment),
            Change::Stats(StatsChange::Count { .. }) => Some(Run::StatsCount),
            Change::Stats(StatsChange::Active { .. }) => Some(Run::StatsActive),
            _ => None,
        }
    }

    /// The first run of `changes`: its kind and length (1 for a change of no kind). A run ends
    /// before a change whose target (a post's count, a counter) it already holds, so that one
    /// statement never names a target twice (an `UPDATE ... FROM` applies one joined row per
    /// target, an upsert refuses a second); `coalesce` leaves one per target in a batch anyway.
    pub(crate) fn first(changes: &[projections::Change]) -> (Option<Run>, usize) {
        let Some(kind) = changes.first().and_then(Run::of) else {
            return (None, changes.len().min(1));
        };
        let mut targets = std::collections::HashSet::new();
        let run = changes
            .iter()
            .take_while(|c| Run::of(c) == Some(kind) && target(c).is_none_or(|t| targets.insert(t)))
            .count();
        (Some(kind), run)
    }
}

/// What a change of a run updates in place: a post's comment count or a statistics counter.
#[derive(PartialEq, Eq, Hash)]
enum Target<'a> {
    Post(domain::PostId),
    Counter(chrono::NaiveDate, projections::stats::Metric, &'a str),
}

/// The target a change of a run updates in place, if it updates anything.
fn target(change: &projections::Change) -> Option<Target<'_>> {
    use projections::Change;
    use projections::stats::StatsChange;
    match change {
        Change::CountComment { post_id, .. } => Some(Target::Post(*post_id)),
        Change::Stats(StatsChange::Count {
            day, metric, key, ..
        }) => Some(Target::Counter(*day, *metric, key)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error PostgreSQL raises with SQLSTATE `code`, from a real server: the transient
    /// ones are told by their code, whatever the message says.
    async fn raised(url: &str, code: &str, message: &str) -> ReadModelError {
        let pool = sqlx::PgPool::connect(url).await.expect("the test server");
        let e = sqlx::raw_sql(&format!(
            "DO $$ BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '{code}'; END $$"
        ))
        .execute(&pool)
        .await
        .expect_err("the statement raises");
        pool.close().await;
        backend(e)
    }

    #[tokio::test]
    async fn deadlocks_and_serialisation_failures_are_transient_by_their_sqlstate() {
        let Some(url) = std::env::var("TREEHOLE_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            use std::io::Write;
            let _ = std::io::stderr().write_all(
                b"test-skipped: read_model::tests::deadlocks_and_serialisation_failures_are_transient_by_their_sqlstate: TREEHOLE_TEST_DATABASE_URL not set\n",
            );
            return;
        };
        assert!(matches!(
            raised(&url, "40P01", "a victim").await,
            ReadModelError::Transient(_)
        ));
        assert!(matches!(
            raised(&url, "40001", "no serial order").await,
            ReadModelError::Transient(_)
        ));
        // The words alone do not make an error transient.
        assert!(matches!(
            raised(&url, "P0001", "deadlock detected").await,
            ReadModelError::Backend(_)
        ));
    }
}
