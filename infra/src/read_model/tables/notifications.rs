//! `notifications`: each user's inbox (private: read by its owner alone). One row per person
//! and comment, keyed by the comment's position (`seq`), reasons as two flags.

use domain::{CommentId, Position, PostId, UserId};
use projections::inbox::{NoticeView, NotificationView};
use projections::{Change, InboxChange, ReadModelError};

use super::{Function, Table, limit, no_run};
use crate::read_model::Run;
use crate::read_model::sql::{Col, Dialect, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("user_id", Ty::Uuid, "NOT NULL"),
    col("seq", Ty::Int, "NOT NULL"),
    col("reply", Ty::Bool, "NOT NULL"),
    col("followed", Ty::Bool, "NOT NULL"),
];

/// One row per person and comment, small (a comment's text and names are in
/// [`COMMENTS`], once): a comment followed by a thousand people writes a thousand of these.
pub(crate) const TABLE: Table = Table {
    projection: "inbox",
    name: "notifications",
    columns: COLUMNS,
    constraints: "PRIMARY KEY (user_id, seq)",
    indexes: &["CREATE INDEX {t}_seq ON {t} (seq)"],
    order: "user_id, seq",
    write,
    run,
    functions: &[APPLY],
};

/// Each notified comment once: what its notifications show. A row is here exactly while some
/// notification refers to it (so a rebuild, which never notified a user who left, agrees).
pub(crate) const COMMENTS: Table = Table {
    projection: "inbox",
    name: "inbox_comments",
    columns: &[
        col("seq", Ty::Int, "PRIMARY KEY"),
        col("post_id", Ty::Uuid, "NOT NULL"),
        // NULL for a notice about a post.
        col("comment_id", Ty::Uuid, ""),
        col("name", Ty::Text, "NOT NULL"),
        col("excerpt", Ty::Text, "NOT NULL"),
        col("created_at", Ty::Time, "NOT NULL"),
        // A moderation notice: what was done, why, and when a sanction ends.
        col("notice", Ty::Text, ""),
        col("reason", Ty::Text, ""),
        col("ends_at", Ty::Time, ""),
    ],
    constraints: "",
    indexes: &[
        "CREATE INDEX {t}_comment ON {t} (comment_id)",
        "CREATE INDEX {t}_post ON {t} (post_id)",
        "CREATE INDEX {t}_created ON {t} (created_at)",
    ],
    order: "seq",
    // Written by the notifications table, in event order.
    write: |_, _, _| {},
    run: no_run,
    functions: &[],
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
    functions: &[],
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
    functions: &[],
};

/// On PostgreSQL a run of what comments make in the inbox (see [`Run::Inbox`]) is one call of
/// [`APPLY`], which makes the statements [`write`] makes, in the same order, on the server: a
/// comment costs no round trips of its own (they were four or five per comment, and cost the
/// `comments` load over a quarter of its rate). SQLite, in process, takes them one by
/// one.
fn run(d: Dialect, g: u32, kind: Run, changes: &[Change]) -> Option<Stmt> {
    if d != Dialect::Postgres || kind != Run::Inbox {
        return None;
    }
    let mut columns = vec![Vec::with_capacity(changes.len()); APPLY.params.len()];
    for change in changes {
        let Change::Inbox(change) = change else {
            return None;
        };
        let row = match change {
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
            } => [
                Value::text("notify"),
                Value::int(*seq as i64),
                Value::uuid(*post_id),
                Value::uuid(*comment_id),
                Value::Uuid(commenter.map(Into::into)),
                Value::Uuid(addressee.map(Into::into)),
                Value::uuid(*answers),
                Value::text(name),
                Value::text(excerpt),
                Value::time(at),
            ],
            InboxChange::AutoFollow {
                post_id,
                user_id,
                position,
            } => [
                Value::text("follow"),
                Value::int(*position as i64),
                Value::uuid(*post_id),
                Value::Uuid(None),
                Value::uuid(*user_id),
                Value::Uuid(None),
                Value::Uuid(None),
                Value::Text(None),
                Value::Text(None),
                Value::Time(None),
            ],
            InboxChange::NamedAuthor {
                item,
                post_id,
                user_id,
            } => [
                Value::text("author"),
                Value::Int(None),
                Value::uuid(*post_id),
                Value::uuid(*item),
                Value::uuid(*user_id),
                Value::Uuid(None),
                Value::Uuid(None),
                Value::Text(None),
                Value::Text(None),
                Value::Time(None),
            ],
            _ => return None,
        };
        for (column, value) in columns.iter_mut().zip(row) {
            column.push(value);
        }
    }
    Some(APPLY.call(g, columns))
}

