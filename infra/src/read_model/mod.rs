//! Read-model stores: where projections write and queries read.
//!
//! Every read model is written once: each table in its own file under [`tables`] (schema,
//! the statements each change makes, its batch statements, its queries and its row
//! mappings), the generations, views and promotion once here, the query ports once in
//! [`queries`]. What differs between SQLite and PostgreSQL is the small seam of [`sql`]
//! (types, batches, locks) and the two [`sql::Db`] backends that run the SQL:
//! [`sqlite`] on a writer thread and reader threads of its own (rusqlite), [`postgres`] on a
//! sqlx pool.

pub mod postgres;
mod queries;
pub(crate) mod readers;
pub(crate) mod sql;
pub mod sqlite;
mod tables;

use projections::{FeedChange, InboxChange};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::Position;
pub use postgres::PostgresReadModels;
use projections::tasks::TaskQueries;
use projections::{Change, Generation, Promotion, ReadModelError, ReadModelStore};
use projections::{ForumQueries, StatsQueries};
use sql::{Db, Stmt, Tx, Value, Write};
pub use sqlite::SqliteReadModels;
use tables::{Table, tables_of};

/// Both sides of a read-model backend, as the composition root holds it.
#[async_trait]
pub trait ReadModels:
    ReadModelStore + ForumQueries + TaskQueries + StatsQueries + crate::kafka::RelayCheckpoints
{
    /// Releases the connections (the SQLite store checkpoints its WAL).
    async fn close(&self);
}

/// The read models on the database `D` (SQLite or PostgreSQL, see [`SqliteReadModels`] and
/// [`PostgresReadModels`]). The backend trait is the crate's own: the bounds below name it.
pub struct Store<D> {
    db: D,
    /// How long each projection's last batch held the writer, where they share one.
    held: std::sync::Mutex<HashMap<String, Duration>>,
}

