//! `stats_counters`: per day, metric and key (a model, or ""), a running count.
//!
//! The statistics tables hold text and integers only (days as `YYYY-MM-DD`, ids as text,
//! times as epoch milliseconds), on both backends.

use projections::Change;
use projections::stats::StatsChange;

use super::Table;
use crate::read_model::Run;
use crate::read_model::queries::Scope;
use crate::read_model::sql::{Batch, Col, Dialect, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("day", Ty::Text, "NOT NULL"),
    col("metric", Ty::Text, "NOT NULL"),
    col("key", Ty::Text, "NOT NULL"),
    col("value", Ty::Int, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "stats",
    name: "stats_counters",
    columns: COLUMNS,
    constraints: "PRIMARY KEY (day, metric, key)",
    indexes: &[],
    order: "day, metric, key",
    write,
    run,
    functions: &[],
};

fn row(change: &Change) -> Option<Vec<Value>> {
    match change {
        Change::Stats(StatsChange::Count {
            day,
            metric,
            key,
            delta,
        }) => Some(vec![
            Value::text(day.to_string()),
            Value::text(metric.as_str()),
            Value::text(key),
            Value::int(*delta),
        ]),
        _ => None,
    }
}

/// Counters add up, so each event must be applied once: the runner commits the checkpoint in
/// the same transaction.
fn upsert(g: u32, source: &str) -> String {
    format!(
        "INSERT INTO stats_counters_g{g} (day, metric, key, value) {source} \
         ON CONFLICT (day, metric, key) DO UPDATE \
         SET value = stats_counters_g{g}.value + excluded.value"
    )
}

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    if let Some(values) = row(change) {
        out.push(Write::Stmt(Stmt::new(
            upsert(g, "VALUES ($1, $2, $3, $4)"),
            values,
        )));
    }
}

const RUN: &[(&str, Ty)] = &[
    ("day", Ty::Text),
    ("metric", Ty::Text),
    ("key", Ty::Text),
    ("value", Ty::Int),
];

fn run(d: Dialect, g: u32, kind: Run, changes: &[Change]) -> Option<Stmt> {
    if kind != Run::StatsCount {
        return None;
    }
    let rows = changes.iter().filter_map(row).collect();
    let (source, args) = d.rows(Batch { columns: RUN, rows }, 1);
    // `WHERE true` tells SQLite's parser that `ON CONFLICT` is the upsert, not a join.
    Some(Stmt::new(
        upsert(
            g,
            &format!("SELECT day, metric, key, value FROM {source} WHERE true"),
        ),
        args,
    ))
}

/// Per bucket of `scope`: counter totals (bucket, metric, key, total).
pub(crate) fn totals(scope: Scope) -> Stmt {
    scope.stmt(format!(
        "SELECT {}, metric, key, CAST(SUM(value) AS BIGINT) FROM stats_counters \
         WHERE {} GROUP BY {}metric, key",
        scope.bucket("day"),
        scope.covers("day"),
        scope.group("day")
    ))
}
