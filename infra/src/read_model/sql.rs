//! The seam between the read models' SQL, written once, and the two databases.
//!
//! Tables, statements, queries and row mappings are written once (the table files beside
//! this one) in the SQL both backends speak, with `$1`-style placeholders. What truly differs
//! lives here, small:
//! - **types**: a column's [`Ty`] is `TEXT` or `UUID`, `TEXT` or `TIMESTAMPTZ`, and so on;
//!   values are bound as [`Value`]s and read back through [`Row`], each backend mapping them
//!   to its own storage (SQLite keeps uuids and times as text, booleans as integers);
//! - **batches**: many rows of one statement come from `json_each` of one JSON array on
//!   SQLite, from `UNNEST` of typed column arrays on PostgreSQL ([`Dialect::rows`]);
//! - **locks**: PostgreSQL takes row and advisory locks, SQLite's one writer needs none;
//! - **dumps**: the JSON-object function.
//!
//! [`Db`] and [`Tx`] are what a backend provides to run them: queries mapped row by row,
//! and write transactions.

use std::borrow::Cow;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use projections::ReadModelError;
use uuid::Uuid;

/// The most rows one SQLite `INSERT` carries: a power of two.
const SQLITE_ROWS: usize = 128;
/// The most bound values one SQLite statement takes (`SQLITE_MAX_VARIABLE_NUMBER`'s default
/// since 3.32).
const SQLITE_VARIABLES: usize = 32_766;

/// The two databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    /// A 64-bit integer.
    Int,
    Bool,
    Text,
    Uuid,
    /// A point in time (RFC 3339 text with milliseconds on SQLite, so text order is time order).
    Time,
    /// A JSON document (text on SQLite, JSONB on PostgreSQL).
    Json,
    /// A list of strings (JSON text on SQLite, `TEXT[]` on PostgreSQL).
    Tags,
}

impl Ty {
    fn sql(self, d: Dialect) -> &'static str {
        match (d, self) {
            (Dialect::Sqlite, Ty::Int | Ty::Bool) => "INTEGER",
            (Dialect::Sqlite, _) => "TEXT",
            (Dialect::Postgres, Ty::Int) => "BIGINT",
            (Dialect::Postgres, Ty::Bool) => "BOOLEAN",
            (Dialect::Postgres, Ty::Text) => "TEXT",
            (Dialect::Postgres, Ty::Uuid) => "UUID",
            (Dialect::Postgres, Ty::Time) => "TIMESTAMPTZ",
            (Dialect::Postgres, Ty::Json) => "JSONB",
            (Dialect::Postgres, Ty::Tags) => "TEXT[]",
        }
    }
}

/// One column of a table: its name, type, and what follows the type in its definition
/// (`NOT NULL`, `PRIMARY KEY`, a default).
pub(crate) struct Col {
    pub name: &'static str,
    pub ty: Ty,
    pub rest: &'static str,
}

pub(crate) const fn col(name: &'static str, ty: Ty, rest: &'static str) -> Col {
    Col { name, ty, rest }
}

/// A value bound to a statement; nulls keep their type (PostgreSQL wants it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(Option<i64>),
    Bool(bool),
    Text(Option<String>),
    Uuid(Option<Uuid>),
    Time(Option<DateTime<Utc>>),
    Json(Option<serde_json::Value>),
    Tags(Vec<String>),
    /// A column of a batch, bound as one typed array (PostgreSQL only, see [`Dialect::rows`]).
    Array(Ty, Vec<Value>),
}

impl Value {
    pub(crate) fn text(s: impl Into<String>) -> Self {
        Value::Text(Some(s.into()))
    }

    pub(crate) fn int(n: impl Into<i64>) -> Self {
        Value::Int(Some(n.into()))
    }

    pub(crate) fn uuid(u: impl Into<Uuid>) -> Self {
        Value::Uuid(Some(u.into()))
    }

    pub(crate) fn time(t: &DateTime<Utc>) -> Self {
        Value::Time(Some(*t))
    }

