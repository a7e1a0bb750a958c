//! `moderation_log`, `moderation_items`, `moderation_reports`: the public log of acts, each
//! reported or moderated item's standing, and each report's reason and text. No column holds a
//! user id: reporters are not kept at all, and the acts keep the actor's role only.

use chrono::{DateTime, Utc};
use domain::moderation::{Item, Reason, Role};
use domain::{CommentId, PostId};
use projections::moderation::{LogEntry, QueueItem};
use projections::{Change, ModerationChange, ReadModelError};
use uuid::Uuid;

use super::{Table, limit, no_run};
use crate::read_model::sql::{Col, Row, Stmt, Ty, Value, Write, col};

const LOG_COLUMNS: &[Col] = &[
    col("position", Ty::Int, "PRIMARY KEY"),
    col("act", Ty::Text, "NOT NULL"),
    col("post_id", Ty::Uuid, "NOT NULL"),
    col("comment_id", Ty::Uuid, ""),
    col("reason", Ty::Text, "NOT NULL"),
    col("note", Ty::Text, ""),
    col("role", Ty::Text, "NOT NULL"),
    col("at", Ty::Time, "NOT NULL"),
];

pub(crate) const LOG: Table = Table {
    projection: "moderation",
    name: "moderation_log",
    columns: LOG_COLUMNS,
    constraints: "",
    indexes: &[],
    order: "position",
    write: write_log,
    run: no_run,
    functions: &[],
};

const ITEM_COLUMNS: &[Col] = &[
    // The comment's id for a comment, else the post's (both UUIDv7s, so never equal).
    col("item_id", Ty::Uuid, "PRIMARY KEY"),
    col("post_id", Ty::Uuid, "NOT NULL"),
    col("comment_id", Ty::Uuid, ""),
    col("reports", Ty::Int, "NOT NULL DEFAULT 0"),
    col("weight", Ty::Int, "NOT NULL DEFAULT 0"),
    col("folded", Ty::Text, ""),
    col("removed", Ty::Bool, "NOT NULL DEFAULT FALSE"),
    col("sanction_due", Ty::Bool, "NOT NULL DEFAULT FALSE"),
    // The last removal's reason code and the role that removed it.
    col("removal_reason", Ty::Text, ""),
    col("removed_by", Ty::Text, ""),
    col("last_reported_at", Ty::Time, ""),
];

pub(crate) const ITEMS: Table = Table {
    projection: "moderation",
    name: "moderation_items",
    columns: ITEM_COLUMNS,
    constraints: "",
    indexes: &[],
    order: "item_id",
    write: write_item,
    run: no_run,
    functions: &[],
};

const REPORT_COLUMNS: &[Col] = &[
    col("position", Ty::Int, "PRIMARY KEY"),
    col("item_id", Ty::Uuid, "NOT NULL"),
    col("reason", Ty::Text, "NOT NULL"),
    col("text", Ty::Text, ""),
    // The reporter, for forgetting their text when they leave; never read by a query.
    col("user_id", Ty::Uuid, ""),
];

pub(crate) const REPORTS: Table = Table {
    projection: "moderation",
    name: "moderation_reports",
    columns: REPORT_COLUMNS,
    constraints: "",
    indexes: &[
        "CREATE INDEX {t}_item ON {t} (item_id)",
        "CREATE INDEX {t}_user ON {t} (user_id) WHERE user_id IS NOT NULL",
    ],
    order: "position",
    write: write_report,
    run: no_run,
    functions: &[],
};

fn item_id(item: &Item) -> Uuid {
    item.comment_id
        .map_or(item.post_id.as_uuid(), |c| c.as_uuid())
}

