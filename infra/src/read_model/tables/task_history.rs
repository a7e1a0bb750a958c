//! `task_history`: what happened to each task, in order.

use domain::{Position, TaskId};
use projections::tasks::{HistoryLine, TaskChange};
use projections::{Change, ReadModelError};

use super::{Table, no_run};
use crate::read_model::sql::{Col, Insert, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("position", Ty::Int, "PRIMARY KEY"),
    col("task_id", Ty::Uuid, "NOT NULL"),
    col("event", Ty::Text, "NOT NULL"),
    col("detail", Ty::Json, "NOT NULL"),
    col("at", Ty::Time, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "tasks",
    name: "task_history",
    columns: COLUMNS,
    constraints: "",
    indexes: &["CREATE INDEX {t}_task ON {t} (task_id, position)"],
    order: "position",
    write,
    run: no_run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    if let Change::Tasks(TaskChange::History {
        task_id,
        position,
        event,
        detail,
        at,
    }) = change
    {
        out.push(Write::Insert(Insert {
            table: format!("task_history_g{g}"),
            columns: &[
                ("position", Ty::Int),
                ("task_id", Ty::Uuid),
                ("event", Ty::Text),
                ("detail", Ty::Json),
                ("at", Ty::Time),
            ],
            row: vec![
                Value::int(*position as i64),
                Value::uuid(*task_id),
                Value::text(event),
                Value::Json(Some(detail.clone())),
                Value::time(at),
            ],
        }));
    }
}

pub(crate) fn of_task(id: TaskId) -> Stmt {
    Stmt::new(
        "SELECT position, event, detail, at FROM task_history WHERE task_id = $1 \
         ORDER BY position",
        vec![Value::uuid(id)],
    )
}

pub(crate) fn line(row: &dyn Row) -> Result<HistoryLine, ReadModelError> {
    Ok(HistoryLine {
        position: row.int(0)? as Position,
        event: row.text(1)?,
        detail: row.json(2)?,
        at: row.time(3)?,
    })
}
