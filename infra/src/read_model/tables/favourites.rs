//! `favourites`: the posts each user keeps, in folders or none (private: read by the user
//! alone).

use domain::{Position, PostId, UserId};
use projections::inbox::{FavouriteView, FolderView};
use projections::{Change, InboxChange, ReadModelError};

use super::{Table, limit, no_run};
use crate::read_model::sql::{Col, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("user_id", Ty::Uuid, "NOT NULL"),
    col("post_id", Ty::Uuid, "NOT NULL"),
    // Empty: in no folder.
    col("folder", Ty::Text, "NOT NULL"),
    col("position", Ty::Int, "NOT NULL"),
];

pub(crate) const TABLE: Table = Table {
    projection: "inbox",
    name: "favourites",
    columns: COLUMNS,
    constraints: "PRIMARY KEY (user_id, post_id)",
    indexes: &[
        "CREATE INDEX {t}_user ON {t} (user_id, position)",
        "CREATE INDEX {t}_post ON {t} (post_id)",
    ],
    order: "user_id, post_id",
    write,
    run: no_run,
    functions: &[],
};

fn write(g: u32, change: &Change, out: &mut Vec<Write>) {
    let Change::Inbox(change) = change else {
        return;
    };
    let t = format!("favourites_g{g}");
    let stmt = match change {
        InboxChange::SetFavourite {
            user_id,
            post_id,
            folder,
            position,
        } => Stmt::new(
            format!(
                "INSERT INTO {t} (user_id, post_id, folder, position) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, post_id) DO UPDATE \
                 SET folder = excluded.folder, position = excluded.position"
            ),
            vec![
                Value::uuid(*user_id),
                Value::uuid(*post_id),
                Value::text(folder.clone().unwrap_or_default()),
                Value::int(*position as i64),
            ],
        ),
        InboxChange::RemoveFavourite { user_id, post_id } => Stmt::new(
            format!("DELETE FROM {t} WHERE user_id = $1 AND post_id = $2"),
            vec![Value::uuid(*user_id), Value::uuid(*post_id)],
        ),
        InboxChange::ForgetPost { post_id } => Stmt::new(
            format!("DELETE FROM {t} WHERE post_id = $1"),
            vec![Value::uuid(*post_id)],
        ),
        InboxChange::ForgetUser { user_id } => Stmt::new(
            format!("DELETE FROM {t} WHERE user_id = $1"),
            vec![Value::uuid(*user_id)],
        ),
        _ => return,
    };
    out.push(Write::Stmt(stmt));
}

/// A page of the user's favourites, of one folder if given.
pub(crate) fn page(
    user: UserId,
    folder: Option<&str>,
    before: Option<Position>,
    size: usize,
) -> Stmt {
    Stmt::new(
        "SELECT post_id, folder, position FROM favourites \
         WHERE user_id = $1 AND position < $2 AND ($3 IS NULL OR folder = $3) \
         ORDER BY position DESC LIMIT $4",
        vec![
            Value::uuid(user),
            Value::int(before.map_or(i64::MAX, |c| c as i64)),
            Value::Text(folder.map(str::to_owned)),
            limit(size),
        ],
    )
}

pub(crate) fn folders(user: UserId) -> Stmt {
    Stmt::new(
        "SELECT folder, COUNT(*) FROM favourites WHERE user_id = $1 AND folder <> '' \
         GROUP BY folder ORDER BY folder",
        vec![Value::uuid(user)],
    )
}

pub(crate) fn view(row: &dyn Row) -> Result<FavouriteView, ReadModelError> {
    let folder = row.text(1)?;
    Ok(FavouriteView {
        post_id: PostId::new(row.uuid(0)?),
        folder: (!folder.is_empty()).then_some(folder),
        position: row.int(2)? as Position,
    })
}

pub(crate) fn folder(row: &dyn Row) -> Result<FolderView, ReadModelError> {
    Ok(FolderView {
        name: row.text(0)?,
        count: row.int(1)? as u64,
    })
}