    /// The value as an element of a JSON batch row (see [`Dialect::rows`]), in the form
    /// SQLite stores it.
    fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Int(n) => n.map_or(J::Null, J::from),
            Value::Bool(b) => J::Bool(*b),
            Value::Text(s) => s.clone().map_or(J::Null, J::String),
            Value::Uuid(u) => u.map_or(J::Null, |u| J::String(u.to_string())),
            Value::Time(t) => t.as_ref().map_or(J::Null, |t| J::String(ts(t))),
            Value::Json(v) => v.as_ref().map_or(J::Null, |v| J::String(v.to_string())),
            Value::Tags(t) => J::String(serde_json::to_string(t).unwrap_or_default()),
            Value::Array(..) => J::Null,
        }
    }
}

/// A timestamp as SQLite stores it: RFC 3339, UTC, milliseconds.
pub(crate) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>, ReadModelError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ReadModelError::Backend(format!("bad timestamp {s:?}: {e}")))
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid, ReadModelError> {
    Uuid::parse_str(s).map_err(|e| ReadModelError::Backend(format!("bad uuid {s:?}: {e}")))
}

pub(crate) fn parse_json(s: &str) -> Result<serde_json::Value, ReadModelError> {
    serde_json::from_str(s).map_err(|e| ReadModelError::Backend(format!("bad JSON {s:?}: {e}")))
}

/// The element type of a batch column's array on PostgreSQL (tags go as JSON: arrays of
/// arrays must be rectangular there).
pub(crate) fn array_of(ty: Ty) -> &'static str {
    match ty {
        Ty::Tags => "JSONB",
        other => other.sql(Dialect::Postgres),
    }
}

/// A statement and its arguments, `$1` being the first.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    pub sql: Cow<'static, str>,
    pub args: Vec<Value>,
}

impl Stmt {
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>, args: Vec<Value>) -> Self {
        Self {
            sql: sql.into(),
            args,
        }
    }
}

/// A new row, inserted `ON CONFLICT DO NOTHING`: consecutive inserts into one table go in
/// as one statement ([`Dialect::insert`]), so a rebuild or a busy batch costs a statement
/// per run of rows, not per row.
#[derive(Debug, Clone)]
pub(crate) struct Insert {
    /// The generation's table, `<name>_g<n>`.
    pub table: String,
    pub columns: &'static [(&'static str, Ty)],
    pub row: Vec<Value>,
}

/// What a change makes a table do: a statement, or a row to insert.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    Stmt(Stmt),
    Insert(Insert),
}

impl From<Stmt> for Write {
    fn from(stmt: Stmt) -> Self {
        Write::Stmt(stmt)
    }
}

impl From<Insert> for Write {
    fn from(insert: Insert) -> Self {
        Write::Insert(insert)
    }
}

/// A row being read: each column by its index, typed, into an error (never a panic) when the
/// database holds something else.
pub(crate) trait Row {
    fn opt_int(&self, i: usize) -> Result<Option<i64>, ReadModelError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, ReadModelError>;
    fn opt_uuid(&self, i: usize) -> Result<Option<Uuid>, ReadModelError>;
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, ReadModelError>;
    fn opt_json(&self, i: usize) -> Result<Option<serde_json::Value>, ReadModelError>;
    fn flag(&self, i: usize) -> Result<bool, ReadModelError>;
    fn tags(&self, i: usize) -> Result<Vec<String>, ReadModelError>;

    fn int(&self, i: usize) -> Result<i64, ReadModelError> {
        self.opt_int(i)?.ok_or_else(|| null(i))
    }
    fn text(&self, i: usize) -> Result<String, ReadModelError> {
        self.opt_text(i)?.ok_or_else(|| null(i))
    }
    fn uuid(&self, i: usize) -> Result<Uuid, ReadModelError> {
        self.opt_uuid(i)?.ok_or_else(|| null(i))
    }
    fn time(&self, i: usize) -> Result<DateTime<Utc>, ReadModelError> {
        self.opt_time(i)?.ok_or_else(|| null(i))
    }
    fn json(&self, i: usize) -> Result<serde_json::Value, ReadModelError> {
        self.opt_json(i)?.ok_or_else(|| null(i))
    }
    /// A non-negative count.
    fn count(&self, i: usize) -> Result<u32, ReadModelError> {
        u32::try_from(self.int(i)?).map_err(|e| ReadModelError::Backend(format!("column {i}: {e}")))
    }
}

