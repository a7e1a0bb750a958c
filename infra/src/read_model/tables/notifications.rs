//! `notifications`: each user's inbox (private: read by its owner alone). One row per person
//! and comment, keyed by the comment's position (`seq`), reasons as two flags.

use domain::{CommentId, Position, PostId, UserId};
use projections::inbox::NotificationView;
use projections::{Change, InboxChange, ReadModelError};

use super::{Table, limit, no_run};
use crate::read_model::sql::{Col, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("user_id", Ty::Uuid, "NOT NULL"),
    col("seq", Ty::Int, "NOT NULL"),
    col("post_id", Ty::Uuid, "NOT NULL"),
    col("comment_id", Ty::Uuid, "NOT NULL"),
    col("name", Ty::Text, "NOT NULL"),
    col("excerpt", Ty::Text, "NOT NULL"),
    col("reply", Ty::Bool, "NOT NULL"),
    col("followed", Ty::Bool, "NOT NULL"),
    col("created_at", Ty::Time, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "inbox",
    name: "notifications",
    columns: COLUMNS,
    constraints: "PRIMARY KEY (user_id, seq)",
    indexes: &[
        "CREATE INDEX {t}_seq ON {t} (seq)",
        "CREATE INDEX {t}_comment ON {t} (comment_id)",
        "CREATE INDEX {t}_post ON {t} (post_id)",
        "CREATE INDEX {t}_created ON {t} (created_at)",
    ],
    order: "user_id, seq",
    write,
    run: no_run,
};

/// The named author of each named post and comment: public on the item, kept here for the
/// replies that address them.
pub(crate) const AUTHORS: Table = Table {
    projection: "inbox",
    name: "inbox_authors",
    columns: &[
        col("item_id", Ty::Uuid, "PRIMARY KEY"),
        col("post_id", Ty::Uuid, "NOT NULL"),
        col("user_id", Ty::Uuid, "NOT NULL"),
    ],
    constraints: "",
    indexes: &[
        "CREATE INDEX {t}_post ON {t} (post_id)",
        "CREATE INDEX {t}_user ON {t} (user_id)",
    ],
    order: "item_id",
    // Written by the notifications table, before the replies that read it.
    write: |_, _, _| {},
    run: no_run,
};

/// The highest sequence number the retention dropped: one row, `id` 1.
pub(crate) const PRUNED: Table = Table {
    projection: "inbox",
    name: "inbox_pruned",
    columns: &[
        col("id", Ty::Int, "PRIMARY KEY"),
        col("up_to", Ty::Int, "NOT NULL"),
    ],
    constraints: "",
    indexes: &[],
    order: "id",
    // Written by the notifications table, before the rows the retention drops.
    write: |_, _, _| {},
    run: no_run,
};

/// Every write of the inbox but the read marks, in event order: a comment's fan-out reads the
/// follows that the events before it made (in the same batch too), so the follows and the
/// retention's mark are written here rather than by their own tables, which the store
/// applies one after another.
fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    write_pruned(g, change, out);
    write_authors(g, change, out);
    write_notifications(g, change, out);
    super::follows::write(g, change, out);
}

fn write_authors(g: u32, change: &Change, out: &mut Vec<Write>) {
    let t = format!("inbox_authors_g{g}");
    let stmt = match change {
        Change::Inbox(InboxChange::NamedAuthor {
            item,
            post_id,
            user_id,
        }) => Stmt::new(
            format!(
                "INSERT INTO {t} (item_id, post_id, user_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (item_id) DO NOTHING"
            ),
            vec![
                Value::uuid(*item),
                Value::uuid(*post_id),
                Value::uuid(*user_id),
            ],
        ),
        Change::Inbox(InboxChange::ForgetPost { post_id }) => Stmt::new(
            format!("DELETE FROM {t} WHERE post_id = $1"),
            vec![Value::uuid(*post_id)],
        ),
        Change::Inbox(InboxChange::ForgetUser { user_id }) => Stmt::new(
            format!("DELETE FROM {t} WHERE user_id = $1"),
            vec![Value::uuid(*user_id)],
        ),
        _ => return,
    };
    out.push(Write::Stmt(stmt));
}

