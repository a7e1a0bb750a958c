//! PostgreSQL read models: the same tables and generations as the SQLite store, with
//! PostgreSQL's types (UUID, TIMESTAMPTZ, BOOLEAN, TEXT[], JSONB) and its locks for
//! concurrent writers, on a sqlx pool.
//!
//! Concurrency between a projector applying a batch and a rebuild promoting a new generation
//! is settled on the `generations` rows: `apply` moves its row's checkpoint first (taking its
//! lock) and `promote` locks both rows `FOR UPDATE`, so a batch either commits before the
//! switch (and the new generation must catch up with it) or sees its generation retired.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use projections::ReadModelError;
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Column, Postgres, Row, TypeInfo};
use uuid::Uuid;

use super::sql::{self, Db, Dialect, Map, Stmt, Tx, Ty, Value};
use super::{Store, backend, retry_transient};

/// The PostgreSQL read models.
pub type PostgresReadModels = Store<PgDb>;

impl PostgresReadModels {
    /// Connects and creates the bookkeeping tables if missing.
    pub async fn connect(url: &str) -> Result<Self, ReadModelError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| {
                ReadModelError::Unavailable(format!("cannot connect to PostgreSQL: {e}"))
            })?;
        let mut conn = pool.acquire().await.map_err(backend)?;
        crate::migrations::migrate_postgres(&mut conn)
            .await
            .map_err(|e| ReadModelError::Backend(e.to_string()))?;
        drop(conn);
        Ok(Store::on(PgDb { pool }))
    }
}

/// The PostgreSQL backend: a pool.
pub struct PgDb {
    pool: PgPool,
}

/// `stmt` as a sqlx query with its arguments bound natively.
fn query(stmt: &Stmt) -> Result<Query<'_, Postgres, PgArguments>, ReadModelError> {
    let mut q = sqlx::query(&stmt.sql);
    for value in &stmt.args {
        q = bind(q, value)?;
    }
    Ok(q)
}

fn bind<'q>(
    q: Query<'q, Postgres, PgArguments>,
    value: &'q Value,
) -> Result<Query<'q, Postgres, PgArguments>, ReadModelError> {
    Ok(match value {
        Value::Int(n) => q.bind(*n),
        Value::Bool(b) => q.bind(*b),
        Value::Text(s) => q.bind(s.as_deref()),
        Value::Uuid(u) => q.bind(*u),
        Value::Time(t) => q.bind(*t),
        Value::Json(j) => q.bind(j.as_ref().map(sqlx::types::Json)),
        Value::Tags(t) => q.bind(t.as_slice()),
        Value::Array(ty, values) => bind_array(q, *ty, values)?,
    })
}

/// A batch column as one typed array.
fn bind_array<'q>(
    q: Query<'q, Postgres, PgArguments>,
    ty: Ty,
    values: &'q [Value],
) -> Result<Query<'q, Postgres, PgArguments>, ReadModelError> {
    fn each<'v, T>(values: &'v [Value], f: impl Fn(&'v Value) -> Option<T>) -> Vec<T> {
        values.iter().filter_map(f).collect()
    }
    let wrong = || ReadModelError::Backend(format!("a batch column of {ty:?} holds other values"));
    // The column's values as `$pattern => $value`, bound as one array; `None` if any value
    // is of another kind.
    macro_rules! array {
        ($pattern:pat => $value:expr) => {{
            let column = each(values, |v| match v {
                $pattern => Some($value),
                _ => None,
            });
            (column.len() == values.len()).then(|| q.bind(column))
        }};
    }
    let bound = match ty {
        Ty::Int => array!(Value::Int(n) => *n),
        Ty::Bool => array!(Value::Bool(b) => *b),
        Ty::Text => array!(Value::Text(s) => s.as_deref()),
        Ty::Uuid => array!(Value::Uuid(u) => *u),
        Ty::Time => array!(Value::Time(t) => *t),
        Ty::Json => array!(Value::Json(j) => j.as_ref().map(sqlx::types::Json)),
        // As JSON arrays: PostgreSQL's arrays of arrays must be rectangular.
        Ty::Tags => array!(Value::Tags(t) => sqlx::types::Json(t)),
    };
    bound.ok_or_else(wrong)
}