fn null(i: usize) -> ReadModelError {
    ReadModelError::Backend(format!("column {i} is NULL"))
}

/// Maps one row to what a query returns.
pub(crate) type Map<T> = fn(&dyn Row) -> Result<T, ReadModelError>;

/// The rows of a batch statement: the columns it reads, and the values of each row.
pub(crate) struct Batch {
    pub columns: &'static [(&'static str, Ty)],
    pub rows: Vec<Vec<Value>>,
}

impl Dialect {
    /// The definition of a table's columns, then `constraints` (may be empty).
    pub(crate) fn columns(self, columns: &[Col], constraints: &str) -> String {
        let mut parts: Vec<String> = columns
            .iter()
            .map(|c| {
                format!("{} {} {}", c.name, c.ty.sql(self), c.rest)
                    .trim_end()
                    .to_owned()
            })
            .collect();
        if !constraints.is_empty() {
            parts.push(constraints.to_owned());
        }
        parts.join(", ")
    }

    /// A batch as a row source for `FROM`, aliased `u` with the batch's column names, and the
    /// arguments it binds from `$first` on: one JSON array on SQLite, a typed array per
    /// column on PostgreSQL.
    pub(crate) fn rows(self, batch: Batch, first: usize) -> (String, Vec<Value>) {
        let names: Vec<&str> = batch.columns.iter().map(|(n, _)| *n).collect();
        match self {
            Dialect::Sqlite => {
                let reads: Vec<String> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("value->>{i} AS {n}"))
                    .collect();
                let rows: Vec<serde_json::Value> = batch
                    .rows
                    .iter()
                    .map(|row| serde_json::Value::Array(row.iter().map(Value::to_json).collect()))
                    .collect();
                (
                    format!(
                        "(SELECT {} FROM json_each(${first})) AS u",
                        reads.join(", ")
                    ),
                    vec![Value::text(serde_json::Value::Array(rows).to_string())],
                )
            }
            Dialect::Postgres => {
                let mut columns: Vec<Vec<Value>> = batch
                    .columns
                    .iter()
                    .map(|_| Vec::with_capacity(batch.rows.len()))
                    .collect();
                for row in batch.rows {
                    for (column, value) in columns.iter_mut().zip(row) {
                        column.push(value);
                    }
                }
                let arrays: Vec<String> = batch
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, ty))| format!("${}::{}[]", first + i, array_of(*ty)))
                    .collect();
                (
                    format!("UNNEST({}) AS u({})", arrays.join(", "), names.join(", ")),
                    batch
                        .columns
                        .iter()
                        .zip(columns)
                        .map(|((_, ty), values)| Value::Array(*ty, values))
                        .collect(),
                )
            }
        }
    }

    /// Consecutive new rows of one table as statements, each `ON CONFLICT DO NOTHING`.
    /// SQLite binds them as multi-row `VALUES`, in chunks of a power of two rows (so a table
    /// has a few statement texts, each prepared once): parsing a JSON array there cost more
    /// than the rows themselves. PostgreSQL takes them as one `UNNEST` of typed arrays.
    pub(crate) fn insert(self, rows: Vec<Insert>, out: &mut Vec<Stmt>) {
        let (table, columns) = (rows[0].table.clone(), rows[0].columns);
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let names = names.join(", ");
        if self == Dialect::Sqlite || rows.len() == 1 {
            let most = (SQLITE_VARIABLES / columns.len().max(1)).clamp(1, SQLITE_ROWS);
            let most = 1 << most.ilog2();
            let mut left = rows.len();
            let mut rows = rows.into_iter().map(|r| r.row);
            while left > 0 {
                // The largest power of two that fits: chunks of 1, 2, 4, ... `most` rows.
                let chunk = (1usize << left.ilog2()).min(most);
                left -= chunk;
                let mut args = Vec::with_capacity(chunk * columns.len());
                let mut tuples = Vec::with_capacity(chunk);
                for row in rows.by_ref().take(chunk) {
                    let first = args.len();
                    let places: Vec<String> =
                        (1..=row.len()).map(|i| format!("${}", first + i)).collect();
                    tuples.push(format!("({})", places.join(", ")));
                    args.extend(row);
                }
                out.push(Stmt::new(
                    format!(
                        "INSERT INTO {table} ({names}) VALUES {} ON CONFLICT DO NOTHING",
                        tuples.join(", ")
                    ),
                    args,
                ));
            }
            return;
        }
        let reads: Vec<String> = columns
            .iter()
            .map(|(name, ty)| match (self, ty) {
                (Dialect::Postgres, Ty::Tags) => {
                    format!("ARRAY(SELECT jsonb_array_elements_text(u.{name}))")
                }
                _ => format!("u.{name}"),
            })
            .collect();
        let (source, args) = self.rows(
            Batch {
                columns,
                rows: rows.into_iter().map(|r| r.row).collect(),
            },
            1,
        );
        out.push(Stmt::new(
            format!(
                "INSERT INTO {table} ({names}) SELECT {} FROM {source} \
                 ON CONFLICT DO NOTHING",
                reads.join(", ")
            ),
            args,
        ));
    }

    /// What follows a `SELECT` that must lock the rows it reads until the transaction ends.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// The statement serialising the bookkeeping of one projection across processes, if the
    /// backend needs one (SQLite's writes are serialised by its one writer).
    /// The query listing a table's column names.
    pub(crate) fn column_names(self, table: &str) -> Stmt {
        match self {
            Dialect::Sqlite => Stmt::new(
                "SELECT name FROM pragma_table_info($1)",
                vec![Value::text(table)],
            ),
            Dialect::Postgres => Stmt::new(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
                vec![Value::text(table)],
            ),
        }
    }

    pub(crate) fn lock_projection(self, projection: &str) -> Option<Stmt> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(Stmt::new(
                "SELECT pg_advisory_xact_lock(hashtext('treehole.read_models.' || $1))",
                vec![Value::text(projection)],
            )),
        }
    }

    /// The query listing a table's rows as JSON text in dump order.
    pub(crate) fn dump(self, table: &str, columns: &[Col], order: &str) -> String {
        let pairs: Vec<String> = columns
            .iter()
            .map(|c| format!("'{0}', {0}", c.name))
            .collect();
        let (object, as_text) = match self {
            Dialect::Sqlite => ("json_object", ""),
            Dialect::Postgres => ("json_build_object", "::text"),
        };
        format!(
            "SELECT {object}({}){as_text} FROM {table} ORDER BY {order}",
            pairs.join(", ")
        )
    }
}