#[allow(private_bounds)]
impl<D: Db> Store<D> {
    pub(crate) fn on(db: D) -> Self {
        Self {
            db,
            held: Default::default(),
        }
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

#[async_trait]
impl<D: Db> ReadModels for Store<D> {
    async fn close(&self) {
        self.db.close().await;
    }
}

impl Table {
    /// The statements that create generation `number` of this table afresh: drop leftovers,
    /// create, index.
    fn create(&self, d: sql::Dialect, number: u32) -> Vec<Stmt> {
        let name = format!("{}_g{number}", self.name);
        let mut statements = vec![
            format!("DROP TABLE IF EXISTS {name}"),
            format!(
                "CREATE TABLE {name} ({})",
                d.columns(self.columns, self.constraints)
            ),
        ];
        statements.extend(self.indexes.iter().map(|i| i.replace("{t}", &name)));
        if d == sql::Dialect::Postgres {
            statements.extend(self.functions.iter().map(|f| f.create(number)));
        }
        statements
            .into_iter()
            .map(|s| Stmt::new(s, vec![]))
            .collect()
    }

    /// The statements that point this table's view at generation `number`.
    fn show(&self, number: u32) -> [Stmt; 2] {
        [
            Stmt::new(format!("DROP VIEW IF EXISTS {}", self.name), vec![]),
            Stmt::new(
                format!("CREATE VIEW {0} AS SELECT * FROM {0}_g{number}", self.name),
                vec![],
            ),
        ]
    }

    fn drop(&self, d: sql::Dialect, number: u32) -> Vec<Stmt> {
        let mut statements = vec![format!("DROP TABLE IF EXISTS {}_g{number}", self.name)];
        if d == sql::Dialect::Postgres {
            statements.extend(self.functions.iter().map(|f| f.drop(number)));
        }
        statements
            .into_iter()
            .map(|s| Stmt::new(s, vec![]))
            .collect()
    }
}

/// Gives the live generation of `projection` (if any) every column this code's tables have,
/// with their defaults, and points its views at it again (PostgreSQL expands a view's `*` when
/// it is made). A new generation is made when the projection's version changed; until it is
/// promoted, queries read the old one with this code's columns, and would fail on a column it
/// lacks. The defaults stand until the rebuild replaces them; a table the old generation lacks
/// altogether is made empty (the inbox's stretches of following: until the rebuild, its
/// queries show the replies and notices the old generation wrote).
async fn adapt_live<D: Db>(
    tx: &mut D::Tx,
    tables: &[&'static Table],
    projection: &str,
) -> Result<(), ReadModelError> {
    let live = tx
        .rows(
            Stmt::new(
                "SELECT number FROM generations WHERE projection = $1 AND state = 'live'",
                vec![projection_arg(projection)],
            ),
            |row| number(row.int(0)?),
        )
        .await?;
    let Some(&live) = live.first() else {
        return Ok(());
    };
    let mut statements = Vec::new();
    for table in tables {
        let name = format!("{}_g{live}", table.name);
        let present: Vec<String> = tx
            .rows(D::DIALECT.column_names(&name), |row| row.text(0))
            .await?;
        if present.is_empty() {
            statements.extend(table.create(D::DIALECT, live));
            statements.extend(table.show(live));
            continue;
        }
        let missing: Vec<&sql::Col> = table
            .columns
            .iter()
            .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(c.name)))
            .collect();
        if missing.is_empty() {
            continue;
        }
        for c in &missing {
            statements.push(Stmt::new(
                format!(
                    "ALTER TABLE {name} ADD COLUMN {}",
                    D::DIALECT.columns(std::slice::from_ref(*c), "")
                ),
                vec![],
            ));
        }
        statements.extend(table.show(live));
    }
    tx.execute_all(statements).await
}

/// A generation's row: its number, checkpoint and state.
struct GenerationRow {
    number: u32,
    position: Position,
    state: String,
}

fn generation_row(row: &dyn sql::Row) -> Result<GenerationRow, ReadModelError> {
    Ok(GenerationRow {
        number: number(row.int(0)?)?,
        position: row.int(1)? as Position,
        state: row.text(2)?,
    })
}

fn number(n: i64) -> Result<u32, ReadModelError> {
    u32::try_from(n).map_err(|e| ReadModelError::Backend(format!("generation number {n}: {e}")))
}

fn projection_arg(projection: &str) -> Value {
    Value::text(projection)
}

/// Drops a generation's tables and marks it retired (its row stays, so numbers are never
/// reused and a stale writer of an abandoned build can never write into a newer one).
async fn retire<T: Tx>(
    tx: &mut T,
    d: sql::Dialect,
    tables: &[&Table],
    projection: &str,
    number: u32,
) -> Result<(), ReadModelError> {
    let mut statements: Vec<Stmt> = tables.iter().flat_map(|t| t.drop(d, number)).collect();
    statements.push(Stmt::new(
        "UPDATE generations SET state = 'retired' WHERE projection = $1 AND number = $2",
        vec![projection_arg(projection), Value::int(number)],
    ));
    tx.execute_all(statements).await
}

#[allow(private_bounds)]
impl<D: Db> Store<D> {
    async fn promote_once(
        &self,
        projection: &str,
        generation: u32,
    ) -> Result<Promotion, ReadModelError> {
        let tables = tables_of(projection)?;
        let superseded = || ReadModelError::Superseded {
            projection: projection.to_owned(),
            generation,
        };
        let mut tx = self.db.begin(false).await?;
        if let Some(lock) = D::DIALECT.lock_projection(projection) {
            tx.execute(lock).await?;
        }
        let rows = tx
            .rows(
                Stmt::new(
                    format!(
                        "SELECT number, position, state FROM generations \
                         WHERE projection = $1 AND (number = $2 OR state = 'live') \
                         ORDER BY number{}",
                        D::DIALECT.for_update()
                    ),
                    vec![projection_arg(projection), Value::int(generation)],
                ),
                generation_row,
            )
            .await?;
        let this = rows
            .iter()
            .find(|r| r.number == generation)
            .ok_or_else(superseded)?;
        match this.state.as_str() {
            "live" => return Ok(Promotion::Done),
            "retired" => return Err(superseded()),
            _ => {}
        }
        let live = rows.iter().find(|r| r.state == "live");
        if let Some(live) = live
            && live.position > this.position
        {
            return Ok(Promotion::Behind {
                live_position: live.position,
            });
        }
        // Views first, then the old tables: all in this transaction, so readers see either
        // the old generation or the new one, never a mix or nothing.
        tx.execute_all(tables.iter().flat_map(|t| t.show(generation)).collect())
            .await?;
        if let Some(live) = live {
            retire(&mut tx, D::DIALECT, &tables, projection, live.number).await?;
        }
        tx.execute_all(vec![Stmt::new(
            "UPDATE generations SET state = 'live' WHERE projection = $1 AND number = $2",
            vec![projection_arg(projection), Value::int(generation)],
        )])
        .await?;
        tx.commit().await?;
        Ok(Promotion::Done)
    }
}

#[async_trait]
impl<D: Db> ReadModelStore for Store<D> {
    fn pace(&self, _projection: &str) -> Duration {
        D::PACE
    }

