//! `notifications`: each user's inbox (private: read by its owner alone). The rows written
//! are the replies and the moderation notices, one per person and item, keyed by the item's
//! position (`seq`). The notifications of following ("followed") are not written: they are
//! read from the comments kept here and the stretches in which each user followed each post
//! ([`super::follows::SPANS`]), so a comment costs the same whoever follows its post.

use std::collections::HashSet;

use domain::{CommentId, Position, PostId, UserId};
use projections::inbox::{NoticeView, NotificationView, UNREAD_CAP};
use projections::{Change, InboxChange, ReadModelError};

use super::{Function, Table, limit, no_run};
use crate::read_model::Run;
use crate::read_model::sql::{Col, Dialect, Row, Stmt, Ty, Value, Write, col};

const COLUMNS: &[Col] = &[
    col("user_id", Ty::Uuid, "NOT NULL"),
    col("seq", Ty::Int, "NOT NULL"),
    // A reply to the user's item (else a moderation notice).
    col("reply", Ty::Bool, "NOT NULL"),
];

/// One row per reply and person addressed, and per notice; small (a comment's text and
/// names are in [`COMMENTS`], once).
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

/// Each notified comment once: what its notifications show, and who wrote it (a follower is
/// not told of their own comments). A row is here exactly while some notification refers to
/// it, written or followed (so a rebuild, which never notified a user who left, agrees).
pub(crate) const COMMENTS: Table = Table {
    projection: "inbox",
    name: "inbox_comments",
    columns: &[
        col("seq", Ty::Int, "PRIMARY KEY"),
        col("post_id", Ty::Uuid, "NOT NULL"),
        // NULL for a notice about a post.
        col("comment_id", Ty::Uuid, ""),
        // The commenter (NULL for a notice, or once they left).
        col("commenter", Ty::Uuid, ""),
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
        "CREATE INDEX {t}_post ON {t} (post_id, seq)",
        "CREATE INDEX {t}_created ON {t} (created_at)",
        "CREATE INDEX {t}_commenter ON {t} (commenter)",
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
/// [`APPLY`], which writes on the server what [`write`]'s statements write, with at most five
/// statements for the whole run: a comment costs no round trips of its own (they were four or
/// five per comment, and cost the `comments` load over a quarter of its rate), nor statements
/// of its own (a loop over the rows cost PostgreSQL 58 µs per comment). SQLite, in process,
/// takes them one by one.
///
/// Each kind of row goes in arrays of its own, so that each statement reads only its rows
/// (when every statement unnested every row, the statements that wrote nothing cost as much as
/// those that did), and the follows go once per user and post: the first, as taking them in
/// order keeps.
fn run(d: Dialect, g: u32, kind: Run, changes: &[Change]) -> Option<Stmt> {
    if d != Dialect::Postgres || kind != Run::Inbox {
        return None;
    }
    let mut authors: [Vec<Value>; 3] = Default::default();
    let mut follows: [Vec<Value>; 3] = Default::default();
    let mut notified: [Vec<Value>; 9] = Default::default();
    let mut followed = HashSet::new();
    fn push(columns: &mut [Vec<Value>], row: Vec<Value>) {
        for (column, value) in columns.iter_mut().zip(row) {
            column.push(value);
        }
    }
    for change in changes {
        let Change::Inbox(change) = change else {
            return None;
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
            } => push(
                &mut notified,
                vec![
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
            ),
            InboxChange::AutoFollow {
                post_id,
                user_id,
                position,
            } => {
                if followed.insert((*user_id, *post_id)) {
                    push(
                        &mut follows,
                        vec![
                            Value::uuid(*user_id),
                            Value::uuid(*post_id),
                            Value::int(*position as i64),
                        ],
                    );
                }
            }
            InboxChange::NamedAuthor {
                item,
                post_id,
                user_id,
            } => push(
                &mut authors,
                vec![
                    Value::uuid(*item),
                    Value::uuid(*post_id),
                    Value::uuid(*user_id),
                ],
            ),
            _ => return None,
        }
    }
    let columns = authors.into_iter().chain(follows).chain(notified).collect();
    Some(APPLY.call(g, columns))
}

/// What [`write`]'s statements for a notified comment, a follow on commenting and a named
/// author write, on PostgreSQL's side and set-based (see [`run`]), from three sets of arrays
/// (row `i` of a set is one change): the named authors (`a_`: the item, its post, its
/// author), the follows on commenting (`f_`: the user, the post, the comment's position; at
/// most one per user and post), and the comments (`n_`: position, post, id, commenter,
/// anonymous addressee, the item answered, the commenter's name, excerpt, time).
const APPLY: Function = Function {
    name: "inbox_apply_g{g}",
    params: &[
        ("a_item", Ty::Uuid),
        ("a_post", Ty::Uuid),
        ("a_user", Ty::Uuid),
        ("f_user", Ty::Uuid),
        ("f_post", Ty::Uuid),
        ("f_seq", Ty::Int),
        ("n_seq", Ty::Int),
        ("n_post", Ty::Uuid),
        ("n_item", Ty::Uuid),
        ("n_user", Ty::Uuid),
        ("n_addressee", Ty::Uuid),
        ("n_answers", Ty::Uuid),
        ("n_name", Ty::Text),
        ("n_excerpt", Ty::Text),
        ("n_at", Ty::Time),
    ],
    body: "BEGIN
    -- Set-based, in an order that gives what taking the rows one by one gives: a reply reads
    -- the named author of an earlier item (so all authors go first), and a comment counts the
    -- stretches of following that began before it (`since < seq`: the run only opens them).
    IF cardinality(a_item) > 0 THEN
        INSERT INTO inbox_authors_g{g} (item_id, post_id, user_id)
        SELECT r.item, r.post, r.usr
        FROM UNNEST(a_item, a_post, a_user) WITH ORDINALITY AS r(item, post, usr, n)
        ORDER BY r.n
        ON CONFLICT (item_id) DO NOTHING;
    END IF;
    IF cardinality(f_user) > 0 THEN
        INSERT INTO follow_spans_g{g} (user_id, post_id, since)
        SELECT r.usr, r.post, r.seq FROM UNNEST(f_user, f_post, f_seq) AS r(usr, post, seq)
        WHERE NOT EXISTS (SELECT 1 FROM follows_g{g} f
            WHERE f.user_id = r.usr AND f.post_id = r.post);
        INSERT INTO follows_g{g} (user_id, post_id, following, explicit, position)
        SELECT r.usr, r.post, TRUE, FALSE, r.seq
        FROM UNNEST(f_user, f_post, f_seq) AS r(usr, post, seq)
        ON CONFLICT (user_id, post_id) DO NOTHING;
    END IF;
    IF cardinality(n_seq) > 0 THEN
        INSERT INTO notifications_g{g} (user_id, seq, reply)
        SELECT t.target, t.seq, TRUE FROM (
            SELECT r.seq, r.usr, COALESCE(r.addressee, a.user_id) AS target
            FROM UNNEST(n_seq, n_user, n_addressee, n_answers)
                AS r(seq, usr, addressee, answers)
            -- One probe of the index per comment (`LIMIT 1` keeps the planner from turning
            -- this into a plain join, which hashed the whole table of authors on every call:
            -- 2.4 ms against 0.2 for a run of 108 comments beside 8 000 authors).
            LEFT JOIN LATERAL (SELECT x.user_id FROM inbox_authors_g{g} x
                WHERE x.item_id = r.answers LIMIT 1) a ON TRUE) t
        WHERE t.target IS NOT NULL AND (t.usr IS NULL OR t.target <> t.usr)
        ON CONFLICT (user_id, seq) DO NOTHING;
        INSERT INTO inbox_comments_g{g}
            (seq, post_id, comment_id, commenter, name, excerpt, created_at)
        SELECT r.seq, r.post, r.item, r.usr, r.name, r.excerpt, r.at
        FROM UNNEST(n_seq, n_post, n_item, n_user, n_name, n_excerpt, n_at)
            AS r(seq, post, item, usr, name, excerpt, at)
        WHERE EXISTS (SELECT 1 FROM notifications_g{g} x WHERE x.seq = r.seq)
            OR EXISTS (SELECT 1 FROM follow_spans_g{g} f WHERE f.post_id = r.post
                AND f.since < r.seq AND f.ended IS NULL
                AND (r.usr IS NULL OR f.user_id <> r.usr));
    END IF;
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
            // Whom the comment answers: the anonymous addressee, else the answered item's
            // named author. They hear of the reply, following or not; the followers are not
            // written (see [`rows`]).
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "INSERT INTO {t} (user_id, seq, reply) \
                     SELECT x.target, $1, TRUE FROM (SELECT COALESCE($3, \
                     (SELECT a.user_id FROM inbox_authors_g{g} a WHERE a.item_id = $5)) \
                     AS target) x \
                     WHERE x.target IS NOT NULL AND ($4 IS NULL OR x.target <> $4) \
                     AND $2 IS NOT NULL \
                     ON CONFLICT (user_id, seq) DO NOTHING"
                ),
                vec![
                    Value::int(*seq as i64),
                    Value::uuid(*post_id),
                    Value::Uuid(addressee.map(Into::into)),
                    Value::Uuid(commenter.map(Into::into)),
                    Value::uuid(*answers),
                ],
            )));
            // The comment, once, if it notifies anybody: the addressee, or someone following
            // the post but the commenter.
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "INSERT INTO {c} \
                     (seq, post_id, comment_id, commenter, name, excerpt, created_at) \
                     SELECT $1, $2, $3, $4, $5, $6, $7 \
                     WHERE EXISTS (SELECT 1 FROM {t} WHERE seq = $1) \
                     OR EXISTS (SELECT 1 FROM follow_spans_g{g} f WHERE f.post_id = $2 \
                     AND f.ended IS NULL AND ($4 IS NULL OR f.user_id <> $4))"
                ),
                vec![
                    Value::int(*seq as i64),
                    Value::uuid(*post_id),
                    Value::uuid(*comment_id),
                    Value::Uuid(commenter.map(Into::into)),
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
                    "INSERT INTO {t} (user_id, seq, reply) \
                     SELECT x.target, $1, FALSE FROM (SELECT COALESCE($2, \
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
            // A comment is kept while somebody's notification shows it: one written for
            // somebody else, or a stretch of somebody else's following that holds it. Read
            // before the user's rows and stretches go (the follows are written after this).
            let s = format!("follow_spans_g{g}");
            out.push(Write::Stmt(Stmt::new(
                format!(
                    "DELETE FROM {c} WHERE (seq IN (SELECT seq FROM {t} WHERE user_id = $1) \
                     OR post_id IN (SELECT post_id FROM {s} WHERE user_id = $1)) \
                     AND NOT EXISTS (SELECT 1 FROM {t} n WHERE n.seq = {c}.seq \
                     AND n.user_id <> $1) \
                     AND ({c}.notice IS NOT NULL OR NOT EXISTS (SELECT 1 FROM {s} f \
                     WHERE f.post_id = {c}.post_id AND f.user_id <> $1 \
                     AND f.since < {c}.seq AND (f.ended IS NULL OR {c}.seq < f.ended) \
                     AND ({c}.commenter IS NULL OR f.user_id <> {c}.commenter)))"
                ),
                vec![Value::uuid(*user_id)],
            )));
            // What they wrote no longer says who they were.
            out.push(Write::Stmt(Stmt::new(
                format!("UPDATE {c} SET commenter = NULL WHERE commenter = $1"),
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

/// A user's notifications, as rows `(seq, user_id, reply, followed)`: those written
/// (replies and notices), and the comments a stretch of their following holds, but their own.
/// `who` and `seqs` are conditions on a user id column and a sequence column, `{x}` standing for
/// the table; `tail` ends each half (an order and a limit: the first rows of the whole are among
/// the first of each half, as each half has a row for a person and sequence at most once).
fn rows(who: &str, seqs: &str, tail: &str) -> String {
    let (n_who, n_seqs) = (who.replace("{x}", "n"), seqs.replace("{x}", "n"));
    let (f_who, c_seqs) = (who.replace("{x}", "f"), seqs.replace("{x}", "c"));
    format!(
        "SELECT * FROM (SELECT n.seq, n.user_id, n.reply, FALSE AS followed \
         FROM notifications n WHERE {n_who} AND {n_seqs} {tail}) w \
         UNION ALL \
         SELECT * FROM (SELECT c.seq, f.user_id, FALSE AS reply, TRUE AS followed \
         FROM follow_spans f JOIN inbox_comments c ON c.post_id = f.post_id \
         AND f.since < c.seq AND (f.ended IS NULL OR c.seq < f.ended) \
         WHERE {f_who} AND {c_seqs} AND c.notice IS NULL \
         AND (c.commenter IS NULL OR c.commenter <> f.user_id) {tail}) r"
    )
}

/// [`rows`] merged (one notification per person and comment, with both reasons when both
/// apply) and shown with the comment, in `order`, at most the bound `$limit` says.
fn select(who: &str, seqs: &str, order: &str, limit: &str) -> String {
    // Unqualified, `seq` and `user_id` name one column in either half.
    let tail = format!("ORDER BY {} LIMIT {limit}", order.replace("{x}", "seq"));
    let rows = rows(who, seqs, &tail);
    format!(
        "SELECT g.seq, g.user_id, c.post_id, c.comment_id, c.name, c.excerpt, g.reply, \
         g.followed, c.created_at, c.notice, c.reason, c.ends_at \
         FROM (SELECT u.seq, u.user_id, \
         MAX(CASE WHEN u.reply THEN 1 ELSE 0 END) = 1 AS reply, \
         MAX(CASE WHEN u.followed THEN 1 ELSE 0 END) = 1 AS followed \
         FROM ({rows}) u GROUP BY u.seq, u.user_id) g \
         JOIN inbox_comments c ON c.seq = g.seq \
         ORDER BY {} LIMIT {limit}",
        order.replace("{x}", "g.seq")
    )
}

/// The user's notifications before `before`, newest first.
pub(crate) fn page(user: UserId, before: Option<Position>, size: usize) -> Stmt {
    Stmt::new(
        select("{x}.user_id = $1", "{x}.seq < $2", "{x} DESC", "$3"),
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
        select(
            "{x}.user_id = $1",
            "{x}.seq > $2 AND {x}.seq <= $3",
            "{x}",
            "$4",
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
        select(
            "TRUE",
            "{x}.seq > $1 AND {x}.seq <= $2",
            "{x}, user_id",
            "$3",
        ),
        vec![
            Value::int(after as i64),
            Value::int(up_to as i64),
            Value::int(size.clamp(1, 100_000) as i64),
        ],
    )
}

/// The user's read mark and unread count, in one row. The count stops at [`UNREAD_CAP`], so
/// it reads at most that many notifications.
pub(crate) fn state(user: UserId) -> Stmt {
    let mark = "COALESCE((SELECT read_up_to FROM inbox_marks WHERE user_id = $1), 0)";
    Stmt::new(
        format!(
            "SELECT {mark}, (SELECT COUNT(*) FROM \
             (SELECT DISTINCT u.seq FROM ({}) u LIMIT {UNREAD_CAP}) n)",
            rows("{x}.user_id = $1", &format!("{{x}}.seq > {mark}"), "")
        ),
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