/// A read-model database: queries, and write transactions.
#[async_trait]
pub(crate) trait Db: Send + Sync + 'static {
    const DIALECT: Dialect;
    /// The least time between two batches of a live projector (see `ReadModelStore::pace`).
    const PACE: std::time::Duration;
    /// Whether every projection's transactions take turns on one writer (see
    /// `ReadModelStore::held`).
    const ONE_WRITER: bool;
    type Tx: Tx;

    /// Every row of a query, each mapped by `map`. Transient failures are retried.
    async fn rows<T: Send + 'static>(
        &self,
        stmt: Stmt,
        map: Map<T>,
    ) -> Result<Vec<T>, ReadModelError>;

    /// The rows of `query` if `probe` finds a row, `None` if it finds none: on SQLite one
    /// hand-off to a reader, on PostgreSQL two queries.
    async fn rows_if<T: Send + 'static>(
        &self,
        probe: Stmt,
        query: Stmt,
        map: Map<T>,
    ) -> Result<Option<Vec<T>>, ReadModelError>;

    /// A write transaction. `relaxed`: the commit need not reach the disk before it returns
    /// (a projector's batch, which the log can give again).
    async fn begin(&self, relaxed: bool) -> Result<Self::Tx, ReadModelError>;

    /// A relaxed write transaction (see [`Self::begin`]) for a batch of the projector of
    /// `projection`, which a backend with one writer may let go before others.
    async fn begin_batch(&self, projection: &str) -> Result<Self::Tx, ReadModelError> {
        let _ = projection;
        self.begin(true).await
    }

    /// Releases the connections.
    async fn close(&self);
}

