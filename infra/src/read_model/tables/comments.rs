//! `comments`: the live comments of live posts, in order of position.

use domain::{CommentId, Position, PostId};
use projections::CommentChange;
use projections::views::CommentView;
use projections::{Change, ReadModelError};

use super::{Table, limit, no_run};
use crate::read_model::sql::{Col, Insert, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("comment_id", Ty::Uuid, "PRIMARY KEY"),
    col("post_id", Ty::Uuid, "NOT NULL"),
    col("position", Ty::Int, "NOT NULL UNIQUE"),
    col("author_name", Ty::Text, "NOT NULL"),
    col("anonymous", Ty::Bool, "NOT NULL"),
    col("is_host", Ty::Bool, "NOT NULL"),
    col("body", Ty::Text, "NOT NULL"),
    col("reply_to", Ty::Uuid, ""),
    col("created_at", Ty::Time, "NOT NULL"),
    col("likes", Ty::Int, "NOT NULL DEFAULT 0"),
    col("dislikes", Ty::Int, "NOT NULL DEFAULT 0"),
    // Moderation: the reason code of a folded comment (NULL: not folded), and removal.
    col("folded", Ty::Text, ""),
    col("removed", Ty::Bool, "NOT NULL DEFAULT FALSE"),
    // The author of a named comment, for forgetting it; never read by a query.
    col("author_id", Ty::Uuid, ""),
];

pub(crate) const TABLE: Table = Table {
    projection: "comments",
    name: "comments",
    columns: COLUMNS,
    constraints: "",
    indexes: &[
        "CREATE INDEX {t}_post ON {t} (post_id, position)",
        "CREATE INDEX {t}_author ON {t} (author_id) WHERE author_id IS NOT NULL",
    ],
    order: "position",
    write,
    run: no_run,
    functions: &[],
};

/// The columns a new comment writes, in the order of [`row`].
const INSERT: &[(&str, Ty)] = &[
    ("comment_id", Ty::Uuid),
    ("post_id", Ty::Uuid),
    ("position", Ty::Int),
    ("author_name", Ty::Text),
    ("anonymous", Ty::Bool),
    ("is_host", Ty::Bool),
    ("body", Ty::Text),
    ("reply_to", Ty::Uuid),
    ("created_at", Ty::Time),
    ("author_id", Ty::Uuid),
];

/// The values of [`INSERT`] for a new comment.
fn row(change: &Change) -> Option<Vec<Value>> {
    match change {
        Change::Comments(CommentChange::InsertComment {
            comment_id,
            post_id,
            position,
            author_id,
            author_name,
            anonymous,
            is_host,
            body,
            reply_to,
            created_at,
        }) => Some(vec![
            Value::uuid(*comment_id),
            Value::uuid(*post_id),
            Value::int(*position as i64),
            Value::text(author_name),
            Value::Bool(*anonymous),
            Value::Bool(*is_host),
            Value::text(body),
            Value::Uuid(reply_to.map(Into::into)),
            Value::time(created_at),
            Value::Uuid(author_id.map(Into::into)),
        ]),
        _ => None,
    }
}

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    if let Some(row) = row(change) {
        out.push(Write::Insert(Insert {
            table: format!("comments_g{g}"),
            columns: INSERT,
            row,
        }));
        return;
    }
    match change {
        Change::Comments(CommentChange::DeleteComment { comment_id, .. }) => out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM comments_g{g} WHERE comment_id = $1"),
            vec![Value::uuid(*comment_id)],
        ))),
        Change::Comments(CommentChange::SetReactions {
            comment_id,
            likes,
            dislikes,
        }) => out.push(Write::Stmt(Stmt::new(
            format!("UPDATE comments_g{g} SET likes = $1, dislikes = $2 WHERE comment_id = $3"),
            vec![
                Value::int(*likes),
                Value::int(*dislikes),
                Value::uuid(*comment_id),
            ],
        ))),
        Change::Comments(CommentChange::Fold {
            comment_id, reason, ..
        }) => out.push(Write::Stmt(Stmt::new(
            format!("UPDATE comments_g{g} SET folded = $1 WHERE comment_id = $2"),
            vec![Value::Text(reason.clone()), Value::uuid(*comment_id)],
        ))),
        Change::Comments(CommentChange::Remove {
            comment_id,
            removed,
            ..
        }) => out.push(Write::Stmt(Stmt::new(
            format!("UPDATE comments_g{g} SET removed = $1 WHERE comment_id = $2"),
            vec![Value::Bool(*removed), Value::uuid(*comment_id)],
        ))),
        Change::Comments(CommentChange::DeleteCommentsOf { post_id }) => out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM comments_g{g} WHERE post_id = $1"),
            vec![Value::uuid(*post_id)],
        ))),
        Change::Comments(CommentChange::ForgetCommentAuthor { user_id }) => out.push(Write::Stmt(Stmt::new(
            format!(
                "UPDATE comments_g{g} SET author_name = $1, author_id = NULL WHERE author_id = $2"
            ),
            vec![
                Value::text(projections::DELETED_USER),
                Value::uuid(*user_id),
            ],
        ))),
        _ => {}
    }
}

const SELECT: &str = "comment_id, post_id, position, author_name, anonymous, is_host, body, \
     reply_to, created_at, likes, dislikes, folded";

/// A page of a post's comments: those after `after`, oldest first, without removed ones.
pub(crate) fn page(post: PostId, after: Option<Position>, size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT {SELECT} FROM comments WHERE post_id = $1 AND position > $2 AND NOT removed \
             ORDER BY position ASC LIMIT $3"
        ),
        vec![
            Value::uuid(post),
            Value::int(after.map_or(0, |c| c as i64)),
            limit(size),
        ],
    )
}

/// A comment by id, removed or not (what finds the post of a comment id).
pub(crate) fn by_id(id: CommentId) -> Stmt {
    Stmt::new(
        format!("SELECT {SELECT} FROM comments WHERE comment_id = $1"),
        vec![Value::uuid(id)],
    )
}

pub(crate) fn view(row: &dyn Row) -> Result<CommentView, ReadModelError> {
    Ok(CommentView {
        comment_id: CommentId::new(row.uuid(0)?),
        post_id: PostId::new(row.uuid(1)?),
        position: row.int(2)? as Position,
        author_name: row.text(3)?,
        anonymous: row.flag(4)?,
        is_host: row.flag(5)?,
        body: row.text(6)?,
        reply_to: row.opt_uuid(7)?.map(CommentId::new),
        created_at: row.time(8)?,
        likes: row.int(9)?,
        dislikes: row.int(10)?,
        folded: row.opt_text(11)?,
    })
}