/// [`write`]'s statements for a notified comment, a follow on commenting and a named author,
/// on PostgreSQL's side (see [`run`]). Row `i` of the arrays is one change: `p_kind` says
/// which; `p_seq` is a comment's position or a follow's; `p_item` a comment's id or a named
/// item's; `p_user` the commenter, follower or named author.
const APPLY: Function = Function {
    name: "inbox_apply_g{g}",
    params: &[
        ("p_kind", Ty::Text),
        ("p_seq", Ty::Int),
        ("p_post", Ty::Uuid),
        ("p_item", Ty::Uuid),
        ("p_user", Ty::Uuid),
        ("p_addressee", Ty::Uuid),
        ("p_answers", Ty::Uuid),
        ("p_name", Ty::Text),
        ("p_excerpt", Ty::Text),
        ("p_at", Ty::Time),
    ],
    body: "DECLARE i INT; v_target UUID; v_told BIGINT; v_more BIGINT;
    BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_kind, 1), 0) LOOP
        IF p_kind[i] = 'author' THEN
            INSERT INTO inbox_authors_g{g} (item_id, post_id, user_id)
            VALUES (p_item[i], p_post[i], p_user[i]) ON CONFLICT (item_id) DO NOTHING;
        ELSIF p_kind[i] = 'follow' THEN
            INSERT INTO follows_g{g} (user_id, post_id, following, explicit, position)
            VALUES (p_user[i], p_post[i], TRUE, FALSE, p_seq[i])
            ON CONFLICT (user_id, post_id) DO NOTHING;
        ELSIF p_kind[i] = 'notify' THEN
            v_target := COALESCE(p_addressee[i],
                (SELECT a.user_id FROM inbox_authors_g{g} a WHERE a.item_id = p_answers[i]));
            INSERT INTO notifications_g{g} (user_id, seq, reply, followed)
            SELECT f.user_id, p_seq[i], COALESCE(f.user_id = v_target, FALSE), TRUE
            FROM follows_g{g} f
            WHERE f.post_id = p_post[i] AND f.following
            AND (p_user[i] IS NULL OR f.user_id <> p_user[i]);
            GET DIAGNOSTICS v_told = ROW_COUNT;
            IF v_target IS NOT NULL AND (p_user[i] IS NULL OR v_target <> p_user[i]) THEN
                INSERT INTO notifications_g{g} (user_id, seq, reply, followed)
                VALUES (v_target, p_seq[i], TRUE, FALSE) ON CONFLICT (user_id, seq) DO NOTHING;
                GET DIAGNOSTICS v_more = ROW_COUNT;
                v_told := v_told + v_more;
            END IF;
            IF v_told > 0 THEN
                INSERT INTO inbox_comments_g{g}
                    (seq, post_id, comment_id, name, excerpt, created_at)
                VALUES (p_seq[i], p_post[i], p_item[i], p_name[i], p_excerpt[i], p_at[i]);
            END IF;
        ELSE
            RAISE EXCEPTION 'inbox_apply: unknown kind %', p_kind[i];
        END IF;
    END LOOP;
    END",
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
    let (t, c) = (
        format!("notifications_g{g}"),
        format!("inbox_comments_g{g}"),
    );
    // Drops the comments `which` selects (`{c}`'s rows) and their notifications.
    let mut drop = |which: &str, arg: Value| {
        out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM {t} WHERE seq IN (SELECT seq FROM {c} WHERE {which})"),
            vec![arg.clone()],
        )));
        out.push(Write::Stmt(Stmt::new(
            format!("DELETE FROM {c} WHERE {which}"),
            vec![arg],
        )));
    };
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
        } => {
            let args = || {
                vec![
                    Value::int(*seq as i64),
                    Value::uuid(*post_id),
                    Value::Uuid(addressee.map(Into::into)),
                    Value::Uuid(commenter.map(Into::into)),
                    Value::uuid(*answers),
                ]
            };
            // Whom the comment answers: the anonymous addressee, else the answered item's
            // named author.
            let target = format!(
                "COALESCE($3, (SELECT a.user_id FROM inbox_authors_g{g} a WHERE a.item_id = $5))"
            );
            // Every follower but the commenter; the addressee among them gets both reasons.
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "INSERT INTO {t} (user_id, seq, reply, followed) \
                     SELECT f.user_id, $1, COALESCE(f.user_id = {target}, FALSE), TRUE \
                     FROM follows_g{g} f \
                     WHERE f.post_id = $2 AND f.following AND ($4 IS NULL OR f.user_id <> $4)"
                ),
                args(),
            )));
            // The addressee who does not follow (any more) still hears of the reply.
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "INSERT INTO {t} (user_id, seq, reply, followed) \
                     SELECT x.target, $1, TRUE, FALSE FROM (SELECT {target} AS target) x \
                     WHERE x.target IS NOT NULL AND ($4 IS NULL OR x.target <> $4) \
                     AND $2 IS NOT NULL \
                     ON CONFLICT (user_id, seq) DO NOTHING"
                ),
                args(),
            )));
            // The comment's text, once, if it notified anybody.
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "INSERT INTO {c} (seq, post_id, comment_id, name, excerpt, created_at) \
                     SELECT $1, $2, $3, $4, $5, $6 \
                     WHERE EXISTS (SELECT 1 FROM {t} WHERE seq = $1)"
                ),
                vec![
                    Value::int(*seq as i64),
                    Value::uuid(*post_id),
                    Value::uuid(*comment_id),
                    Value::text(name),
                    Value::text(excerpt),
                    Value::time(at),
                ],
            )));
        }
        InboxChange::Notice {
            seq,
            post_id,
            comment_id,
            item,
            author,
            notice,
            reason,
            ends_at,
            at,
        } => {
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "INSERT INTO {t} (user_id, seq, reply, followed) \
                     SELECT x.target, $1, FALSE, FALSE FROM (SELECT COALESCE($2, \
                     (SELECT a.user_id FROM inbox_authors_g{g} a WHERE a.item_id = $3)) \
                     AS target) x WHERE x.target IS NOT NULL \
                     ON CONFLICT (user_id, seq) DO NOTHING"
                ),
                vec![
                    Value::int(*seq as i64),
                    Value::Uuid(author.map(Into::into)),
                    Value::uuid(*item),
                ],
            )));
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "INSERT INTO {c} (seq, post_id, comment_id, name, excerpt, created_at, \
                     notice, reason, ends_at) SELECT $1, $2, $3, '', '', $4, $5, $6, $7 \
                     WHERE EXISTS (SELECT 1 FROM {t} WHERE seq = $1)"
                ),
                vec![
                    Value::int(*seq as i64),
                    Value::uuid(*post_id),
                    Value::Uuid(comment_id.map(Into::into)),
                    Value::time(at),
                    Value::text(notice),
                    Value::text(reason),
                    Value::Time(*ends_at),
                ],
            )));
        }
        InboxChange::Prune { before } => drop("created_at < $1", Value::time(before)),
        InboxChange::Retract { comment_id } => drop("comment_id = $1", Value::uuid(*comment_id)),
        InboxChange::ForgetPost { post_id } => drop("post_id = $1", Value::uuid(*post_id)),
        InboxChange::ForgetUser { user_id } => {
            // A comment is kept while somebody's notification shows it.
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "DELETE FROM {c} WHERE seq IN (SELECT seq FROM {t} WHERE user_id = $1) \
                     AND NOT EXISTS (SELECT 1 FROM {t} n WHERE n.seq = {c}.seq \
                     AND n.user_id <> $1)"
                ),
                vec![Value::uuid(*user_id)],
            )));
            out.push(Write::Stmt(Stmt::new(
                format!("DELETE FROM {t} WHERE user_id = $1"),
                vec![Value::uuid(*user_id)],
            )));
        }
        _ => {}
    }
}

