//! `inbox_marks`: how far each user has read their notifications (private).

use projections::{Change, InboxChange};

use super::{Table, no_run};
use crate::read_model::sql::{Col, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("user_id", Ty::Uuid, "PRIMARY KEY"),
    col("read_up_to", Ty::Int, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "inbox",
    name: "inbox_marks",
    columns: COLUMNS,
    constraints: "",
    indexes: &[],
    order: "user_id",
    write,
    run: no_run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    let stmt = match change {
        Change::Inbox(InboxChange::MarkRead { user_id, up_to }) => Stmt::new(
            format!(
                "INSERT INTO inbox_marks_g{g} (user_id, read_up_to) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET read_up_to = excluded.read_up_to"
            ),
            vec![Value::uuid(*user_id), Value::int(*up_to as i64)],
        ),
        Change::Inbox(InboxChange::ForgetUser { user_id }) => Stmt::new(
            format!("DELETE FROM inbox_marks_g{g} WHERE user_id = $1"),
            vec![Value::uuid(*user_id)],
        ),
        _ => return,
    };
    out.push(Write::Stmt(stmt));
}
