//! `follows`: who follows which post (private: read by the follower alone). A row with
//! `following` false is an explicit choice not to follow, which later comments do not undo.

use domain::{Position, PostId, UserId};
use projections::inbox::FollowView;
use projections::{Change, InboxChange, ReadModelError};

use super::{Table, limit, no_run};
use crate::read_model::sql::{Col, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("user_id", Ty::Uuid, "NOT NULL"),
    col("post_id", Ty::Uuid, "NOT NULL"),
    col("following", Ty::Bool, "NOT NULL"),
    col("explicit", Ty::Bool, "NOT NULL"),
    // The position of the event that set the row: the list's order and cursor.
    col("position", Ty::Int, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "inbox",
    name: "follows",
    columns: COLUMNS,
    constraints: "PRIMARY KEY (user_id, post_id)",
    indexes: &[
        "CREATE INDEX {t}_post ON {t} (post_id) WHERE following",
        "CREATE INDEX {t}_user ON {t} (user_id, position)",
    ],
    order: "user_id, post_id",
    // Written by the notifications table, in event order with the notifications that read it.
    write: |_, _, _| {},
    run: no_run,
    functions: &[],
};

/// Each stretch of positions during which a user followed a post: from the event that made
/// them follow (`since`) to the one that made them stop (`ended`, `NULL` while they follow).
/// A comment on the post notifies ("followed") everyone whose stretch holds its position but
/// the commenter: the inbox reads the notifications of following at the time it is asked,
/// instead of writing one row per follower and comment (a comment on a post a thousand people
/// follow wrote a thousand rows; now it writes none).
pub(crate) const SPANS: Table = Table {
    projection: "inbox",
    name: "follow_spans",
    columns: &[
        col("user_id", Ty::Uuid, "NOT NULL"),
        col("post_id", Ty::Uuid, "NOT NULL"),
        col("since", Ty::Int, "NOT NULL"),
        col("ended", Ty::Int, ""),
    ],
    constraints: "PRIMARY KEY (user_id, post_id, since)",
    indexes: &["CREATE INDEX {t}_post ON {t} (post_id, since)"],
    order: "user_id, post_id, since",
    // Written with the follows, by the notifications table.
    write: |_, _, _| {},
    run: no_run,
    functions: &[],
};

/// The statements a change makes on generation `g` of this table and of [`SPANS`] (called by
/// the notifications table, whose comments read them: see there).
pub(super) fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    let Change::Inbox(change) = change else {
        return;
    };
    write_spans(g, change, out);
    let stmt = match change {
        InboxChange::AutoFollow {
            post_id,
            user_id,
            position,
        } => Stmt::new(
            format!(
                "INSERT INTO follows_g{g} (user_id, post_id, following, explicit, position) \
                 VALUES ($1, $2, TRUE, FALSE, $3) ON CONFLICT (user_id, post_id) DO NOTHING"
            ),
            vec![
                Value::uuid(*user_id),
                Value::uuid(*post_id),
                Value::int(*position as i64),
            ],
        ),
        InboxChange::SetFollow {
            post_id,
            user_id,
            following,
            position,
        } => Stmt::new(
            format!(
                "INSERT INTO follows_g{g} (user_id, post_id, following, explicit, position) \
                 VALUES ($1, $2, $3, TRUE, $4) ON CONFLICT (user_id, post_id) DO UPDATE \
                 SET following = excluded.following, explicit = TRUE, \
                 position = excluded.position"
            ),
            vec![
                Value::uuid(*user_id),
                Value::uuid(*post_id),
                Value::Bool(*following),
                Value::int(*position as i64),
            ],
        ),
        // A post's or a user's follows go, and their stretches with them.
        InboxChange::ForgetPost { post_id } => return forget(g, "post_id", post_id.as_uuid(), out),
        InboxChange::ForgetUser { user_id } => return forget(g, "user_id", user_id.as_uuid(), out),
        _ => return,
    };
    out.push(Write::Stmt(stmt));
}

fn forget(g: u32, column: &str, id: uuid::Uuid, out: &mut Vec<Write>) {
    for table in ["follows", "follow_spans"] {
        out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM {table}_g{g} WHERE {column} = $1"),
            vec![Value::Uuid(Some(id))],
        )));
    }
}

/// A follow opens a stretch unless one is open (or, made by posting or commenting, unless the
/// user chose about the post already); a choice not to follow closes it. Written before the
/// follow's own row, which the first statement reads.
fn write_spans(g: u32, change: &InboxChange, out: &mut Vec<Write>) {
    let s = format!("follow_spans_g{g}");
    let (sql, user_id, post_id, position) = match change {
        InboxChange::AutoFollow {
            post_id,
            user_id,
            position,
        } => (
            format!(
                "INSERT INTO {s} (user_id, post_id, since) SELECT $1, $2, $3 \
                 WHERE NOT EXISTS (SELECT 1 FROM follows_g{g} WHERE user_id = $1 AND post_id = $2)"
            ),
            user_id,
            post_id,
            position,
        ),
        InboxChange::SetFollow {
            post_id,
            user_id,
            following,
            position,
        } => (
            if *following {
                format!(
                    "INSERT INTO {s} (user_id, post_id, since) SELECT $1, $2, $3 \
                     WHERE NOT EXISTS (SELECT 1 FROM {s} \
                     WHERE user_id = $1 AND post_id = $2 AND ended IS NULL)"
                )
            } else {
                format!(
                    "UPDATE {s} SET ended = $3 \
                     WHERE user_id = $1 AND post_id = $2 AND ended IS NULL"
                )
            },
            user_id,
            post_id,
            position,
        ),
        _ => return,
    };
    out.push(Write::Stmt(Stmt::new(
        sql,
        vec![
            Value::uuid(*user_id),
            Value::uuid(*post_id),
            Value::int(*position as i64),
        ],
    )));
}

/// The posts `user` follows, most recently followed first, before `before`.
pub(crate) fn page(user: UserId, before: Option<Position>, size: usize) -> Stmt {
    Stmt::new(
        "SELECT post_id, explicit, position FROM follows \
         WHERE user_id = $1 AND following AND position < $2 \
         ORDER BY position DESC LIMIT $3",
        vec![
            Value::uuid(user),
            Value::int(before.map_or(i64::MAX, |c| c as i64)),
            limit(size),
        ],
    )
}

/// A row if `user` follows `post`.
pub(crate) fn one(user: UserId, post: PostId) -> Stmt {
    Stmt::new(
        "SELECT 1 FROM follows WHERE user_id = $1 AND post_id = $2 AND following",
        vec![Value::uuid(user), Value::uuid(post)],
    )
}

pub(crate) fn view(row: &dyn Row) -> Result<FollowView, ReadModelError> {
    Ok(FollowView {
        post_id: PostId::new(row.uuid(0)?),
        explicit: row.flag(1)?,
        position: row.int(2)? as Position,
    })
}
