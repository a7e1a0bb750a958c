//! `workers`: who may claim tasks, by the hash of their token.

use domain::WorkerId;
use projections::tasks::{TaskChange, WorkerView};
use projections::{Change, ReadModelError};

use super::{Table, models, no_run};
use crate::read_model::sql::{Col, Insert, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("worker_id", Ty::Uuid, "PRIMARY KEY"),
    col("name", Ty::Text, "NOT NULL"),
    col("models", Ty::Json, "NOT NULL"),
    col("token_hash", Ty::Text, "NOT NULL UNIQUE"),
    col("revoked", Ty::Bool, "NOT NULL DEFAULT FALSE"),
    col("registered_at", Ty::Time, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "tasks",
    name: "workers",
    columns: COLUMNS,
    constraints: "",
    indexes: &[],
    order: "worker_id",
    write,
    run: no_run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    let Change::Tasks(change) = change else {
        return;
    };
    match change {
        TaskChange::InsertWorker {
            worker_id,
            name,
            models,
            token_hash,
            at,
        } => out.push(Write::Insert(Insert {
            table: format!("workers_g{g}"),
            columns: &[
                ("worker_id", Ty::Uuid),
                ("name", Ty::Text),
                ("models", Ty::Json),
                ("token_hash", Ty::Text),
                ("registered_at", Ty::Time),
            ],
            row: vec![
                Value::uuid(*worker_id),
                Value::text(name),
                Value::Json(Some(serde_json::Value::Array(
                    models
                        .iter()
                        .map(|m| serde_json::Value::String(m.as_str().to_owned()))
                        .collect(),
                ))),
                Value::text(token_hash),
                Value::time(at),
            ],
        })),
        TaskChange::RevokeWorker { worker_id } => out.push(Write::Stmt(Stmt::new(
            format!("UPDATE workers_g{g} SET revoked = TRUE WHERE worker_id = $1"),
            vec![Value::uuid(*worker_id)],
        ))),
        _ => {}
    }
}

const SELECT: &str = "worker_id, name, models, revoked, registered_at";

pub(crate) fn by_token(token_hash: &str) -> Stmt {
    Stmt::new(
        format!("SELECT {SELECT} FROM workers WHERE token_hash = $1"),
        vec![Value::text(token_hash)],
    )
}

pub(crate) fn all() -> Stmt {
    Stmt::new(
        format!("SELECT {SELECT} FROM workers ORDER BY registered_at, worker_id"),
        vec![],
    )
}

pub(crate) fn view(row: &dyn Row) -> Result<WorkerView, ReadModelError> {
    let names: Vec<String> = serde_json::from_value(row.json(2)?)
        .map_err(|e| ReadModelError::Backend(format!("workers.models: {e}")))?;
    Ok(WorkerView {
        worker_id: WorkerId::new(row.uuid(0)?),
        name: row.text(1)?,
        models: names
            .iter()
            .map(|m| models::name(m))
            .collect::<Result<_, _>>()?,
        revoked: row.flag(3)?,
        registered_at: row.time(4)?,
    })
}