fn write_notifications(g: u32, change: &Change, out: &mut Vec<Write>) {
    let Change::Inbox(change) = change else {
        return;
    };
    let t = format!("notifications_g{g}");
    match change {
        InboxChange::Notify {
            seq,
            post_id,
            comment_id,
            commenter,
            addressee,
            answers,
            name,
            excerpt,
            at,
            prune_before,
        } => {
            out.push(Write::Stmt(Stmt::new(
                format!("DELETE FROM {t} WHERE created_at < $1"),
                vec![Value::time(prune_before)],
            )));
            let args = || {
                vec![
                    Value::int(*seq as i64),
                    Value::uuid(*post_id),
                    Value::uuid(*comment_id),
                    Value::text(name),
                    Value::text(excerpt),
                    Value::time(at),
                    Value::Uuid(addressee.map(Into::into)),
                    Value::Uuid(commenter.map(Into::into)),
                    Value::uuid(*answers),
                ]
            };
            // Whom the comment answers: the anonymous addressee, else the answered item's
            // named author.
            let target = format!(
                "COALESCE($7, (SELECT a.user_id FROM inbox_authors_g{g} a WHERE a.item_id = $9))"
            );
            // Every follower but the commenter; the addressee among them gets both reasons.
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "INSERT INTO {t} (user_id, seq, post_id, comment_id, name, excerpt, reply, \
                     followed, created_at) \
                     SELECT f.user_id, $1, $2, $3, $4, $5, COALESCE(f.user_id = {target}, FALSE), \
                     TRUE, $6 FROM follows_g{g} f \
                     WHERE f.post_id = $2 AND f.following \
                     AND ($8 IS NULL OR f.user_id <> $8)"
                ),
                args(),
            )));
            // The addressee who does not follow (any more) still hears of the reply.
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "INSERT INTO {t} (user_id, seq, post_id, comment_id, name, excerpt, \
                     reply, followed, created_at) \
                     SELECT x.target, $1, $2, $3, $4, $5, TRUE, FALSE, $6 \
                     FROM (SELECT {target} AS target) x \
                     WHERE x.target IS NOT NULL AND ($8 IS NULL OR x.target <> $8) \
                     ON CONFLICT (user_id, seq) DO NOTHING"
                ),
                args(),
            )));
        }
        InboxChange::Retract { comment_id } => out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM {t} WHERE comment_id = $1"),
            vec![Value::uuid(*comment_id)],
        ))),
        InboxChange::ForgetPost { post_id } => out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM {t} WHERE post_id = $1"),
            vec![Value::uuid(*post_id)],
        ))),
        InboxChange::ForgetUser { user_id } => out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM {t} WHERE user_id = $1"),
            vec![Value::uuid(*user_id)],
        ))),
        _ => {}
    }
}

/// Before a notification's rows: the retention's mark moves to the highest sequence number
/// it is about to drop.
fn write_pruned(g: u32, change: &Change, out: &mut Vec<Write>) {
    if let Change::Inbox(InboxChange::Notify { prune_before, .. }) = change {
        out.push(Write::Stmt(Stmt::new(
            format!(
                "INSERT INTO inbox_pruned_g{g} (id, up_to) \
                 SELECT 1, MAX(seq) FROM notifications_g{g} WHERE created_at < $1 \
                 HAVING MAX(seq) IS NOT NULL \
                 ON CONFLICT (id) DO UPDATE SET up_to = excluded.up_to"
            ),
            vec![Value::time(prune_before)],
        )));
    }
}

const SELECT: &str =
    "seq, user_id, post_id, comment_id, name, excerpt, reply, followed, created_at";

/// The user's notifications before `before`, newest first.
pub(crate) fn page(user: UserId, before: Option<Position>, size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT {SELECT} FROM notifications WHERE user_id = $1 AND seq < $2 \
             ORDER BY seq DESC LIMIT $3"
        ),
        vec![
            Value::uuid(user),
            Value::int(before.map_or(i64::MAX, |c| c as i64)),
            limit(size),
        ],
    )
}

/// The user's notifications in `(after, up_to]`, oldest first.
pub(crate) fn between(user: UserId, after: Position, up_to: Position, size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT {SELECT} FROM notifications WHERE user_id = $1 AND seq > $2 AND seq <= $3 \
             ORDER BY seq LIMIT $4"
        ),
        vec![
            Value::uuid(user),
            Value::int(after as i64),
            Value::int(up_to as i64),
            limit(size),
        ],
    )
}

/// Everyone's notifications in `(after, up_to]`, in order.
pub(crate) fn since(after: Position, up_to: Position, size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT {SELECT} FROM notifications WHERE seq > $1 AND seq <= $2 \
             ORDER BY seq, user_id LIMIT $3"
        ),
        vec![
            Value::int(after as i64),
            Value::int(up_to as i64),
            Value::int(size.clamp(1, 100_000) as i64),
        ],
    )
}

/// The user's read mark and unread count, in one row.
pub(crate) fn state(user: UserId) -> Stmt {
    Stmt::new(
        "SELECT COALESCE((SELECT read_up_to FROM inbox_marks WHERE user_id = $1), 0), \
         (SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND seq > \
         COALESCE((SELECT read_up_to FROM inbox_marks WHERE user_id = $1), 0))",
        vec![Value::uuid(user)],
    )
}

pub(crate) fn pruned() -> Stmt {
    Stmt::new(
        "SELECT COALESCE((SELECT up_to FROM inbox_pruned WHERE id = 1), 0)",
        vec![],
    )
}

pub(crate) fn view(row: &dyn Row) -> Result<NotificationView, ReadModelError> {
    let mut reasons = Vec::with_capacity(2);
    if row.flag(6)? {
        reasons.push("reply");
    }
    if row.flag(7)? {
        reasons.push("followed");
    }
    Ok(NotificationView {
        seq: row.int(0)? as Position,
        user_id: UserId::new(row.uuid(1)?),
        post_id: PostId::new(row.uuid(2)?),
        comment_id: CommentId::new(row.uuid(3)?),
        name: row.text(4)?,
        excerpt: row.text(5)?,
        reasons,
        created_at: row.time(8)?,
    })
}