fn write_log(g: u32, change: &Change, out: &mut Vec<Write>) {
    let Change::Moderation(ModerationChange::Log {
        position,
        act,
        item,
        reason,
        note,
        role,
        at,
    }) = change
    else {
        return;
    };
    out.push(Write::Stmt(Stmt::new(
        format!(
            "INSERT INTO moderation_log_g{g} (position, act, post_id, comment_id, reason, note, \
             role, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (position) DO NOTHING"
        ),
        vec![
            Value::int(*position as i64),
            Value::text(act),
            Value::uuid(item.post_id),
            Value::Uuid(item.comment_id.map(Into::into)),
            Value::text(reason),
            Value::Text(note.clone()),
            Value::text(role),
            Value::time(at),
        ],
    )));
}

/// Makes the item's row if it has none.
fn ensure(t: &str, item: &Item) -> Write {
    Write::Stmt(Stmt::new(
        format!(
            "INSERT INTO {t} (item_id, post_id, comment_id) VALUES ($1, $2, $3) \
             ON CONFLICT (item_id) DO NOTHING"
        ),
        vec![
            Value::uuid(item_id(item)),
            Value::uuid(item.post_id),
            Value::Uuid(item.comment_id.map(Into::into)),
        ],
    ))
}

fn write_item(g: u32, change: &Change, out: &mut Vec<Write>) {
    let t = format!("moderation_items_g{g}");
    let Change::Moderation(change) = change else {
        return;
    };
    let (item, stmt) = match change {
        ModerationChange::Report {
            item,
            reports,
            weight,
            at,
            ..
        } => (
            item,
            Stmt::new(
                format!(
                    "UPDATE {t} SET reports = $1, weight = $2, last_reported_at = $3 \
                     WHERE item_id = $4"
                ),
                vec![
                    Value::int(*reports),
                    Value::int(*weight),
                    Value::time(at),
                    Value::uuid(item_id(item)),
                ],
            ),
        ),
        ModerationChange::Fold { item, reason } => (
            item,
            Stmt::new(
                format!("UPDATE {t} SET folded = $1 WHERE item_id = $2"),
                vec![Value::Text(reason.clone()), Value::uuid(item_id(item))],
            ),
        ),
        ModerationChange::Remove {
            item,
            removed: true,
            sanction_due,
            reason,
            role,
        } => (
            item,
            Stmt::new(
                format!(
                    "UPDATE {t} SET removed = TRUE, sanction_due = $1, removal_reason = $2, \
                     removed_by = $3 WHERE item_id = $4"
                ),
                vec![
                    Value::Bool(*sanction_due),
                    Value::text(reason),
                    Value::text(role),
                    Value::uuid(item_id(item)),
                ],
            ),
        ),
        // A restored item starts its count of reports again, as the write side does.
        ModerationChange::Remove {
            item,
            removed: false,
            ..
        } => (
            item,
            Stmt::new(
                format!(
                    "UPDATE {t} SET removed = FALSE, reports = 0, weight = 0 WHERE item_id = $1"
                ),
                vec![Value::uuid(item_id(item))],
            ),
        ),
        ModerationChange::Sanctioned { item } => (
            item,
            Stmt::new(
                format!("UPDATE {t} SET sanction_due = FALSE WHERE item_id = $1"),
                vec![Value::uuid(item_id(item))],
            ),
        ),
        ModerationChange::Log { .. } | ModerationChange::ForgetReporter { .. } => return,
    };
    out.push(ensure(&t, item));
    out.push(Write::Stmt(stmt));
}

fn write_report(g: u32, change: &Change, out: &mut Vec<Write>) {
    let stmt = match change {
        Change::Moderation(ModerationChange::Report {
            position,
            item,
            reporter,
            reason,
            text,
            ..
        }) => Stmt::new(
            format!(
                "INSERT INTO moderation_reports_g{g} (position, item_id, reason, text, user_id) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (position) DO NOTHING"
            ),
            vec![
                Value::int(*position as i64),
                Value::uuid(item_id(item)),
                Value::text(reason),
                Value::Text(text.clone()),
                Value::Uuid(reporter.map(Into::into)),
            ],
        ),
        Change::Moderation(ModerationChange::ForgetReporter { user_id }) => Stmt::new(
            format!(
                "UPDATE moderation_reports_g{g} SET text = NULL, user_id = NULL \
                 WHERE user_id = $1"
            ),
            vec![Value::uuid(*user_id)],
        ),
        _ => return,
    };
    out.push(Write::Stmt(stmt));
}