async fn fetch<'e, T, E>(executor: E, stmt: &Stmt, map: Map<T>) -> Result<Vec<T>, ReadModelError>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let rows = query(stmt)?.fetch_all(executor).await.map_err(backend)?;
    rows.iter().map(|row| map(&PostgresRow(row))).collect()
}

#[async_trait]
impl Db for PgDb {
    const DIALECT: Dialect = Dialect::Postgres;
    /// Each batch costs a transaction's round trips and commit on the server: under the
    /// `comments` load, 25 ms between a projector's batches took PostgreSQL's CPU per run from
    /// 4.7-6.9 s to 4.3-5.1 s and the rate up by about a tenth, and left the time until a
    /// comment is visible where it was (BENCHMARKS.md).
    const PACE: Duration = Duration::from_millis(25);
    /// Projectors write on connections of their own, to tables of their own.
    const ONE_WRITER: bool = false;
    type Tx = PgTx;

    async fn rows<T: Send + 'static>(
        &self,
        stmt: Stmt,
        map: Map<T>,
    ) -> Result<Vec<T>, ReadModelError> {
        retry_transient(|| fetch(&self.pool, &stmt, map)).await
    }

    async fn rows_if<T: Send + 'static>(
        &self,
        probe: Stmt,
        query: Stmt,
        map: Map<T>,
    ) -> Result<Option<Vec<T>>, ReadModelError> {
        if self.rows(probe, |_| Ok(())).await?.is_empty() {
            return Ok(None);
        }
        self.rows(query, map).await.map(Some)
    }

    async fn begin(&self, relaxed: bool) -> Result<PgTx, ReadModelError> {
        // Relaxed: the commit does not wait for its record to be flushed. (One round trip:
        // both statements go in one simple query.)
        let tx = if relaxed {
            self.pool
                .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                .await
        } else {
            self.pool.begin().await
        };
        Ok(PgTx {
            tx: tx.map_err(backend)?,
        })
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// A transaction on one of the pool's connections.
pub struct PgTx {
    tx: sqlx::Transaction<'static, Postgres>,
}

#[async_trait]
impl Tx for PgTx {
    async fn execute(&mut self, stmt: Stmt) -> Result<u64, ReadModelError> {
        let done = query(&stmt)?
            .execute(&mut *self.tx)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn execute_all(&mut self, stmts: Vec<Stmt>) -> Result<(), ReadModelError> {
        for stmt in stmts {
            self.execute(stmt).await?;
        }
        Ok(())
    }

    async fn rows<T: Send + 'static>(
        &mut self,
        stmt: Stmt,
        map: Map<T>,
    ) -> Result<Vec<T>, ReadModelError> {
        fetch(&mut *self.tx, &stmt, map).await
    }

    async fn commit(self) -> Result<(), ReadModelError> {
        self.tx.commit().await.map_err(backend)
    }
}

/// A PostgreSQL row, read into the shapes [`sql::Row`] promises.
struct PostgresRow<'a>(&'a PgRow);

impl PostgresRow<'_> {
    fn get<'r, T>(&'r self, i: usize) -> Result<T, ReadModelError>
    where
        T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
    {
        self.0
            .try_get(i)
            .map_err(|e| ReadModelError::Backend(format!("column {i}: {e}")))
    }
}

impl sql::Row for PostgresRow<'_> {
    fn opt_int(&self, i: usize) -> Result<Option<i64>, ReadModelError> {
        let ty = self.0.try_column(i).map(|c| c.type_info().name());
        match ty {
            Ok("INT4") => Ok(self.get::<Option<i32>>(i)?.map(i64::from)),
            Ok("INT2") => Ok(self.get::<Option<i16>>(i)?.map(i64::from)),
            _ => self.get(i),
        }
    }

    fn opt_text(&self, i: usize) -> Result<Option<String>, ReadModelError> {
        self.get(i)
    }

    fn opt_uuid(&self, i: usize) -> Result<Option<Uuid>, ReadModelError> {
        self.get(i)
    }

    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, ReadModelError> {
        self.get(i)
    }

    fn opt_json(&self, i: usize) -> Result<Option<serde_json::Value>, ReadModelError> {
        self.get(i)
    }

    fn flag(&self, i: usize) -> Result<bool, ReadModelError> {
        self.get(i)
    }

    fn tags(&self, i: usize) -> Result<Vec<String>, ReadModelError> {
        self.get(i)
    }
}
