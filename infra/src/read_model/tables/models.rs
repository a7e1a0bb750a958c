//! `models`: the models tasks can be published for.

use domain::model::{ModelName, ModelSpec};
use projections::tasks::{ModelView, TaskChange};
use projections::{Change, ReadModelError};

use super::{Table, no_run};
use crate::read_model::sql::{Col, Insert, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("name", Ty::Text, "PRIMARY KEY"),
    col("kind", Ty::Text, "NOT NULL"),
    col("input_schema", Ty::Json, "NOT NULL"),
    col("max_concurrent", Ty::Int, "NOT NULL"),
    col("enabled", Ty::Bool, "NOT NULL"),
    col("registered_at", Ty::Time, "NOT NULL"),
    col("updated_at", Ty::Time, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "tasks",
    name: "models",
    columns: COLUMNS,
    constraints: "",
    indexes: &[],
    order: "name",
    write,
    run: no_run,
    functions: &[],
};

fn spec(spec: &ModelSpec) -> [Value; 3] {
    [
        Value::text(&spec.kind),
        Value::Json(Some(spec.input_schema.clone())),
        Value::int(spec.max_concurrent),
    ]
}

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    let Change::Tasks(change) = change else {
        return;
    };
    match change {
        TaskChange::InsertModel {
            name,
            spec: s,
            enabled,
            at,
        } => {
            let [kind, schema, max] = spec(s);
            out.push(Write::Insert(Insert {
                table: format!("models_g{g}"),
                columns: &[
                    ("name", Ty::Text),
                    ("kind", Ty::Text),
                    ("input_schema", Ty::Json),
                    ("max_concurrent", Ty::Int),
                    ("enabled", Ty::Bool),
                    ("registered_at", Ty::Time),
                    ("updated_at", Ty::Time),
                ],
                row: vec![
                    Value::text(name.as_str()),
                    kind,
                    schema,
                    max,
                    Value::Bool(*enabled),
                    Value::time(at),
                    Value::time(at),
                ],
            }));
        }
        TaskChange::UpdateModel { name, spec: s, at } => {
            let [kind, schema, max] = spec(s);
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "UPDATE models_g{g} SET kind = $1, input_schema = $2, max_concurrent = $3, \
                     updated_at = $4 WHERE name = $5"
                ),
                vec![
                    kind,
                    schema,
                    max,
                    Value::time(at),
                    Value::text(name.as_str()),
                ],
            )));
        }
        TaskChange::EnableModel { name, enabled, at } => out.push(Write::Stmt(Stmt::new(
            format!("UPDATE models_g{g} SET enabled = $1, updated_at = $2 WHERE name = $3"),
            vec![
                Value::Bool(*enabled),
                Value::time(at),
                Value::text(name.as_str()),
            ],
        ))),
        _ => {}
    }
}

const SELECT: &str = "name, kind, input_schema, max_concurrent, enabled, registered_at, updated_at";

pub(crate) fn by_name(name: &ModelName) -> Stmt {
    Stmt::new(
        format!("SELECT {SELECT} FROM models WHERE name = $1"),
        vec![Value::text(name.as_str())],
    )
}

pub(crate) fn all() -> Stmt {
    Stmt::new(format!("SELECT {SELECT} FROM models ORDER BY name"), vec![])
}

pub(crate) fn name(s: &str) -> Result<ModelName, ReadModelError> {
    ModelName::parse(s).map_err(|e| ReadModelError::Backend(e.to_string()))
}

pub(crate) fn view(row: &dyn Row) -> Result<ModelView, ReadModelError> {
    Ok(ModelView {
        name: name(&row.text(0)?)?,
        kind: row.text(1)?,
        input_schema: row.json(2)?,
        max_concurrent: row.count(3)?,
        enabled: row.flag(4)?,
        registered_at: row.time(5)?,
        updated_at: row.time(6)?,
    })
}
