//! `feed_marks`: each user's vote and reaction on a post, known only by a handle that only
//! its owner's key makes (one per user, post and purpose), so the rows tell nobody who voted
//! or reacted, nor link two marks of one user. A signed-in reader is shown their own.

use domain::PostId;
use projections::{Change, FeedChange};

use super::{Table, no_run};
use crate::read_model::sql::{Col, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("handle", Ty::Text, "PRIMARY KEY"),
    col("post_id", Ty::Uuid, "NOT NULL"),
    col("value", Ty::Int, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "feed",
    name: "feed_marks",
    columns: COLUMNS,
    constraints: "",
    indexes: &["CREATE INDEX {t}_post ON {t} (post_id)"],
    order: "handle",
    write,
    run: no_run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    let t = format!("feed_marks_g{g}");
    let stmt = match change {
        Change::Feed(FeedChange::Mark {
            handle,
            post_id,
            value: Some(value),
        }) => Stmt::new(
            format!(
                "INSERT INTO {t} (handle, post_id, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (handle) DO UPDATE SET value = excluded.value"
            ),
            vec![
                Value::text(handle),
                Value::uuid(*post_id),
                Value::int(*value),
            ],
        ),
        Change::Feed(FeedChange::Mark {
            handle,
            value: None,
            ..
        }) => Stmt::new(
            format!("DELETE FROM {t} WHERE handle = $1"),
            vec![Value::text(handle)],
        ),
        Change::Feed(FeedChange::DeletePost { post_id }) => Stmt::new(
            format!("DELETE FROM {t} WHERE post_id = $1"),
            vec![Value::uuid(*post_id)],
        ),
        _ => return,
    };
    out.push(Write::Stmt(stmt));
}

/// The marks among `handles` on `post` (at most two handles: a vote's and a reaction's).
pub(crate) fn of(post: PostId, handles: &[String]) -> Stmt {
    let first = handles.first().cloned().unwrap_or_default();
    let second = handles.get(1).cloned().unwrap_or_else(|| first.clone());
    Stmt::new(
        "SELECT handle, value FROM feed_marks WHERE post_id = $1 AND handle IN ($2, $3)",
        vec![Value::uuid(post), Value::text(first), Value::text(second)],
    )
}
