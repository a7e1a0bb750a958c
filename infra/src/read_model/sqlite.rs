//! SQLite read models (the embedded default), in their own database file beside the log.
//!
//! One writer connection applies each projector batch and its checkpoint in a single
//! transaction; a pool of readers serves queries concurrently (WAL). Tables carry the
//! projection's version in their name (`feed_v1`), so a new version can be built beside the
//! live one.

use std::path::Path;
use std::time::Duration;

use super::readers::{QueryError, Readers};
use super::stats::Stats;
use super::{Run, TABLES, backend, dump_query, parse_ts, tables_of, ts, uuid};
use async_trait::async_trait;
use domain::{CommentId, Position, PostId, SessionId, UserId};
use projections::ports::Page;
use projections::stats::StatsChange;
use projections::views::{CommentView, PostView, SessionSummary, SessionView, UserView};
use projections::{Change, ForumQueries, Generation, Promotion, ReadModelError, ReadModelStore};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool, Transaction};

/// Bookkeeping: every generation of every projection, its state and its checkpoint.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS generations (
    projection TEXT NOT NULL,
    number     INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    position   INTEGER NOT NULL DEFAULT 0,
    -- Retired generations keep their row (tables dropped) so numbers are never reused and a
    -- stale writer of an abandoned build can never write into a newer one.
    state      TEXT NOT NULL CHECK (state IN ('building', 'live', 'retired')),
    PRIMARY KEY (projection, number)
);
-- The Kafka relay's checkpoint: the last position the broker acknowledged.
CREATE TABLE IF NOT EXISTS relay_checkpoints (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"#;

/// Reader threads for the forum's pages: a few more than the cores, since a read may wait on
/// the disk; each holds a connection and its prepared statements.
const READER_THREADS: usize = 4;

pub struct SqliteReadModels {
    writer: SqlitePool,
    /// sqlx readers: dumps, tasks and stats queries.
    pub(super) reader: SqlitePool,
    /// The forum's pages and sessions, on threads of their own (see [`Readers`]).
    readers: Readers,
}

impl SqliteReadModels {
    /// Opens (creating if needed) the read-model database at `path`.
    pub async fn open(path: &Path) -> Result<Self, ReadModelError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Read models are rebuildable from the log, and the checkpoint commits with the
            // rows, so NORMAL (no fsync per commit) can lose only whole recent batches.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false)
            // Statement journals in memory, not in temporary files (see the event store).
            .pragma("temp_store", "memory");
        // No ping before each use (sqlx's default): a connection to a local file does not go
        // stale, and the ping was one more hand-off to the connection's worker thread per
        // query (7.7% of the server's samples under `reads`).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&writer)
            .await
            .map_err(backend)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await
            .map_err(backend)?;
        let readers = Readers::open(path, READER_THREADS)?;
        Ok(Self {
            writer,
            reader,
            readers,
        })
    }

    pub async fn close(&self) {
        self.readers.close();
        self.writer.close().await;
        self.reader.close().await;
    }
}

