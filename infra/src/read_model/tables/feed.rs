//! `feed`: the live posts, newest first, with their comment counts.

use domain::{Position, PostId};
use projections::FeedChange;
use projections::feed::HotFormula;
use projections::views::{PollView, PostView};
use projections::{Change, ReadModelError};

use super::{Table, limit};
use crate::read_model::Run;
use crate::read_model::sql::{Batch, Col, Dialect, Insert, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("post_id", Ty::Uuid, "PRIMARY KEY"),
    col("position", Ty::Int, "NOT NULL UNIQUE"),
    col("author_name", Ty::Text, "NOT NULL"),
    col("anonymous", Ty::Bool, "NOT NULL"),
    col("title", Ty::Text, ""),
    col("body", Ty::Text, "NOT NULL"),
    col("tags", Ty::Tags, "NOT NULL"),
    col("comment_count", Ty::Int, "NOT NULL DEFAULT 0"),
    col("commenters", Ty::Int, "NOT NULL DEFAULT 0"),
    // `created_at` in Unix seconds: what the hot list's score adds up.
    col("created_unix", Ty::Int, "NOT NULL DEFAULT 0"),
    col("likes", Ty::Int, "NOT NULL DEFAULT 0"),
    col("dislikes", Ty::Int, "NOT NULL DEFAULT 0"),
    col("followers", Ty::Int, "NOT NULL DEFAULT 0"),
    // A poll's options and counts as JSON arrays; NULL without a poll.
    col("poll_options", Ty::Text, ""),
    col("poll_counts", Ty::Text, ""),
    // Moderation: the reason code of a folded post (NULL: not folded), and removal.
    col("folded", Ty::Text, ""),
    col("removed", Ty::Bool, "NOT NULL DEFAULT FALSE"),
    col("created_at", Ty::Time, "NOT NULL"),
    col("last_activity_at", Ty::Time, "NOT NULL"),
    // The author of a named post, for forgetting it when they unregister; never read by a
    // query, NULL for anonymous posts.
    col("author_id", Ty::Uuid, ""),
];

pub(crate) const TABLE: Table = Table {
    projection: "feed",
    name: "feed",
    columns: COLUMNS,
    constraints: "",
    indexes: &["CREATE INDEX {t}_author ON {t} (author_id) WHERE author_id IS NOT NULL"],
    order: "position",
    write,
    run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    match change {
        Change::Feed(FeedChange::InsertPost {
            post_id,
            position,
            author_id,
            author_name,
            anonymous,
            title,
            body,
            tags,
            created_at,
        }) => out.push(Write::Insert(Insert {
            table: format!("feed_g{g}"),
            columns: &[
                ("post_id", Ty::Uuid),
                ("position", Ty::Int),
                ("author_name", Ty::Text),
                ("anonymous", Ty::Bool),
                ("title", Ty::Text),
                ("body", Ty::Text),
                ("tags", Ty::Tags),
                ("created_at", Ty::Time),
                ("last_activity_at", Ty::Time),
                ("author_id", Ty::Uuid),
                ("created_unix", Ty::Int),
            ],
            row: vec![
                Value::uuid(*post_id),
                Value::int(*position as i64),
                Value::text(author_name),
                Value::Bool(*anonymous),
                Value::Text(title.clone()),
                Value::text(body),
                Value::Tags(tags.clone()),
                Value::time(created_at),
                Value::time(created_at),
                Value::Uuid(author_id.map(Into::into)),
                Value::int(created_at.timestamp()),
            ],
        })),
        Change::Feed(FeedChange::DeletePost { post_id }) => out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM feed_g{g} WHERE post_id = $1"),
            vec![Value::uuid(*post_id)],
        ))),
        Change::Feed(FeedChange::ForgetPostAuthor { user_id }) => out.push(Write::Stmt(Stmt::new(
            format!("UPDATE feed_g{g} SET author_name = $1, author_id = NULL WHERE author_id = $2"),
            vec![
                Value::text(projections::DELETED_USER),
                Value::uuid(*user_id),
            ],
        ))),
        Change::Feed(FeedChange::OpenPoll { post_id, options }) => {
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "UPDATE feed_g{g} SET poll_options = $1, poll_counts = $2 WHERE post_id = $3"
                ),
                vec![
                    Value::text(serde_json::to_string(options).unwrap_or_default()),
                    Value::text(serde_json::to_string(&vec![0; options.len()]).unwrap_or_default()),
                    Value::uuid(*post_id),
                ],
            )))
        }
        Change::Feed(FeedChange::SetPollCounts { post_id, counts }) => {
            out.push(Write::Stmt(Stmt::new(
                format!("UPDATE feed_g{g} SET poll_counts = $1 WHERE post_id = $2"),
                vec![
                    Value::text(serde_json::to_string(counts).unwrap_or_default()),
                    Value::uuid(*post_id),
                ],
            )))
        }
        Change::Feed(FeedChange::SetReactions {
            post_id,
            likes,
            dislikes,
        }) => out.push(Write::Stmt(Stmt::new(
            format!("UPDATE feed_g{g} SET likes = $1, dislikes = $2 WHERE post_id = $3"),
            vec![
                Value::int(*likes),
                Value::int(*dislikes),
                Value::uuid(*post_id),
            ],
        ))),
        Change::Feed(FeedChange::Fold { post_id, reason }) => out.push(Write::Stmt(Stmt::new(
            format!("UPDATE feed_g{g} SET folded = $1 WHERE post_id = $2"),
            vec![Value::Text(reason.clone()), Value::uuid(*post_id)],
        ))),
        Change::Feed(FeedChange::Remove { post_id, removed }) => out.push(Write::Stmt(Stmt::new(
            format!("UPDATE feed_g{g} SET removed = $1 WHERE post_id = $2"),
            vec![Value::Bool(*removed), Value::uuid(*post_id)],
        ))),
        Change::Feed(FeedChange::SetFollowers { post_id, followers }) => {
            out.push(Write::Stmt(Stmt::new(
                format!("UPDATE feed_g{g} SET followers = $1 WHERE post_id = $2"),
                vec![Value::int(*followers), Value::uuid(*post_id)],
            )))
        }
        Change::Feed(FeedChange::CountComment {
            post_id,
            delta,
            commenters,
            active_at,
        }) => out.push(Write::Stmt(Stmt::new(
            format!(
                "UPDATE feed_g{g} SET comment_count = comment_count + $1, \
                 commenters = commenters + $2, \
                 last_activity_at = COALESCE($3, last_activity_at) WHERE post_id = $4"
            ),
            vec![
                Value::int(*delta),
                Value::int(*commenters),
                Value::Time(*active_at),
                Value::uuid(*post_id),
            ],
        ))),
        _ => {}
    }
}

