//! `stats_active`: who was active on which day. Private: only ever counted.

use projections::Change;
use projections::stats::StatsChange;

use super::Table;
use crate::read_model::Run;
use crate::read_model::queries::Scope;
use crate::read_model::sql::{Batch, Col, Dialect, Stmt, Ty, Value, col};

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
    run,
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

fn write(g: u32, change: &Change, out: &mut Vec<Stmt>) {
    if let Some(values) = row(change) {
        out.push(Stmt::new(
            format!(
                "INSERT INTO stats_active_g{g} (day, user_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING"
            ),
            values,
        ));
    }
}

const RUN: &[(&str, Ty)] = &[("day", Ty::Text), ("user_id", Ty::Text)];

fn run(d: Dialect, g: u32, kind: Run, changes: &[Change]) -> Option<Stmt> {
    if kind != Run::StatsActive {
        return None;
    }
    let rows = changes.iter().filter_map(row).collect();
    let (source, args) = d.rows(Batch { columns: RUN, rows }, 1);
    Some(Stmt::new(
        format!(
            "INSERT INTO stats_active_g{g} (day, user_id) SELECT day, user_id FROM {source} \
             WHERE true ON CONFLICT DO NOTHING"
        ),
        args,
    ))
}

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