async fn apply_one(
    tx: &mut Transaction<'_, sqlx::Sqlite>,
    g: u32,
    change: &Change,
) -> Result<(), sqlx::Error> {
    match change {
        Change::InsertUser {
            user_id,
            username,
            email,
            registered_at,
        } => {
            sqlx::query(&format!("INSERT INTO users_g{g} (user_id, username, email, registered_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"))
                .bind(user_id.to_string())
                .bind(username)
                .bind(email)
                .bind(ts(registered_at))
                .execute(&mut **tx)
                .await?;
        }
        Change::SetAdmin { user_id } => {
            sqlx::query(&format!(
                "UPDATE users_g{g} SET is_admin = 1 WHERE user_id = ?"
            ))
            .bind(user_id.to_string())
            .execute(&mut **tx)
            .await?;
        }
        Change::InsertSession {
            session_id,
            user_id,
            token_hash,
            expires_at,
        } => {
            sqlx::query(&format!("INSERT INTO sessions_g{g} (session_id, token_hash, user_id, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"))
                .bind(session_id.to_string())
                .bind(token_hash)
                .bind(user_id.to_string())
                .bind(ts(expires_at))
                .execute(&mut **tx)
                .await?;
        }
        Change::EndSession { session_id } => {
            sqlx::query(&format!("DELETE FROM sessions_g{g} WHERE session_id = ?"))
                .bind(session_id.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Change::DeleteUser { user_id } => {
            for table in ["sessions", "users"] {
                sqlx::query(&format!("DELETE FROM {table}_g{g} WHERE user_id = ?"))
                    .bind(user_id.to_string())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Change::ForgetPostAuthor { user_id } | Change::ForgetCommentAuthor { user_id } => {
            let table = if matches!(change, Change::ForgetPostAuthor { .. }) {
                "feed"
            } else {
                "comments"
            };
            sqlx::query(&format!(
                "UPDATE {table}_g{g} SET author_name = ?, author_id = NULL WHERE author_id = ?"
            ))
            .bind(projections::DELETED_USER)
            .bind(user_id.to_string())
            .execute(&mut **tx)
            .await?;
        }
        Change::InsertPost {
            post_id,
            position,
            author_id,
            author_name,
            anonymous,
            title,
            body,
            tags,
            created_at,
        } => {
            sqlx::query(&format!(
                "INSERT INTO feed_g{g} (post_id, position, author_name, anonymous, title, body, tags, created_at, last_activity_at, author_id) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",))
            .bind(post_id.to_string())
            .bind(*position as i64)
            .bind(author_name)
            .bind(*anonymous)
            .bind(title)
            .bind(body)
            .bind(serde_json::to_string(tags).unwrap_or_else(|_| "[]".into()))
            .bind(ts(created_at))
            .bind(ts(created_at))
            .bind(author_id.map(|u| u.to_string()))
            .execute(&mut **tx)
            .await?;
        }
        Change::DeletePost { post_id } => {
            sqlx::query(&format!("DELETE FROM feed_g{g} WHERE post_id = ?"))
                .bind(post_id.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Change::CountComment {
            post_id,
            delta,
            active_at,
        } => {
            sqlx::query(&format!(
                "UPDATE feed_g{g} SET comment_count = comment_count + ?, \
                 last_activity_at = COALESCE(?, last_activity_at) WHERE post_id = ?",
            ))
            .bind(delta)
            .bind(active_at.as_ref().map(ts))
            .bind(post_id.to_string())
            .execute(&mut **tx)
            .await?;
        }
        Change::InsertComment {
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
        } => {
            sqlx::query(&format!(
                "INSERT INTO comments_g{g} (comment_id, post_id, position, author_name, anonymous, is_host, body, reply_to, created_at, author_id) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",))
            .bind(comment_id.to_string())
            .bind(post_id.to_string())
            .bind(*position as i64)
            .bind(author_name)
            .bind(*anonymous)
            .bind(*is_host)
            .bind(body)
            .bind(reply_to.map(|r| r.to_string()))
            .bind(ts(created_at))
            .bind(author_id.map(|u| u.to_string()))
            .execute(&mut **tx)
            .await?;
        }
        Change::DeleteComment { comment_id, .. } => {
            sqlx::query(&format!("DELETE FROM comments_g{g} WHERE comment_id = ?"))
                .bind(comment_id.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Change::DeleteCommentsOf { post_id } => {
            sqlx::query(&format!("DELETE FROM comments_g{g} WHERE post_id = ?"))
                .bind(post_id.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Change::Tasks(change) => apply_task_change(tx, g, change).await?,
        Change::Stats(change) => Stats::<Sqlite>::apply(&mut **tx, g, change).await?,
    }
    Ok(())
}

type Tx<'a> = Transaction<'a, sqlx::Sqlite>;

/// Applies `changes`, all of kind `kind`, with one statement that reads its rows from a JSON
/// array (`json_each`), in order; a run names each post or counter once (see `Run::first`).
async fn apply_run(
    tx: &mut Tx<'_>,
    g: u32,
    kind: Run,
    changes: &[Change],
) -> Result<(), sqlx::Error> {
    let mut rows = Vec::with_capacity(changes.len());
    for change in changes {
        let row = match change {
            Change::InsertComment {
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
            } => serde_json::json!([
                comment_id.to_string(),
                post_id.to_string(),
                *position as i64,
                author_name,
                anonymous,
                is_host,
                body,
                reply_to.map(|r| r.to_string()),
                ts(created_at),
                author_id.map(|u| u.to_string())
            ]),
            Change::CountComment {
                post_id,
                delta,
                active_at,
            } => serde_json::json!([post_id.to_string(), delta, active_at.as_ref().map(ts)]),
            Change::Stats(StatsChange::Count {
                day,
                metric,
                key,
                delta,
            }) => serde_json::json!([day.to_string(), metric.as_str(), key, delta]),
            Change::Stats(StatsChange::Active { day, user_id }) => {
                serde_json::json!([day.to_string(), user_id.to_string()])
            }
            other => {
                return Err(sqlx::Error::Protocol(format!(
                    "not a change of a run: {other:?}"
                )));
            }
        };
        rows.push(row);
    }
    // `WHERE true` tells SQLite's parser that `ON CONFLICT` is the upsert, not a join.
    let sql = match kind {
        Run::InsertComment => format!(
            "INSERT INTO comments_g{g} (comment_id, post_id, position, author_name, anonymous, is_host, body, reply_to, created_at, author_id) \
             SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, value->>8, value->>9 \
             FROM json_each(?) WHERE true ON CONFLICT DO NOTHING"
        ),
        Run::CountComment => format!(
            "UPDATE feed_g{g} SET comment_count = comment_count + u.delta, \
             last_activity_at = COALESCE(u.active_at, last_activity_at) \
             FROM (SELECT value->>0 AS post_id, value->>1 AS delta, value->>2 AS active_at FROM json_each(?)) AS u \
             WHERE feed_g{g}.post_id = u.post_id"
        ),
        Run::StatsCount => format!(
            "INSERT INTO stats_counters_g{g} (day, metric, key, value) \
             SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?) WHERE true \
             ON CONFLICT (day, metric, key) DO UPDATE SET value = stats_counters_g{g}.value + excluded.value"
        ),
        Run::StatsActive => format!(
            "INSERT INTO stats_active_g{g} (day, user_id) \
             SELECT value->>0, value->>1 FROM json_each(?) WHERE true ON CONFLICT DO NOTHING"
        ),
    };
    sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn generation_row(
    tx: &mut Tx<'_>,
    projection: &str,
    number: u32,
) -> Result<Option<(u32, Position, String)>, sqlx::Error> {
    let row: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT version, position, state FROM generations WHERE projection = ? AND number = ?",
    )
    .bind(projection)
    .bind(i64::from(number))
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(v, p, s)| (v as u32, p as Position, s)))
}

async fn retire_generation(
    tx: &mut Tx<'_>,
    projection: &str,
    number: u32,
) -> Result<(), sqlx::Error> {
    for table in TABLES.iter().filter(|t| t.projection == projection) {
        sqlx::query(&table.drop_statement(number))
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("UPDATE generations SET state = 'retired' WHERE projection = ? AND number = ?")
        .bind(projection)
        .bind(i64::from(number))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl ReadModelStore for SqliteReadModels {
    async fn live(&self, projection: &str) -> Result<Option<Generation>, ReadModelError> {
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT number, version, position FROM generations WHERE projection = ? AND state = 'live'",
        )
        .bind(projection)
        .fetch_optional(&self.writer)
        .await
        .map_err(backend)?;
        Ok(row.map(|(n, v, p)| Generation {
            number: n as u32,
            version: v as u32,
            position: p as Position,
        }))
    }

    async fn create_generation(
        &self,
        projection: &str,
        version: u32,
    ) -> Result<Generation, ReadModelError> {
        let tables = tables_of(projection)?;
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let unfinished: Vec<(i64,)> = sqlx::query_as(
            "SELECT number FROM generations WHERE projection = ? AND state = 'building'",
        )
        .bind(projection)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        for (n,) in unfinished {
            retire_generation(&mut tx, projection, n as u32)
                .await
                .map_err(backend)?;
        }
        let (last,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(number), 0) FROM generations WHERE projection = ?")
                .bind(projection)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
        let number = last as u32 + 1;
        for table in tables {
            for statement in table.create_statements(number, table.sqlite) {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
        }
        sqlx::query("INSERT INTO generations (projection, number, version, position, state) VALUES (?, ?, ?, 0, 'building')")
            .bind(projection)
            .bind(i64::from(number))
            .bind(i64::from(version))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Generation {
            number,
            version,
            position: 0,
        })
    }

    async fn apply(
        &self,
        projection: &str,
        generation: u32,
        changes: &[Change],
        from: Position,
        to: Position,
    ) -> Result<(), ReadModelError> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        // Moving the checkpoint first takes the write lock on the generation's row at once, so
        // a concurrent projector or promotion waits here rather than deadlocking later.
        let moved = sqlx::query("UPDATE generations SET position = ? WHERE projection = ? AND number = ? AND position = ? AND state <> 'retired'")
            .bind(to as i64)
            .bind(projection)
            .bind(i64::from(generation))
            .bind(from as i64)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if moved.rows_affected() != 1 {
            let row: Option<(i64, String)> = sqlx::query_as(
                "SELECT position, state FROM generations WHERE projection = ? AND number = ?",
            )
            .bind(projection)
            .bind(i64::from(generation))
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
            return Err(match row {
                Some((position, state)) if state != "retired" => ReadModelError::Moved {
                    projection: projection.to_owned(),
                    generation,
                    position: position as Position,
                },
                _ => ReadModelError::Superseded {
                    projection: projection.to_owned(),
                    generation,
                },
            });
        }
        // Runs of one kind of change (new comments, comment counts, statistics counters and
        // activity marks) go in as one statement each, their rows as one JSON array: each
        // statement is a hand-off to the connection's thread.
        let mut rest = changes;
        while let Some(first) = rest.first() {
            let (kind, run) = Run::first(rest);
            match kind {
                Some(kind) if run > 1 => apply_run(&mut tx, generation, kind, &rest[..run]).await,
                _ => apply_one(&mut tx, generation, first).await,
            }
            .map_err(backend)?;
            rest = &rest[run..];
        }
        tx.commit().await.map_err(backend)
    }

    async fn promote(
        &self,
        projection: &str,
        generation: u32,
    ) -> Result<Promotion, ReadModelError> {
        let tables = tables_of(projection)?;
        let mut tx = self.writer.begin().await.map_err(backend)?;
        let row = generation_row(&mut tx, projection, generation)
            .await
            .map_err(backend)?;
        let Some((_, position, state)) = row.filter(|(_, _, state)| state != "retired") else {
            return Err(ReadModelError::Superseded {
                projection: projection.to_owned(),
                generation,
            });
        };
        if state == "live" {
            return Ok(Promotion::Done);
        }
        let live: Option<(i64, i64)> = sqlx::query_as(
            "SELECT number, position FROM generations WHERE projection = ? AND state = 'live'",
        )
        .bind(projection)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some((_, live_position)) = live
            && live_position as Position > position
        {
            return Ok(Promotion::Behind {
                live_position: live_position as Position,
            });
        }
        // Views first, then the old tables: all in this transaction, so readers see either
        // the old generation or the new one, never a mix or nothing.
        for table in tables {
            for statement in table.view_statements(generation) {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
        }
        if let Some((old, _)) = live {
            retire_generation(&mut tx, projection, old as u32)
                .await
                .map_err(backend)?;
        }
        sqlx::query("UPDATE generations SET state = 'live' WHERE projection = ? AND number = ?")
            .bind(projection)
            .bind(i64::from(generation))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Promotion::Done)
    }

    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError> {
        let mut lines = Vec::new();
        for table in tables_of(projection)? {
            let sql = dump_query(table, "json_object", "");
            let rows: Vec<(String,)> = sqlx::query_as(&sql)
                .fetch_all(&self.reader)
                .await
                .map_err(backend)?;
            lines.extend(rows.into_iter().map(|(r,)| format!("{} {r}", table.name)));
        }
        Ok(lines)
    }
}

fn post_view(row: &rusqlite::Row<'_>) -> Result<PostView, QueryError> {
    let tags: String = row.get(6)?;
    Ok(PostView {
        post_id: PostId::new(uuid(&row.get::<_, String>(0)?)?),
        position: row.get::<_, i64>(1)? as Position,
        author_name: row.get(2)?,
        anonymous: row.get(3)?,
        title: row.get(4)?,
        body: row.get(5)?,
        tags: serde_json::from_str(&tags).map_err(|e| ReadModelError::Backend(e.to_string()))?,
        comment_count: row.get(7)?,
        created_at: parse_ts(&row.get::<_, String>(8)?)?,
        last_activity_at: parse_ts(&row.get::<_, String>(9)?)?,
    })
}

fn comment_view(row: &rusqlite::Row<'_>) -> Result<CommentView, QueryError> {
    let reply_to: Option<String> = row.get(7)?;
    Ok(CommentView {
        comment_id: CommentId::new(uuid(&row.get::<_, String>(0)?)?),
        post_id: PostId::new(uuid(&row.get::<_, String>(1)?)?),
        position: row.get::<_, i64>(2)? as Position,
        author_name: row.get(3)?,
        anonymous: row.get(4)?,
        is_host: row.get(5)?,
        body: row.get(6)?,
        reply_to: reply_to
            .as_deref()
            .map(uuid)
            .transpose()?
            .map(CommentId::new),
        created_at: parse_ts(&row.get::<_, String>(8)?)?,
    })
}

/// A user from the row's columns `first..first + 5` (user_id, username, email, is_admin,
/// registered_at).
fn user_view(row: &rusqlite::Row<'_>, first: usize) -> Result<UserView, QueryError> {
    Ok(UserView {
        user_id: UserId::new(uuid(&row.get::<_, String>(first)?)?),
        username: row.get(first + 1)?,
        email: row.get(first + 2)?,
        is_admin: row.get(first + 3)?,
        registered_at: parse_ts(&row.get::<_, String>(first + 4)?)?,
    })
}

/// Every row of a prepared query, each mapped by `view`.
fn all<T>(
    connection: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    view: impl Fn(&rusqlite::Row<'_>) -> Result<T, QueryError>,
) -> Result<Vec<T>, QueryError> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(view(row)?);
    }
    Ok(out)
}

/// The first row of a prepared query, if any, mapped by `view`.
fn first<T>(
    connection: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    view: impl Fn(&rusqlite::Row<'_>) -> Result<T, QueryError>,
) -> Result<Option<T>, QueryError> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    rows.next()?.map(view).transpose()
}

/// A post's comments page, on a reader's connection.
fn comment_page(
    connection: &rusqlite::Connection,
    post: PostId,
    page: &Page,
) -> Result<Vec<CommentView>, QueryError> {
    let after = page.cursor.map_or(0, |c| c as i64);
    all(
        connection,
        COMMENT_PAGE,
        rusqlite::params![post.to_string(), after, limit(page)],
        comment_view,
    )
}

fn limit(page: &Page) -> i64 {
    page.limit.clamp(1, 1000) as i64
}

const FEED_PAGE: &str = "SELECT post_id, position, author_name, anonymous, title, body, tags, comment_count, created_at, last_activity_at \
     FROM feed WHERE position < ?1 ORDER BY position DESC LIMIT ?2";
const POST: &str = "SELECT post_id, position, author_name, anonymous, title, body, tags, comment_count, created_at, last_activity_at \
     FROM feed WHERE post_id = ?1";
const COMMENT_PAGE: &str = "SELECT comment_id, post_id, position, author_name, anonymous, is_host, body, reply_to, created_at \
     FROM comments WHERE post_id = ?1 AND position > ?2 ORDER BY position ASC LIMIT ?3";
const LIVE_POST: &str = "SELECT 1 FROM feed WHERE post_id = ?1";
const COMMENT: &str = "SELECT comment_id, post_id, position, author_name, anonymous, is_host, body, reply_to, created_at \
     FROM comments WHERE comment_id = ?1";
const USER: &str =
    "SELECT user_id, username, email, is_admin, registered_at FROM users WHERE user_id = ?1";
const SESSION: &str = "SELECT s.session_id, s.expires_at, u.user_id, u.username, u.email, u.is_admin, u.registered_at \
     FROM sessions s JOIN users u ON u.user_id = s.user_id WHERE s.token_hash = ?1";
const SESSIONS_OF: &str =
    "SELECT session_id, expires_at FROM sessions WHERE user_id = ?1 ORDER BY session_id DESC";

#[async_trait]
impl ForumQueries for SqliteReadModels {
    async fn feed(&self, page: Page) -> Result<Vec<PostView>, ReadModelError> {
        let before = page.cursor.map_or(i64::MAX, |c| c as i64);
        let limit = limit(&page);
        self.readers
            .run(move |c| all(c, FEED_PAGE, (before, limit), post_view))
            .await
    }

    async fn post(&self, id: PostId) -> Result<Option<PostView>, ReadModelError> {
        self.readers
            .run(move |c| first(c, POST, [id.to_string()], post_view))
            .await
    }

    async fn comments(&self, post: PostId, page: Page) -> Result<Vec<CommentView>, ReadModelError> {
        self.readers
            .run(move |c| comment_page(c, post, &page))
            .await
    }

    async fn comments_of_live_post(
        &self,
        post: PostId,
        page: Page,
    ) -> Result<Option<Vec<CommentView>>, ReadModelError> {
        self.readers
            .run(move |c| {
                let mut live = c.prepare_cached(LIVE_POST)?;
                if !live.exists([post.to_string()])? {
                    return Ok(None);
                }
                comment_page(c, post, &page).map(Some)
            })
            .await
    }

    async fn comment(&self, id: CommentId) -> Result<Option<CommentView>, ReadModelError> {
        self.readers
            .run(move |c| first(c, COMMENT, [id.to_string()], comment_view))
            .await
    }

    async fn user(&self, id: UserId) -> Result<Option<UserView>, ReadModelError> {
        self.readers
            .run(move |c| first(c, USER, [id.to_string()], |row| user_view(row, 0)))
            .await
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionView>, ReadModelError> {
        let token_hash = token_hash.to_owned();
        self.readers
            .run(move |c| {
                first(c, SESSION, [token_hash], |row| {
                    Ok(SessionView {
                        session_id: SessionId::new(uuid(&row.get::<_, String>(0)?)?),
                        expires_at: parse_ts(&row.get::<_, String>(1)?)?,
                        user: user_view(row, 2)?,
                    })
                })
            })
            .await
    }

    async fn sessions_of(&self, user: UserId) -> Result<Vec<SessionSummary>, ReadModelError> {
        self.readers
            .run(move |c| {
                all(c, SESSIONS_OF, [user.to_string()], |row| {
                    Ok(SessionSummary {
                        session_id: SessionId::new(uuid(&row.get::<_, String>(0)?)?),
                        expires_at: parse_ts(&row.get::<_, String>(1)?)?,
                    })
                })
            })
            .await
    }
}

#[async_trait]
impl crate::kafka::RelayCheckpoints for SqliteReadModels {
    async fn relay_checkpoint(&self, name: &str) -> Result<Position, ReadModelError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM relay_checkpoints WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.writer)
                .await
                .map_err(backend)?;
        Ok(position.unwrap_or(0).max(0) as Position)
    }

    async fn save_relay_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> Result<(), ReadModelError> {
        sqlx::query(
            "INSERT INTO relay_checkpoints (name, position) VALUES (?, ?) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position \
             WHERE excluded.position > relay_checkpoints.position",
        )
        .bind(name)
        .bind(i64::try_from(position).map_err(|e| ReadModelError::Backend(e.to_string()))?)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        Ok(())
    }
}

super::tasks::tasks_sql!(
    SqliteReadModels,
    sqlx::Sqlite,
    SqliteRow,
    super::tasks::Dialect::Sqlite,
    reader
);