const COUNTS: &[(&str, Ty)] = &[
    ("post_id", Ty::Uuid),
    ("delta", Ty::Int),
    // Not `commenters`: the feed's own column would be ambiguous in the `UPDATE ... FROM`.
    ("joined", Ty::Int),
    ("active_at", Ty::Time),
];

/// Many comment counts, one per post (see `Run::first`), in one `UPDATE ... FROM`.
fn run(d: Dialect, g: u32, kind: Run, changes: &[Change]) -> Option<Stmt> {
    if kind != Run::CountComment {
        return None;
    }
    let rows = changes
        .iter()
        .filter_map(|c| match c {
            Change::Feed(FeedChange::CountComment {
                post_id,
                delta,
                commenters,
                active_at,
            }) => Some(vec![
                Value::uuid(*post_id),
                Value::int(*delta),
                Value::int(*commenters),
                Value::Time(*active_at),
            ]),
            _ => None,
        })
        .collect();
    let (source, args) = d.rows(
        Batch {
            columns: COUNTS,
            rows,
        },
        1,
    );
    Some(Stmt::new(
        format!(
            "UPDATE feed_g{g} SET comment_count = comment_count + u.delta, \
             commenters = commenters + u.joined, \
             last_activity_at = COALESCE(u.active_at, last_activity_at) \
             FROM {source} WHERE feed_g{g}.post_id = u.post_id"
        ),
        args,
    ))
}

const SELECT: &str = "post_id, position, author_name, anonymous, title, body, tags, \
     comment_count, created_at, last_activity_at, likes, dislikes, poll_options, poll_counts, \
     commenters, followers, folded";

/// A page of the feed: posts before `before`, newest first.
pub(crate) fn page(before: Option<Position>, size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT {SELECT} FROM feed WHERE position < $1 AND NOT removed \
             ORDER BY position DESC LIMIT $2"
        ),
        vec![
            Value::int(before.map_or(i64::MAX, |c| c as i64)),
            limit(size),
        ],
    )
}

/// The hot list (see [`HotFormula`]): the newest `window` posts, by score, ties newest first.
/// Folded and removed posts are not in it.
pub(crate) fn hot(formula: &HotFormula, size: usize) -> Stmt {
    Stmt::new(
        format!(
            "SELECT {SELECT} FROM (SELECT * FROM feed WHERE NOT removed AND folded IS NULL \
             ORDER BY position DESC LIMIT $1) AS recent \
             ORDER BY (commenters * $2 + likes * $3 - dislikes * $4 + followers * $7) * $5 \
             + created_unix DESC, position DESC LIMIT $6"
        ),
        vec![
            Value::int(formula.window.clamp(1, 100_000) as i64),
            Value::int(formula.commenter),
            Value::int(formula.like),
            Value::int(formula.dislike),
            Value::int(formula.seconds_per_point.max(1)),
            limit(size),
            Value::int(formula.follower),
        ],
    )
}

pub(crate) fn by_id(id: PostId) -> Stmt {
    Stmt::new(
        format!("SELECT {SELECT} FROM feed WHERE post_id = $1 AND NOT removed"),
        vec![Value::uuid(id)],
    )
}

/// A row if the post is live.
pub(crate) fn exists(id: PostId) -> Stmt {
    Stmt::new(
        "SELECT 1 FROM feed WHERE post_id = $1 AND NOT removed",
        vec![Value::uuid(id)],
    )
}

pub(crate) fn view(row: &dyn Row) -> Result<PostView, ReadModelError> {
    Ok(PostView {
        post_id: PostId::new(row.uuid(0)?),
        position: row.int(1)? as Position,
        author_name: row.text(2)?,
        anonymous: row.flag(3)?,
        title: row.opt_text(4)?,
        body: row.text(5)?,
        tags: row.tags(6)?,
        comment_count: row.int(7)?,
        created_at: row.time(8)?,
        last_activity_at: row.time(9)?,
        likes: row.int(10)?,
        dislikes: row.int(11)?,
        poll: poll(row.opt_text(12)?, row.opt_text(13)?)?,
        commenters: row.int(14)?,
        followers: row.int(15)?,
        folded: row.opt_text(16)?,
    })
}

/// The poll columns as a view; `None` without a poll.
fn poll(
    options: Option<String>,
    counts: Option<String>,
) -> Result<Option<PollView>, ReadModelError> {
    let (Some(options), Some(counts)) = (options, counts) else {
        return Ok(None);
    };
    let bad = |e: serde_json::Error| ReadModelError::Backend(format!("a stored poll: {e}"));
    Ok(Some(PollView {
        options: serde_json::from_str(&options).map_err(bad)?,
        counts: serde_json::from_str(&counts).map_err(bad)?,
    }))
}
