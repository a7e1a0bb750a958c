//! `users`: registered accounts (private: only their owner and admins read them).

use domain::UserId;
use projections::UserChange;
use projections::views::UserView;
use projections::{Change, ReadModelError};

use super::{Table, no_run};
use crate::read_model::sql::{Col, Insert, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("user_id", Ty::Uuid, "PRIMARY KEY"),
    col("username", Ty::Text, "NOT NULL"),
    col("email", Ty::Text, "NOT NULL"),
    col("is_admin", Ty::Bool, "NOT NULL DEFAULT FALSE"),
    col("is_moderator", Ty::Bool, "NOT NULL DEFAULT FALSE"),
    col("registered_at", Ty::Time, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "users",
    name: "users",
    columns: COLUMNS,
    constraints: "",
    indexes: &[],
    order: "user_id",
    write,
    run: no_run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    match change {
        Change::Users(UserChange::InsertUser {
            user_id,
            username,
            email,
            registered_at,
        }) => out.push(Write::Insert(Insert {
            table: format!("users_g{g}"),
            columns: &[
                ("user_id", Ty::Uuid),
                ("username", Ty::Text),
                ("email", Ty::Text),
                ("registered_at", Ty::Time),
            ],
            row: vec![
                Value::uuid(*user_id),
                Value::text(username),
                Value::text(email),
                Value::time(registered_at),
            ],
        })),
        Change::Users(UserChange::SetAdmin { user_id }) => out.push(Write::Stmt(Stmt::new(
            format!("UPDATE users_g{g} SET is_admin = TRUE WHERE user_id = $1"),
            vec![Value::uuid(*user_id)],
        ))),
        Change::Users(UserChange::SetModerator { user_id, moderator }) => {
            out.push(Write::Stmt(Stmt::new(
                format!("UPDATE users_g{g} SET is_moderator = $1 WHERE user_id = $2"),
                vec![Value::Bool(*moderator), Value::uuid(*user_id)],
            )))
        }
        Change::Users(UserChange::DeleteUser { user_id }) => out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM users_g{g} WHERE user_id = $1"),
            vec![Value::uuid(*user_id)],
        ))),
        _ => {}
    }
}

/// The columns [`view`] reads, in its order (`u` is the table's alias).
pub(crate) const SELECT: &str =
    "u.user_id, u.username, u.email, u.is_admin, u.registered_at, u.is_moderator";

pub(crate) fn by_id(id: UserId) -> Stmt {
    Stmt::new(
        format!("SELECT {SELECT} FROM users u WHERE u.user_id = $1"),
        vec![Value::uuid(id)],
    )
}

/// A user from the row's columns `first..first + 6`, as [`SELECT`] lists them; their
/// sanctions are read apart.
pub(crate) fn view_at(row: &dyn Row, first: usize) -> Result<UserView, ReadModelError> {
    Ok(UserView {
        user_id: UserId::new(row.uuid(first)?),
        username: row.text(first + 1)?,
        email: row.text(first + 2)?,
        is_admin: row.flag(first + 3)?,
        registered_at: row.time(first + 4)?,
        is_moderator: row.flag(first + 5)?,
        sanctions: vec![],
    })
}

pub(crate) fn view(row: &dyn Row) -> Result<UserView, ReadModelError> {
    view_at(row, 0)
}
