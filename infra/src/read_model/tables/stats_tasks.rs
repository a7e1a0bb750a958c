//! `stats_tasks`: one row per task, its model and the times its wait and run are measured
//! between (epoch milliseconds, so durations are exact integer differences).

use projections::Change;
use projections::stats::StatsChange;

use super::{Table, no_run};
use crate::read_model::queries::Scope;
use crate::read_model::sql::{Col, Insert, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("task_id", Ty::Text, "PRIMARY KEY"),
    col("model", Ty::Text, "NOT NULL"),
    col("published_ms", Ty::Int, "NOT NULL"),
    col("first_claimed_ms", Ty::Int, ""),
    col("claimed_ms", Ty::Int, ""),
    col("finished_ms", Ty::Int, ""),
    col("finished_day", Ty::Text, ""),
    col("state", Ty::Text, ""),
];

pub(crate) const TABLE: Table = Table {
    projection: "stats",
    name: "stats_tasks",
    columns: COLUMNS,
    constraints: "",
    indexes: &["CREATE INDEX {t}_finished ON {t} (finished_day)"],
    order: "task_id",
    write,
    run: no_run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    let Change::Stats(change) = change else {
        return;
    };
    let (sql, args) = match change {
        StatsChange::TaskPublished { task_id, model, at } => {
            out.push(Write::Insert(Insert {
                table: format!("stats_tasks_g{g}"),
                columns: &[
                    ("task_id", Ty::Text),
                    ("model", Ty::Text),
                    ("published_ms", Ty::Int),
                ],
                row: vec![
                    Value::text(task_id.to_string()),
                    Value::text(model),
                    Value::int(at.timestamp_millis()),
                ],
            }));
            return;
        }
        StatsChange::TaskClaimed { task_id, at } => (
            format!(
                "UPDATE stats_tasks_g{g} \
                 SET first_claimed_ms = COALESCE(first_claimed_ms, $2), claimed_ms = $2 \
                 WHERE task_id = $1"
            ),
            vec![
                Value::text(task_id.to_string()),
                Value::int(at.timestamp_millis()),
            ],
        ),
        StatsChange::TaskFinished { task_id, state, at } => (
            format!(
                "UPDATE stats_tasks_g{g} SET finished_ms = $2, finished_day = $3, state = $4 \
                 WHERE task_id = $1"
            ),
            vec![
                Value::text(task_id.to_string()),
                Value::int(at.timestamp_millis()),
                Value::text(at.date_naive().to_string()),
                Value::text(state.as_str()),
            ],
        ),
        _ => return,
    };
    out.push(Write::Stmt(Stmt::new(sql, args)));
}

/// Per bucket, model and final state: tasks that ended there (bucket, model, state, tasks).
pub(crate) fn finished(scope: Scope) -> Stmt {
    scope.stmt(format!(
        "SELECT {}, model, state, COUNT(*) FROM stats_tasks WHERE {} \
         GROUP BY {}model, state",
        scope.bucket("finished_day"),
        scope.covers("finished_day"),
        scope.group("finished_day")
    ))
}

/// Per bucket, model (NULL: all models) and kind (`wait` or `run`): samples, p50 and p95 of
/// the durations of the tasks that ended there. Percentiles are nearest-rank (the smallest
/// duration with at least p% of the samples at or below it), ranked by the database with the
/// window functions both backends have, so a query never loads every task: the nearest rank
/// of p in n samples is ceil(p * n / 100), computed in integers.
pub(crate) fn durations(scope: Scope) -> Stmt {
    let (bucket, covers) = (scope.bucket("finished_day"), scope.covers("finished_day"));
    scope.stmt(format!(
        "WITH durations AS ( \
             SELECT {bucket} AS day, model, 'wait' AS kind, first_claimed_ms - published_ms AS ms \
               FROM stats_tasks WHERE {covers} AND first_claimed_ms IS NOT NULL \
             UNION ALL \
             SELECT {bucket}, model, 'run', finished_ms - claimed_ms \
               FROM stats_tasks WHERE {covers} AND claimed_ms IS NOT NULL \
                 AND state <> 'cancelled' \
         ), samples AS ( \
             SELECT day, model, kind, ms FROM durations \
             UNION ALL \
             SELECT day, NULL, kind, ms FROM durations \
         ), ranked AS ( \
             SELECT day, model, kind, ms, \
                    ROW_NUMBER() OVER (PARTITION BY day, model, kind ORDER BY ms) AS nth, \
                    COUNT(*) OVER (PARTITION BY day, model, kind) AS n \
               FROM samples \
         ) \
         SELECT day, model, kind, MAX(n), \
                MAX(CASE WHEN nth = (n * 50 + 99) / 100 THEN ms END), \
                MAX(CASE WHEN nth = (n * 95 + 99) / 100 THEN ms END) \
           FROM ranked GROUP BY day, model, kind"
    ))
}
