//! `sanctions`: who may not write until when (private: the session check reads a user's own,
//! `GET /me/sanctions` shows them to their subject, and moderators see appeals without the
//! user id).

use domain::{CommentId, PostId, SanctionId, UserId};
use projections::UserChange;
use projections::views::{SanctionTerm, SanctionView};
use projections::{Change, ReadModelError};

use super::{Table, limit, no_run};
use crate::read_model::sql::{Col, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("sanction_id", Ty::Uuid, "PRIMARY KEY"),
    col("user_id", Ty::Uuid, "NOT NULL"),
    col("post_id", Ty::Uuid, "NOT NULL"),
    col("comment_id", Ty::Uuid, ""),
    col("reason", Ty::Text, "NOT NULL"),
    col("step", Ty::Int, "NOT NULL"),
    col("starts_at", Ty::Time, "NOT NULL"),
    // NULL: permanent.
    col("ends_at", Ty::Time, ""),
    col("imposed_at", Ty::Time, "NOT NULL"),
    col("appealed_at", Ty::Time, ""),
    col("appeal", Ty::Text, ""),
    // NULL undecided, else whether the sanction was upheld.
    col("upheld", Ty::Bool, ""),
    col("decided_at", Ty::Time, ""),
];

pub(crate) const TABLE: Table = Table {
    projection: "users",
    name: "sanctions",
    columns: COLUMNS,
    constraints: "",
    indexes: &["CREATE INDEX {t}_user ON {t} (user_id)"],
    order: "sanction_id",
    write,
    run: no_run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    let t = format!("sanctions_g{g}");
    let stmt = match change {
        Change::Users(UserChange::InsertSanction {
            sanction_id,
            user_id,
            post_id,
            comment_id,
            reason,
            step,
            starts_at,
            ends_at,
            imposed_at,
        }) => Stmt::new(
            format!(
                "INSERT INTO {t} (sanction_id, user_id, post_id, comment_id, reason, step, \
                 starts_at, ends_at, imposed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (sanction_id) DO NOTHING"
            ),
            vec![
                Value::uuid(*sanction_id),
                Value::uuid(*user_id),
                Value::uuid(*post_id),
                Value::Uuid(comment_id.map(Into::into)),
                Value::text(reason),
                Value::int(*step),
                Value::time(starts_at),
                Value::Time(*ends_at),
                Value::time(imposed_at),
            ],
        ),
        Change::Users(UserChange::AppealSanction {
            sanction_id,
            text,
            at,
        }) => Stmt::new(
            format!("UPDATE {t} SET appealed_at = $1, appeal = $2 WHERE sanction_id = $3"),
            vec![
                Value::time(at),
                Value::Text(text.clone()),
                Value::uuid(*sanction_id),
            ],
        ),
        // An overturned sanction ends when it is overturned.
        Change::Users(UserChange::DecideAppeal {
            sanction_id,
            upheld,
            at,
        }) => Stmt::new(
            format!(
                "UPDATE {t} SET upheld = $1, decided_at = $2, \
                 ends_at = CASE WHEN $1 THEN ends_at ELSE $2 END WHERE sanction_id = $3"
            ),
            vec![
                Value::Bool(*upheld),
                Value::time(at),
                Value::uuid(*sanction_id),
            ],
        ),
        Change::Users(UserChange::DeleteUser { user_id }) => Stmt::new(
            format!("DELETE FROM {t} WHERE user_id = $1"),
            vec![Value::uuid(*user_id)],
        ),
        _ => return,
    };
    out.push(Write::Stmt(stmt));
}

/// A user's sanctions that were not overturned: when each binds.
pub(crate) fn terms_of(user: UserId) -> Stmt {
    Stmt::new(
        "SELECT starts_at, ends_at FROM sanctions \
         WHERE user_id = $1 AND (upheld IS NULL OR upheld)",
        vec![Value::uuid(user)],
    )
}

pub(crate) fn term(row: &dyn Row) -> Result<SanctionTerm, ReadModelError> {
    Ok(SanctionTerm {
        starts_at: row.time(0)?,
        ends_at: row.opt_time(1)?,
    })
}

const SELECT: &str = "sanction_id, post_id, comment_id, reason, step, starts_at, ends_at, \
     imposed_at, appealed_at, appeal, \
     CASE WHEN upheld IS NULL THEN NULL WHEN upheld THEN 1 ELSE 0 END, decided_at";

/// A user's sanctions, newest first.
pub(crate) fn of_user(user: UserId) -> Stmt {
    Stmt::new(
        format!("SELECT {SELECT} FROM sanctions WHERE user_id = $1 ORDER BY imposed_at DESC"),
        vec![Value::uuid(user)],
    )
}

/// Appealed sanctions: undecided first, then by the time of the appeal.
pub(crate) fn appeals(size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT {SELECT} FROM sanctions WHERE appealed_at IS NOT NULL \
             ORDER BY (upheld IS NULL) DESC, appealed_at ASC LIMIT $1"
        ),
        vec![limit(size)],
    )
}

pub(crate) fn view(row: &dyn Row) -> Result<SanctionView, ReadModelError> {
    Ok(SanctionView {
        sanction_id: SanctionId::new(row.uuid(0)?),
        post_id: PostId::new(row.uuid(1)?),
        comment_id: row.opt_uuid(2)?.map(CommentId::new),
        reason: row.text(3)?,
        step: row.int(4)?,
        starts_at: row.time(5)?,
        ends_at: row.opt_time(6)?,
        imposed_at: row.time(7)?,
        appealed_at: row.opt_time(8)?,
        appeal: row.opt_text(9)?,
        upheld: row.opt_int(10)?.map(|v| v != 0),
        decided_at: row.opt_time(11)?,
    })
}
