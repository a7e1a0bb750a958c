//! `sessions`: who is logged in (by the hash of their token, never the token), on which device,
//! since when, and on which day they were last seen.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use domain::{SessionId, UserId};
use projections::UserChange;
use projections::views::{SessionSummary, SessionView};
use projections::{Change, ReadModelError};

use super::{Table, no_run, users};
use crate::read_model::sql::{Col, Insert, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("session_id", Ty::Uuid, "PRIMARY KEY"),
    col("token_hash", Ty::Text, "NOT NULL UNIQUE"),
    col("user_id", Ty::Uuid, "NOT NULL"),
    col("expires_at", Ty::Time, "NOT NULL"),
    col("device", Ty::Text, ""),
    col("created_at", Ty::Time, "NOT NULL"),
    // Midnight (UTC) of the last day the session was seen.
    col("last_seen", Ty::Time, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "users",
    name: "sessions",
    columns: COLUMNS,
    constraints: "",
    indexes: &["CREATE INDEX {t}_user ON {t} (user_id)"],
    order: "session_id",
    write,
    run: no_run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    match change {
        Change::Users(UserChange::InsertSession {
            session_id,
            user_id,
            token_hash,
            expires_at,
            device,
            created_at,
        }) => out.push(Write::Insert(Insert {
            table: format!("sessions_g{g}"),
            columns: &[
                ("session_id", Ty::Uuid),
                ("token_hash", Ty::Text),
                ("user_id", Ty::Uuid),
                ("expires_at", Ty::Time),
                ("device", Ty::Text),
                ("created_at", Ty::Time),
                ("last_seen", Ty::Time),
            ],
            row: vec![
                Value::uuid(*session_id),
                Value::text(token_hash),
                Value::uuid(*user_id),
                Value::time(expires_at),
                Value::Text(device.clone()),
                Value::time(created_at),
                Value::time(&midnight(created_at.date_naive())),
            ],
        })),
        Change::Users(UserChange::SeeSession { session_id, day }) => {
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "UPDATE sessions_g{g} SET last_seen = $2 \
                     WHERE session_id = $1 AND last_seen < $2"
                ),
                vec![Value::uuid(*session_id), Value::time(&midnight(*day))],
            )))
        }
        Change::Users(UserChange::EndSession { session_id }) => out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM sessions_g{g} WHERE session_id = $1"),
            vec![Value::uuid(*session_id)],
        ))),
        Change::Users(UserChange::DeleteUser { user_id }) => out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM sessions_g{g} WHERE user_id = $1"),
            vec![Value::uuid(*user_id)],
        ))),
        _ => {}
    }
}

/// A day as the `last_seen` column holds it.
fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// The session of a token, with its user.
pub(crate) fn by_token(token_hash: &str) -> Stmt {
    Stmt::new(
        format!(
            "SELECT s.session_id, s.expires_at, s.last_seen, {} FROM sessions s \
             JOIN users u ON u.user_id = s.user_id WHERE s.token_hash = $1",
            users::SELECT
        ),
        vec![Value::text(token_hash)],
    )
}

pub(crate) fn view(row: &dyn Row) -> Result<SessionView, ReadModelError> {
    Ok(SessionView {
        session_id: SessionId::new(row.uuid(0)?),
        expires_at: row.time(1)?,
        last_seen: row.time(2)?.date_naive(),
        user: users::view_at(row, 3)?,
    })
}

/// A user's sessions, newest id first.
pub(crate) fn of_user(user: UserId) -> Stmt {
    Stmt::new(
        "SELECT session_id, expires_at, device, created_at, last_seen FROM sessions \
         WHERE user_id = $1 ORDER BY session_id DESC",
        vec![Value::uuid(user)],
    )
}

pub(crate) fn summary(row: &dyn Row) -> Result<SessionSummary, ReadModelError> {
    Ok(SessionSummary {
        session_id: SessionId::new(row.uuid(0)?),
        expires_at: row.time(1)?,
        device: row.opt_text(2)?,
        created_at: row.time(3)?,
        last_seen: row.time(4)?.date_naive(),
    })
}