/// A write transaction; dropped without [`Tx::commit`], it rolls back.
#[async_trait]
pub(crate) trait Tx: Send + 'static {
    /// Runs a statement and returns the number of rows it changed.
    async fn execute(&mut self, stmt: Stmt) -> Result<u64, ReadModelError>;

    /// Runs statements whose counts nobody needs; a backend may hold them until the next
    /// call that answers (SQLite sends them to its writer with it).
    async fn execute_all(&mut self, stmts: Vec<Stmt>) -> Result<(), ReadModelError>;

    async fn rows<T: Send + 'static>(
        &mut self,
        stmt: Stmt,
        map: Map<T>,
    ) -> Result<Vec<T>, ReadModelError>;

    async fn commit(self) -> Result<(), ReadModelError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[(&str, Ty)] = &[("id", Ty::Uuid), ("n", Ty::Int), ("at", Ty::Time)];

    fn batch() -> Batch {
        let at: DateTime<Utc> = "2026-12-05T04:00:00.123Z".parse().expect("a time");
        Batch {
            columns: COLUMNS,
            rows: vec![
                vec![Value::uuid(Uuid::nil()), Value::int(3), Value::time(&at)],
                vec![Value::Uuid(None), Value::Int(None), Value::Time(None)],
            ],
        }
    }

    #[test]
    fn a_batch_is_one_json_array_on_sqlite() {
        let (from, args) = Dialect::Sqlite.rows(batch(), 2);
        assert_eq!(
            from,
            "(SELECT value->>0 AS id, value->>1 AS n, value->>2 AS at FROM json_each($2)) AS u"
        );
        assert_eq!(
            args,
            vec![Value::text(
                r#"[["00000000-0000-0000-0000-000000000000",3,"2026-12-05T04:00:00.123Z"],[null,null,null]]"#
            )]
        );
    }

    #[test]
    fn a_batch_is_a_typed_array_per_column_on_postgres() {
        let (from, args) = Dialect::Postgres.rows(batch(), 1);
        assert_eq!(
            from,
            "UNNEST($1::UUID[], $2::BIGINT[], $3::TIMESTAMPTZ[]) AS u(id, n, at)"
        );
        assert_eq!(args.len(), 3);
        assert!(
            matches!(&args[1], Value::Array(Ty::Int, v) if v == &[Value::int(3), Value::Int(None)])
        );
    }

    fn inserts(d: Dialect, rows: usize) -> Vec<Stmt> {
        let row = || Insert {
            table: "t_g1".to_owned(),
            columns: COLUMNS,
            row: vec![Value::uuid(Uuid::nil()), Value::int(3), Value::Time(None)],
        };
        let mut out = Vec::new();
        d.insert((0..rows).map(|_| row()).collect(), &mut out);
        out
    }

    #[test]
    fn new_rows_are_bound_values_in_chunks_of_a_power_of_two_on_sqlite() {
        let sizes = |rows| -> Vec<usize> {
            inserts(Dialect::Sqlite, rows)
                .iter()
                .map(|s| s.args.len() / COLUMNS.len())
                .collect()
        };
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(7), [4, 2, 1]);
        assert_eq!(sizes(300), [128, 128, 32, 8, 4]);
        let two = inserts(Dialect::Sqlite, 2);
        assert_eq!(
            two[0].sql,
            "INSERT INTO t_g1 (id, n, at) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT DO NOTHING"
        );
        // Every row's values, in order.
        assert_eq!(
            inserts(Dialect::Sqlite, 300)
                .iter()
                .map(|s| s.args.len())
                .sum::<usize>(),
            300 * COLUMNS.len()
        );
    }

    #[test]
    fn new_rows_are_one_statement_of_typed_arrays_on_postgres() {
        let stmts = inserts(Dialect::Postgres, 300);
        assert_eq!(stmts.len(), 1);
        assert!(
            stmts[0].sql.contains("UNNEST($1::UUID[]"),
            "{}",
            stmts[0].sql
        );
    }

    #[test]
    fn columns_take_each_backends_types() {
        let columns = [col("id", Ty::Uuid, "PRIMARY KEY"), col("on", Ty::Bool, "")];
        assert_eq!(
            Dialect::Sqlite.columns(&columns, "UNIQUE (id)"),
            "id TEXT PRIMARY KEY, on INTEGER, UNIQUE (id)"
        );
        assert_eq!(
            Dialect::Postgres.columns(&columns, ""),
            "id UUID PRIMARY KEY, on BOOLEAN"
        );
    }
}
