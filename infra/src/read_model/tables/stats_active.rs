//! `stats_active`: who was active on which day. Private: only ever counted.

use projections::Change;
use projections::stats::StatsChange;

use super::{Table, no_run};
use crate::read_model::queries::Scope;
use crate::read_model::sql::{Col, Insert, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("day", Ty::Text, "NOT NULL"),
    col("user_id", Ty::Text, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "stats",
    name: "stats_active",
    columns: COLUMNS,
    constraints: "PRIMARY KEY (day, user_id)",
    indexes: &[],
    order: "day, user_id",
    write,
    run: no_run,
    functions: &[],
};

fn row(change: &Change) -> Option<Vec<Value>> {
    match change {
        Change::Stats(StatsChange::Active { day, user_id }) => Some(vec![
            Value::text(day.to_string()),
            Value::text(user_id.to_string()),
        ]),
        _ => None,
    }
}

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    if let Some(values) = row(change) {
        out.push(Write::Insert(Insert {
            table: format!("stats_active_g{g}"),
            columns: INSERT,
            row: values,
        }));
    }
}

const INSERT: &[(&str, Ty)] = &[("day", Ty::Text), ("user_id", Ty::Text)];

/// Per bucket of `scope`: distinct active users (bucket, users).
pub(crate) fn users(scope: Scope) -> Stmt {
    let group = match scope {
        Scope::AllTime => String::new(),
        Scope::Days(..) => " GROUP BY day".into(),
    };
    scope.stmt(format!(
        "SELECT {}, COUNT(DISTINCT user_id) FROM stats_active WHERE {}{group}",
        scope.bucket("day"),
        scope.covers("day")
    ))
}
