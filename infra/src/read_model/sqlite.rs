//! SQLite read models (the embedded default), in their own database file beside the log.
//!
//! One writer connection applies each projector batch and its checkpoint in a single
//! transaction; a pool of readers serves queries concurrently (WAL). Tables carry the
//! projection's version in their name (`feed_v1`), so a new version can be built beside the
//! live one.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use domain::{CommentId, Position, PostId, SessionId, UserId};
use projections::ports::Page;
use projections::views::{CommentView, PostView, SessionView, UserView};
use projections::{Change, ForumQueries, ReadModelError, ReadModelStore};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool, Transaction};
use uuid::Uuid;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS checkpoints (
    projection TEXT NOT NULL,
    version    INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (projection, version)
);
CREATE TABLE IF NOT EXISTS users_v1 (
    user_id       TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    email         TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    registered_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions_v1 (
    session_id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id    TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feed_v1 (
    post_id          TEXT PRIMARY KEY,
    position         INTEGER NOT NULL UNIQUE,
    author_name      TEXT NOT NULL,
    anonymous        INTEGER NOT NULL,
    title            TEXT,
    body             TEXT NOT NULL,
    tags             TEXT NOT NULL,
    comment_count    INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    last_activity_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS comments_v1 (
    comment_id  TEXT PRIMARY KEY,
    post_id     TEXT NOT NULL,
    position    INTEGER NOT NULL UNIQUE,
    author_name TEXT NOT NULL,
    anonymous   INTEGER NOT NULL,
    is_host     INTEGER NOT NULL,
    body        TEXT NOT NULL,
    reply_to    TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS comments_v1_post ON comments_v1 (post_id, position);
"#;

/// The tables of each projection, with the columns and order a dump lists them in.
const TABLES: &[(&str, &str, &str, &str)] = &[
    (
        "users",
        "users_v1",
        "user_id, username, email, is_admin, registered_at",
        "user_id",
    ),
    (
        "users",
        "sessions_v1",
        "session_id, token_hash, user_id, expires_at",
        "session_id",
    ),
    (
        "feed",
        "feed_v1",
        "post_id, position, author_name, anonymous, title, body, tags, comment_count, created_at, last_activity_at",
        "position",
    ),
    (
        "comments",
        "comments_v1",
        "comment_id, post_id, position, author_name, anonymous, is_host, body, reply_to, created_at",
        "position",
    ),
];

pub struct SqliteReadModels {
    writer: SqlitePool,
    reader: SqlitePool,
}

fn backend(e: sqlx::Error) -> ReadModelError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            ReadModelError::Unavailable(e.to_string())
        }
        other => ReadModelError::Backend(other.to_string()),
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, ReadModelError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ReadModelError::Backend(format!("bad timestamp {s:?}: {e}")))
}

fn uuid(s: &str) -> Result<Uuid, ReadModelError> {
    Uuid::from_str(s).map_err(|e| ReadModelError::Backend(format!("bad uuid {s:?}: {e}")))
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
            .foreign_keys(false);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&writer)
            .await
            .map_err(backend)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await
            .map_err(backend)?;
        Ok(Self { writer, reader })
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

async fn apply_one(
    tx: &mut Transaction<'_, sqlx::Sqlite>,
    change: &Change,
) -> Result<(), sqlx::Error> {
    match change {
        Change::InsertUser {
            user_id,
            username,
            email,
            registered_at,
        } => {
            sqlx::query("INSERT INTO users_v1 (user_id, username, email, registered_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(user_id.to_string())
                .bind(username)
                .bind(email)
                .bind(ts(registered_at))
                .execute(&mut **tx)
                .await?;
        }
        Change::SetAdmin { user_id } => {
            sqlx::query("UPDATE users_v1 SET is_admin = 1 WHERE user_id = ?")
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
            sqlx::query("INSERT INTO sessions_v1 (session_id, token_hash, user_id, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(session_id.to_string())
                .bind(token_hash)
                .bind(user_id.to_string())
                .bind(ts(expires_at))
                .execute(&mut **tx)
                .await?;
        }
        Change::EndSession { session_id } => {
            sqlx::query("DELETE FROM sessions_v1 WHERE session_id = ?")
                .bind(session_id.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Change::InsertPost {
            post_id,
            position,
            author_name,
            anonymous,
            title,
            body,
            tags,
            created_at,
        } => {
            sqlx::query(
                "INSERT INTO feed_v1 (post_id, position, author_name, anonymous, title, body, tags, created_at, last_activity_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(post_id.to_string())
            .bind(*position as i64)
            .bind(author_name)
            .bind(*anonymous)
            .bind(title)
            .bind(body)
            .bind(serde_json::to_string(tags).unwrap_or_else(|_| "[]".into()))
            .bind(ts(created_at))
            .bind(ts(created_at))
            .execute(&mut **tx)
            .await?;
        }
        Change::DeletePost { post_id } => {
            sqlx::query("DELETE FROM feed_v1 WHERE post_id = ?")
                .bind(post_id.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Change::CountComment { post_id, delta, at } => {
            sqlx::query(
                "UPDATE feed_v1 SET comment_count = comment_count + ?, \
                 last_activity_at = CASE WHEN ? > 0 THEN ? ELSE last_activity_at END WHERE post_id = ?",
            )
            .bind(delta)
            .bind(delta)
            .bind(ts(at))
            .bind(post_id.to_string())
            .execute(&mut **tx)
            .await?;
        }
        Change::InsertComment {
            comment_id,
            post_id,
            position,
            author_name,
            anonymous,
            is_host,
            body,
            reply_to,
            created_at,
        } => {
            sqlx::query(
                "INSERT INTO comments_v1 (comment_id, post_id, position, author_name, anonymous, is_host, body, reply_to, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(comment_id.to_string())
            .bind(post_id.to_string())
            .bind(*position as i64)
            .bind(author_name)
            .bind(*anonymous)
            .bind(*is_host)
            .bind(body)
            .bind(reply_to.map(|r| r.to_string()))
            .bind(ts(created_at))
            .execute(&mut **tx)
            .await?;
        }
        Change::DeleteComment { comment_id } => {
            sqlx::query("DELETE FROM comments_v1 WHERE comment_id = ?")
                .bind(comment_id.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Change::DeleteCommentsOf { post_id } => {
            sqlx::query("DELETE FROM comments_v1 WHERE post_id = ?")
                .bind(post_id.to_string())
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl ReadModelStore for SqliteReadModels {
    async fn checkpoint(&self, projection: &str, version: u32) -> Result<Position, ReadModelError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT position FROM checkpoints WHERE projection = ? AND version = ?")
                .bind(projection)
                .bind(version as i64)
                .fetch_optional(&self.writer)
                .await
                .map_err(backend)?;
        Ok(row.map_or(0, |(p,)| p as Position))
    }

    async fn apply(
        &self,
        projection: &str,
        version: u32,
        changes: &[Change],
        position: Position,
    ) -> Result<(), ReadModelError> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        for change in changes {
            apply_one(&mut tx, change).await.map_err(backend)?;
        }
        sqlx::query(
            "INSERT INTO checkpoints (projection, version, position) VALUES (?, ?, ?) \
             ON CONFLICT (projection, version) DO UPDATE SET position = excluded.position",
        )
        .bind(projection)
        .bind(version as i64)
        .bind(position as i64)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError> {
        let mut lines = Vec::new();
        for (_, table, columns, order) in TABLES.iter().filter(|(p, ..)| *p == projection) {
            let pairs: Vec<String> = columns.split(", ").map(|c| format!("'{c}', {c}")).collect();
            let sql = format!(
                "SELECT json_object({}) FROM {table} ORDER BY {order}",
                pairs.join(", ")
            );
            let rows: Vec<(String,)> = sqlx::query_as(&sql)
                .fetch_all(&self.reader)
                .await
                .map_err(backend)?;
            lines.extend(rows.into_iter().map(|(r,)| format!("{table} {r}")));
        }
        Ok(lines)
    }
}

const POST_COLUMNS: &str = "post_id, position, author_name, anonymous, title, body, tags, comment_count, created_at, last_activity_at";
const COMMENT_COLUMNS: &str =
    "comment_id, post_id, position, author_name, anonymous, is_host, body, reply_to, created_at";

fn post_view(row: &SqliteRow) -> Result<PostView, ReadModelError> {
    let tags: String = row.get("tags");
    Ok(PostView {
        post_id: PostId::new(uuid(row.get("post_id"))?),
        position: row.get::<i64, _>("position") as Position,
        author_name: row.get("author_name"),
        anonymous: row.get("anonymous"),
        title: row.get("title"),
        body: row.get("body"),
        tags: serde_json::from_str(&tags).map_err(|e| ReadModelError::Backend(e.to_string()))?,
        comment_count: row.get("comment_count"),
        created_at: parse_ts(row.get("created_at"))?,
        last_activity_at: parse_ts(row.get("last_activity_at"))?,
    })
}

fn comment_view(row: &SqliteRow) -> Result<CommentView, ReadModelError> {
    let reply_to: Option<String> = row.get("reply_to");
    Ok(CommentView {
        comment_id: CommentId::new(uuid(row.get("comment_id"))?),
        post_id: PostId::new(uuid(row.get("post_id"))?),
        position: row.get::<i64, _>("position") as Position,
        author_name: row.get("author_name"),
        anonymous: row.get("anonymous"),
        is_host: row.get("is_host"),
        body: row.get("body"),
        reply_to: reply_to
            .as_deref()
            .map(uuid)
            .transpose()?
            .map(CommentId::new),
        created_at: parse_ts(row.get("created_at"))?,
    })
}

fn user_view(row: &SqliteRow) -> Result<UserView, ReadModelError> {
    Ok(UserView {
        user_id: UserId::new(uuid(row.get("user_id"))?),
        username: row.get("username"),
        email: row.get("email"),
        is_admin: row.get("is_admin"),
        registered_at: parse_ts(row.get("registered_at"))?,
    })
}

fn limit(page: &Page) -> i64 {
    page.limit.clamp(1, 1000) as i64
}

#[async_trait]
impl ForumQueries for SqliteReadModels {
    async fn feed(&self, page: Page) -> Result<Vec<PostView>, ReadModelError> {
        let sql = format!(
            "SELECT {POST_COLUMNS} FROM feed_v1 WHERE position < ? ORDER BY position DESC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(page.cursor.map_or(i64::MAX, |c| c as i64))
            .bind(limit(&page))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(post_view).collect()
    }

    async fn post(&self, id: PostId) -> Result<Option<PostView>, ReadModelError> {
        let sql = format!("SELECT {POST_COLUMNS} FROM feed_v1 WHERE post_id = ?");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.as_ref().map(post_view).transpose()
    }

    async fn comments(&self, post: PostId, page: Page) -> Result<Vec<CommentView>, ReadModelError> {
        let sql = format!(
            "SELECT {COMMENT_COLUMNS} FROM comments_v1 WHERE post_id = ? AND position > ? ORDER BY position ASC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(post.to_string())
            .bind(page.cursor.map_or(0, |c| c as i64))
            .bind(limit(&page))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(comment_view).collect()
    }

    async fn comment(&self, id: CommentId) -> Result<Option<CommentView>, ReadModelError> {
        let sql = format!("SELECT {COMMENT_COLUMNS} FROM comments_v1 WHERE comment_id = ?");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.as_ref().map(comment_view).transpose()
    }

    async fn user(&self, id: UserId) -> Result<Option<UserView>, ReadModelError> {
        let row = sqlx::query("SELECT user_id, username, email, is_admin, registered_at FROM users_v1 WHERE user_id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_view).transpose()
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionView>, ReadModelError> {
        let row = sqlx::query(
            "SELECT s.session_id, s.expires_at, u.user_id, u.username, u.email, u.is_admin, u.registered_at \
             FROM sessions_v1 s JOIN users_v1 u ON u.user_id = s.user_id WHERE s.token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionView {
            session_id: SessionId::new(uuid(row.get("session_id"))?),
            user: user_view(&row)?,
            expires_at: parse_ts(row.get("expires_at"))?,
        }))
    }
}