    async fn live(&self, projection: &str) -> Result<Option<Generation>, ReadModelError> {
        let rows = self
            .db
            .rows(
                Stmt::new(
                    "SELECT number, version, position FROM generations \
                     WHERE projection = $1 AND state = 'live'",
                    vec![projection_arg(projection)],
                ),
                |row| {
                    Ok(Generation {
                        number: number(row.int(0)?)?,
                        version: number(row.int(1)?)?,
                        position: row.int(2)? as Position,
                    })
                },
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn create_generation(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<Generation, ReadModelError> {
        let tables = tables_of(projection)?;
        let mut tx = self.db.begin(false).await?;
        if let Some(lock) = D::DIALECT.lock_projection(projection) {
            tx.execute(lock).await?;
        }
        let unfinished = tx
            .rows(
                Stmt::new(
                    "SELECT number FROM generations WHERE projection = $1 AND state = 'building'",
                    vec![projection_arg(projection)],
                ),
                |row| number(row.int(0)?),
            )
            .await?;
        for n in unfinished {
            retire(&mut tx, D::DIALECT, &tables, projection, n).await?;
        }
        adapt_live::<D>(&mut tx, &tables, projection).await?;
        let last = tx
            .rows(
                Stmt::new(
                    "SELECT COALESCE(MAX(number), 0) FROM generations WHERE projection = $1",
                    vec![projection_arg(projection)],
                ),
                |row| number(row.int(0)?),
            )
            .await?;
        let number = last.first().copied().unwrap_or(0) + 1;
        let mut statements: Vec<Stmt> = tables
            .iter()
            .flat_map(|t| t.create(D::DIALECT, number))
            .collect();
        statements.push(Stmt::new(
            "INSERT INTO generations (projection, number, version, position, state) \
             VALUES ($1, $2, $3, 0, 'building')",
            vec![
                projection_arg(projection),
                Value::int(number),
                Value::int(version),
            ],
        ));
        tx.execute_all(statements).await?;
        tx.commit().await?;
        Ok(Generation {
            number,
            version,
            position: 0,
        })
    }

    async fn apply(
        &self,
        projection: &str,
        generation: u32,
        changes: &[Change],
        from: Position,
        to: Position,
    ) -> Result<(), ReadModelError> {
        let tables = tables_of(projection)?;
        let position = |p: Position| {
            i64::try_from(p).map_err(|e| ReadModelError::Backend(format!("position {p}: {e}")))
        };
        // A read model is derived from the log and its checkpoint moves in the same
        // transaction, so its commit need not wait for the disk: a crash can lose the last
        // batches, rows and checkpoint together, and the projector applies them again.
        let mut tx = self.db.begin_batch(projection).await?;
        let holding = Instant::now();
        // Moving the checkpoint first takes the write lock on the generation's row at once, so
        // a concurrent projector or promotion waits here rather than deadlocking later.
        let moved = tx
            .execute(Stmt::new(
                "UPDATE generations SET position = $1 WHERE projection = $2 AND number = $3 \
                 AND position = $4 AND state <> 'retired'",
                vec![
                    Value::int(position(to)?),
                    projection_arg(projection),
                    Value::int(generation),
                    Value::int(position(from)?),
                ],
            ))
            .await?;
        if moved != 1 {
            let row = tx
                .rows(
                    Stmt::new(
                        "SELECT number, position, state FROM generations \
                         WHERE projection = $1 AND number = $2",
                        vec![projection_arg(projection), Value::int(generation)],
                    ),
                    generation_row,
                )
                .await?;
            return Err(match row.into_iter().next() {
                Some(row) if row.state != "retired" => ReadModelError::Moved {
                    projection: projection.to_owned(),
                    generation,
                    position: row.position,
                },
                _ => ReadModelError::Superseded {
                    projection: projection.to_owned(),
                    generation,
                },
            });
        }
        tx.execute_all(statements(D::DIALECT, &tables, generation, changes))
            .await?;
        tx.commit().await?;
        if D::ONE_WRITER {
            let took = holding.elapsed();
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            // A projection's name is stored once, not on every batch.
            match held.get_mut(projection) {
                Some(last) => *last = took,
                None => {
                    held.insert(projection.to_owned(), took);
                }
            }
        }
        Ok(())
    }

    fn held(&self, projection: &str) -> Option<Duration> {
        if !D::ONE_WRITER {
            return None;
        }
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(projection)
            .copied()
    }

    async fn promote(
        &self,
        projection: &str,
        generation: u32,
    ) -> Result<Promotion, ReadModelError> {
        retry_transient(|| self.promote_once(projection, generation)).await
    }

    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError> {
        let mut lines = Vec::new();
        for table in tables_of(projection)? {
            let query = D::DIALECT.dump(table.name, table.columns, table.order);
            let rows = self
                .db
                .rows(Stmt::new(query, vec![]), |row| row.text(0))
                .await?;
            lines.extend(rows.into_iter().map(|r| format!("{} {r}", table.name)));
        }
        Ok(lines)
    }
}

/// The statements that apply `changes` to generation `g` of `tables`, table by table (no
/// statement reads or writes another table than its own, so only each table's own order
/// matters). Consecutive new rows of a table go in as one statement ([`sql::Dialect::insert`]);
/// runs of comment counts and statistics counters as one batch statement each. A batch thus
/// costs a few statements whatever its size.
fn statements(d: sql::Dialect, tables: &[&Table], g: u32, changes: &[Change]) -> Vec<Stmt> {
    // The runs of the batch, found once for every table.
    let mut runs = Vec::new();
    let mut start = 0;
    while start < changes.len() {
        let (kind, run) = Run::first(&changes[start..]);
        runs.push((kind, start..start + run));
        start += run;
    }
    let mut out = Vec::new();
    let mut writes = Vec::new();
    for table in tables {
        for (kind, range) in &runs {
            let run = &changes[range.clone()];
            let batched = match kind {
                Some(kind) if run.len() > 1 => (table.run)(d, g, *kind, run),
                _ => None,
            };
            match batched {
                Some(statement) => writes.push(Write::Stmt(statement)),
                None => {
                    for change in run {
                        (table.write)(g, change, &mut writes);
                    }
                }
            }
        }
        merge(d, writes.drain(..), &mut out);
    }
    out
}

/// `writes` as statements, each run of inserts into one table as one.
fn merge(d: sql::Dialect, writes: impl Iterator<Item = Write>, out: &mut Vec<Stmt>) {
    let mut rows: Vec<sql::Insert> = Vec::new();
    for write in writes {
        match write {
            Write::Insert(row) => {
                if rows
                    .first()
                    .is_some_and(|r| r.table != row.table || r.columns != row.columns)
                {
                    d.insert(std::mem::take(&mut rows), out);
                }
                rows.push(row);
            }
            Write::Stmt(statement) => {
                if !rows.is_empty() {
                    d.insert(std::mem::take(&mut rows), out);
                }
                out.push(statement);
            }
        }
    }
    if !rows.is_empty() {
        d.insert(rows, out);
    }
}

#[async_trait]
impl<D: Db> crate::kafka::RelayCheckpoints for Store<D> {
    async fn relay_checkpoint(&self, name: &str) -> Result<Position, ReadModelError> {
        let rows = self
            .db
            .rows(
                Stmt::new(
                    "SELECT position FROM relay_checkpoints WHERE name = $1",
                    vec![Value::text(name)],
                ),
                |row| row.int(0),
            )
            .await?;
        Ok(rows.first().copied().unwrap_or(0).max(0) as Position)
    }

    async fn save_relay_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> Result<(), ReadModelError> {
        let position =
            i64::try_from(position).map_err(|e| ReadModelError::Backend(e.to_string()))?;
        let mut tx = self.db.begin(false).await?;
        tx.execute(Stmt::new(
            "INSERT INTO relay_checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position \
             WHERE excluded.position > relay_checkpoints.position",
            vec![Value::text(name), Value::int(position)],
        ))
        .await?;
        tx.commit().await
    }
}

/// Runs `attempt` again when PostgreSQL aborted it as a deadlock victim or a serialisation
/// failure (or SQLite found its database busy): a promotion swaps views under an exclusive
/// lock, and a query joining two views can take their locks in the other order. Both are
/// transient by definition.
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

/// The kinds of change that update rows in place which a backend writes many of with one
/// statement (new rows need no kind: see [`merge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    CountComment,
    StatsCount,
    /// What comments make in the inbox (fan-outs, follows, named authors): in event order,
    /// each reading what the ones before it wrote.
    Inbox,
}

impl Run {
    pub(crate) fn of(change: &Change) -> Option<Run> {
        use projections::stats::StatsChange;
        match change {
            Change::Feed(FeedChange::CountComment { .. }) => Some(Run::CountComment),
            Change::Stats(StatsChange::Count { .. }) => Some(Run::StatsCount),
            Change::Inbox(
                InboxChange::Notify { .. }
                | InboxChange::AutoFollow { .. }
                | InboxChange::NamedAuthor { .. },
            ) => Some(Run::Inbox),
            _ => None,
        }
    }

    /// The first run of `changes`: its kind and length (1 for a change of no kind). A run ends
    /// before a change whose target (a post's count, a counter) it already holds, so that one
    /// statement never names a target twice (an `UPDATE ... FROM` applies one joined row per
    /// target, an upsert refuses a second); `coalesce` leaves one per target in a batch anyway.
    pub(crate) fn first(changes: &[Change]) -> (Option<Run>, usize) {
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
fn target(change: &Change) -> Option<Target<'_>> {
    use projections::stats::StatsChange;
    match change {
        Change::Feed(FeedChange::CountComment { post_id, .. }) => Some(Target::Post(*post_id)),
        Change::Stats(StatsChange::Count {
            day, metric, key, ..
        }) => Some(Target::Counter(*day, *metric, key)),
        _ => None,
    }
}

/// Connection-level failures are `Unavailable` (worth retrying later); deadlocks and
/// serialisation failures `Transient` (by their SQLSTATE); the rest are `Backend`.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What each projection's generations are made of, pinned with the projection's version:
    /// a fingerprint of its tables' statements on both backends and of its PostgreSQL functions.
    const GENERATIONS: &[(&str, u32, &str)] = &[
        ("users", 3, "3a49316a8bcd3dd5"),
        ("feed", 5, "ee8192cfd8af6f4c"),
        ("comments", 4, "3575b93a7ae68f66"),
        ("tasks", 1, "272f48d129c064c6"),
        ("stats", 2, "60d1cc2e1897a2f6"),
        ("inbox", 5, "5592656e93ba54af"),
        ("moderation", 1, "83873b3cd50a3f96"),
    ];

    /// The fingerprint of what a generation of `projection` is made of (SHA-256 of its
    /// statements, the first 16 hex digits).
    fn fingerprint(projection: &str) -> Option<String> {
        use sha2::Digest;
        let tables = tables_of(projection).ok()?;
        let mut hash = sha2::Sha256::new();
        for dialect in [sql::Dialect::Sqlite, sql::Dialect::Postgres] {
            for table in &tables {
                for stmt in table.create(dialect, 1) {
                    hash.update(stmt.sql.as_bytes());
                    hash.update(b"\n");
                }
            }
        }
        Some(hex::encode(hash.finalize())[..16].to_owned())
    }

    /// A live generation keeps the tables and PostgreSQL functions it was made with (a
    /// function's body too); only a rebuild, which a raised projection version starts, makes
    /// them anew. A change to either without a new version would leave running deployments on
    /// the old ones while new ones got the new: this fails until the version is raised with it.
    #[test]
    fn a_generation_changes_only_with_its_projection_s_version() {
        let mut wrong = Vec::new();
        for projection in projections::all() {
            let (name, version) = (projection.name(), projection.version());
            let Some(now) = fingerprint(name) else {
                continue; // not in SQL (search)
            };
            match GENERATIONS.iter().find(|(n, ..)| *n == name) {
                Some(&(_, v, pinned)) if v == version && pinned == now => {}
                Some(&(_, v, pinned)) if v == version => wrong.push(format!(
                    "{name}: its tables or functions changed ({pinned} -> {now}) but its \
                     version is still {v}; raise the version with the change, then pin \
                     (\"{name}\", {}, \"{now}\")",
                    v + 1
                )),
                _ => wrong.push(format!("{name}: pin (\"{name}\", {version}, \"{now}\")")),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

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