/// The log, newest first, before `before`.
pub(crate) fn log_page(before: Option<u64>, size: usize) -> Stmt {
    Stmt::new(
        "SELECT position, act, post_id, comment_id, reason, note, role, at FROM moderation_log \
         WHERE position < $1 ORDER BY position DESC LIMIT $2",
        vec![
            Value::int(before.map_or(i64::MAX, |b| b as i64)),
            limit(size),
        ],
    )
}

fn item_at(row: &dyn Row, first: usize) -> Result<Item, ReadModelError> {
    Ok(Item {
        post_id: PostId::new(row.uuid(first)?),
        comment_id: row.opt_uuid(first + 1)?.map(CommentId::new),
    })
}

pub(crate) fn log_entry(row: &dyn Row) -> Result<LogEntry, ReadModelError> {
    Ok(LogEntry {
        position: row.int(0)? as u64,
        act: row.text(1)?,
        item: item_at(row, 2)?,
        reason: row.text(4)?,
        note: row.opt_text(5)?,
        role: row.text(6)?,
        at: row.time(7)?,
    })
}

/// The queue's items: reported, not removed, heaviest first (`$1` rows).
const QUEUED: &str = "FROM moderation_items WHERE reports > 0 AND NOT removed \
     ORDER BY weight DESC, last_reported_at DESC LIMIT $1";

/// Reported items not removed, heaviest first.
pub(crate) fn queue(size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT post_id, comment_id, reports, weight, folded, removed, last_reported_at, \
             item_id {QUEUED}"
        ),
        vec![limit(size)],
    )
}

/// A queue row, its reasons and texts still empty, and its item id.
pub(crate) fn queue_item(row: &dyn Row) -> Result<(QueueItem, Uuid), ReadModelError> {
    let last: Option<DateTime<Utc>> = row.opt_time(6)?;
    Ok((
        QueueItem {
            item: item_at(row, 0)?,
            reports: row.int(2)?,
            weight: row.int(3)?,
            folded: row.opt_text(4)?,
            removed: row.flag(5)?,
            reasons: vec![],
            texts: vec![],
            last_reported_at: last.unwrap_or(DateTime::UNIX_EPOCH),
        },
        row.uuid(7)?,
    ))
}

/// The reports of the items [`queue`] selects, oldest first: item, reason and text. One
/// statement for the whole page, not one per item.
pub(crate) fn reports_of_queue(size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT item_id, reason, text FROM moderation_reports \
             WHERE item_id IN (SELECT item_id {QUEUED}) ORDER BY position"
        ),
        vec![limit(size)],
    )
}

/// Removed items whose authors are still to be sanctioned.
pub(crate) fn due(size: usize) -> Stmt {
    Stmt::new(
        "SELECT post_id, comment_id, removal_reason, removed_by FROM moderation_items \
         WHERE sanction_due \
         ORDER BY item_id LIMIT $1",
        vec![limit(size)],
    )
}

pub(crate) fn due_item(row: &dyn Row) -> Result<(Item, Reason, Role), ReadModelError> {
    let bad = |what: &str| ReadModelError::Backend(format!("a stored {what} is unknown"));
    let reason = row.opt_text(2)?.unwrap_or_default();
    let role = row.opt_text(3)?.unwrap_or_default();
    Ok((
        item_at(row, 0)?,
        Reason::parse(&reason).map_err(|_| bad("reason"))?,
        Role::parse(&role).ok_or_else(|| bad("role"))?,
    ))
}
