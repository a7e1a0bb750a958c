//! The read models' tables, one file each: its columns, the statements each change makes on
//! it, its batch statements, its queries and the mapping of its rows to views. Adding a column
//! to a view touches the table's file and the projection, nothing else.

pub(super) mod comments;
pub(super) mod favourites;
pub(super) mod feed;
pub(super) mod feed_marks;
pub(super) mod follows;
pub(super) mod inbox_marks;
pub(super) mod models;
pub(super) mod moderation;
pub(super) mod notifications;
pub(super) mod sanctions;
pub(super) mod sessions;
pub(super) mod stats_active;
pub(super) mod stats_counters;
pub(super) mod stats_tasks;
pub(super) mod task_history;
pub(super) mod tasks;
pub(super) mod users;
pub(super) mod workers;

use projections::{Change, ReadModelError};

use super::Run;
use super::sql::{Col, Dialect, Stmt, Ty, Value, Write, array_of};

/// One table of a projection. Generation `g` lives in `<name>_g<g>`; queries read the view
/// `<name>`, which points at the live generation.
pub(crate) struct Table {
    pub projection: &'static str,
    pub name: &'static str,
    pub columns: &'static [Col],
    /// Table constraints after the columns (may be empty).
    pub constraints: &'static str,
    /// Statements run after creating the table; `{t}` is the table's name.
    pub indexes: &'static [&'static str],
    /// The order of a dump.
    pub order: &'static str,
    /// Adds the statements `change` makes on generation `g` of this table (none if it does
    /// not concern it).
    pub write: fn(g: u32, change: &Change, out: &mut Vec<Write>),
    /// One statement for a run of changes of one kind, if this table takes that kind.
    pub run: fn(d: Dialect, g: u32, kind: Run, changes: &[Change]) -> Option<Stmt>,
    /// PostgreSQL functions made with each generation of the table and dropped with it (SQLite
    /// has none): what a `run` statement may call. A generation keeps the functions it was
    /// made with, so a change to one (its body too) reaches a live generation only through a
    /// rebuild: raise the projection's version with it (a test in `read_model` pins what each
    /// version's generation is made of, tables and functions, and fails until you do).
    pub functions: &'static [Function],
}

/// A PL/pgSQL function of a generation: `{g}` in its name and body is the generation's number.
/// Each parameter is an array, one element per row of a call.
pub(crate) struct Function {
    pub name: &'static str,
    /// The parameters' names and the type of their elements, in order.
    pub params: &'static [(&'static str, Ty)],
    /// The function's body: its `DECLARE` section, if any, and its `BEGIN ... END` block.
    pub body: &'static str,
}

impl Function {
    fn name(&self, g: u32) -> String {
        self.name.replace("{g}", &g.to_string())
    }

    pub(crate) fn create(&self, g: u32) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(name, ty)| format!("{name} {}[]", array_of(*ty)))
            .collect();
        format!(
            "CREATE OR REPLACE FUNCTION {}({}) RETURNS void LANGUAGE plpgsql AS $body$ {} $body$",
            self.name(g),
            params.join(", "),
            self.body.replace("{g}", &g.to_string())
        )
    }

    pub(crate) fn drop(&self, g: u32) -> String {
        format!("DROP FUNCTION IF EXISTS {}", self.name(g))
    }

    /// A call of generation `g`'s function with `columns`, one per parameter, each bound as one
    /// typed array.
    pub(crate) fn call(&self, g: u32, columns: Vec<Vec<Value>>) -> Stmt {
        // The columns are zipped with the parameters: one missing would not fail here, the call
        // would only lack its last argument.
        debug_assert_eq!(columns.len(), self.params.len(), "{}", self.name);
        let casts: Vec<String> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("${}::{}[]", i + 1, array_of(*ty)))
            .collect();
        Stmt::new(
            format!("SELECT {}({})", self.name(g), casts.join(", ")),
            self.params
                .iter()
                .zip(columns)
                .map(|((_, ty), values)| Value::Array(*ty, values))
                .collect(),
        )
    }
}

/// For tables that take no runs.
pub(crate) fn no_run(_: Dialect, _: u32, _: Run, _: &[Change]) -> Option<Stmt> {
    None
}

pub(crate) const TABLES: &[&Table] = &[
    &users::TABLE,
    &sessions::TABLE,
    &feed::TABLE,
    &feed_marks::TABLE,
    &comments::TABLE,
    &models::TABLE,
    &workers::TABLE,
    &tasks::TABLE,
    &task_history::TABLE,
    &stats_counters::TABLE,
    &stats_active::TABLE,
    &stats_tasks::TABLE,
    &notifications::PRUNED,
    &notifications::AUTHORS,
    &notifications::COMMENTS,
    &notifications::TABLE,
    &follows::TABLE,
    &follows::SPANS,
    &inbox_marks::TABLE,
    &favourites::TABLE,
    &sanctions::TABLE,
    &moderation::LOG,
    &moderation::ITEMS,
    &moderation::REPORTS,
];

/// The tables of a projection, or [`ReadModelError::UnknownProjection`].
pub(crate) fn tables_of(projection: &str) -> Result<Vec<&'static Table>, ReadModelError> {
    let tables: Vec<_> = TABLES
        .iter()
        .copied()
        .filter(|t| t.projection == projection)
        .collect();
    if tables.is_empty() {
        Err(ReadModelError::UnknownProjection(projection.to_owned()))
    } else {
        Ok(tables)
    }
}

/// The bound of a page request: at least one row, at most a thousand.
pub(crate) fn limit(limit: usize) -> super::sql::Value {
    super::sql::Value::int(limit.clamp(1, 1000) as i64)
}