/// Before a notification's rows: the retention's mark moves to the highest sequence number
/// it is about to drop.
fn write_pruned(g: u32, change: &Change, out: &mut Vec<Write>) {
    if let Change::Inbox(InboxChange::Prune { before }) = change {
        out.push(Write::Stmt(Stmt::new(
            format!(
                "INSERT INTO inbox_pruned_g{g} (id, up_to) \
                 SELECT 1, MAX(seq) FROM inbox_comments_g{g} WHERE created_at < $1 \
                 HAVING MAX(seq) IS NOT NULL \
                 ON CONFLICT (id) DO UPDATE SET up_to = excluded.up_to"
            ),
            vec![Value::time(before)],
        )));
    }
}

const SELECT: &str = "n.seq, n.user_id, c.post_id, c.comment_id, c.name, c.excerpt, n.reply, \
     n.followed, c.created_at, c.notice, c.reason, c.ends_at \
     FROM notifications n JOIN inbox_comments c ON c.seq = n.seq";

/// The user's notifications before `before`, newest first.
pub(crate) fn page(user: UserId, before: Option<Position>, size: usize) -> Stmt {
    Stmt::new(
        format!("SELECT {SELECT} WHERE n.user_id = $1 AND n.seq < $2 ORDER BY n.seq DESC LIMIT $3"),
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
            "SELECT {SELECT} WHERE n.user_id = $1 AND n.seq > $2 AND n.seq <= $3 \
             ORDER BY n.seq LIMIT $4"
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
            "SELECT {SELECT} WHERE n.seq > $1 AND n.seq <= $2 ORDER BY n.seq, n.user_id LIMIT $3"
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
    let notice = match row.opt_text(9)? {
        Some(act) => {
            reasons.push("moderation");
            Some(NoticeView {
                act,
                reason: row.opt_text(10)?.unwrap_or_default(),
                ends_at: row.opt_time(11)?,
            })
        }
        None => None,
    };
    Ok(NotificationView {
        seq: row.int(0)? as Position,
        user_id: UserId::new(row.uuid(1)?),
        post_id: PostId::new(row.uuid(2)?),
        comment_id: row.opt_uuid(3)?.map(CommentId::new),
        name: row.text(4)?,
        excerpt: row.text(5)?,
        reasons,
        notice,
        created_at: row.time(8)?,
    })
}
