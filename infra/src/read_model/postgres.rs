//! PostgreSQL read models: the same projections and generations as the SQLite store, with
//! PostgreSQL's types (UUID, TIMESTAMPTZ, BOOLEAN, TEXT[]) and its locks for concurrent writers.
//!
//! Generations work as in [`super::sqlite`]: tables `<name>_g<n>`, views `<name>` on the live
//! one, switched in one transaction. Concurrency between a projector applying a batch and a
//! rebuild promoting a new generation is settled on the `generations` rows: `apply` reads its
//! row `FOR SHARE` and `promote` locks both rows `FOR UPDATE`, so a batch either commits before
//! the switch (and the new generation must catch up with it) or sees its generation retired.

use std::time::Duration;

use super::stats::Stats;
use super::{Column, Run, TABLES, backend, dump_query, retry_transient, tables_of};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{CommentId, Position, PostId, SessionId, UserId};
use projections::ports::Page;
use projections::stats::StatsChange;
use projections::views::{CommentView, PostView, SessionSummary, SessionView, UserView};
use projections::{Change, ForumQueries, Generation, Promotion, ReadModelError, ReadModelStore};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

pub struct PostgresReadModels {
    pub(super) pool: PgPool,
}

impl PostgresReadModels {
    /// Connects and creates the bookkeeping table if missing.
    pub async fn connect(url: &str) -> Result<Self, ReadModelError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| {
                ReadModelError::Unavailable(format!("cannot connect to PostgreSQL: {e}"))
            })?;
        let mut conn = pool.acquire().await.map_err(backend)?;
        crate::migrations::migrate_postgres(&mut conn)
            .await
            .map_err(|e| ReadModelError::Backend(e.to_string()))?;
        drop(conn);
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

type Tx<'a> = Transaction<'a, Postgres>;

/// Serialises generation bookkeeping of one projection across processes.
async fn lock_projection(tx: &mut Tx<'_>, projection: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('treehole.read_models.' || $1))")
        .bind(projection)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn retire(tx: &mut Tx<'_>, projection: &str, number: i32) -> Result<(), sqlx::Error> {
    for table in TABLES.iter().filter(|t| t.projection == projection) {
        sqlx::query(&table.drop_statement(number as u32))
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("UPDATE generations SET state = 'retired' WHERE projection = $1 AND number = $2")
        .bind(projection)
        .bind(number)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Run {
    /// Applies `changes`, all of this kind.
    async fn apply(self, tx: &mut Tx<'_>, g: u32, changes: &[Change]) -> Result<(), sqlx::Error> {
        match self {
            Run::InsertComment => insert_comments(tx, g, changes).await,
            Run::CountComment => count_comments(tx, g, changes).await,
            Run::StatsCount => count_stats(tx, g, changes).await,
            Run::StatsActive => mark_active(tx, g, changes).await,
        }
    }
}

/// Many `CountComment` changes, one per post (see `Run::first`), in one `UPDATE ... FROM UNNEST`.
async fn count_comments(tx: &mut Tx<'_>, g: u32, changes: &[Change]) -> Result<(), sqlx::Error> {
    let (mut posts, mut deltas, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for change in changes {
        if let Change::CountComment {
            post_id,
            delta,
            active_at,
        } = change
        {
            posts.push(post_id.as_uuid());
            deltas.push(*delta);
            times.push(*active_at);
        }
    }
    sqlx::query(&format!(
        "UPDATE feed_g{g} AS f SET comment_count = f.comment_count + u.delta, \
         last_activity_at = COALESCE(u.active_at, f.last_activity_at) \
         FROM UNNEST($1::uuid[], $2::bigint[], $3::timestamptz[]) AS u(post_id, delta, active_at) \
         WHERE f.post_id = u.post_id"
    ))
    .bind(posts)
    .bind(deltas)
    .bind(times)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Many statistics counter increments, one per counter (see `Run::first`), in one
/// `INSERT ... ON CONFLICT DO UPDATE`.
async fn count_stats(tx: &mut Tx<'_>, g: u32, changes: &[Change]) -> Result<(), sqlx::Error> {
    let (mut days, mut metrics, mut keys, mut deltas) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for change in changes {
        if let Change::Stats(StatsChange::Count {
            day,
            metric,
            key,
            delta,
        }) = change
        {
            days.push(day.to_string());
            metrics.push(metric.as_str());
            keys.push(key.as_str());
            deltas.push(*delta);
        }
    }
    sqlx::query(&format!(
        "INSERT INTO stats_counters_g{g} (day, metric, key, value) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) \
         ON CONFLICT (day, metric, key) DO UPDATE \
         SET value = stats_counters_g{g}.value + excluded.value"
    ))
    .bind(days)
    .bind(metrics)
    .bind(keys)
    .bind(deltas)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Many activity marks in one `INSERT ... ON CONFLICT DO NOTHING` (a repeated mark is a no-op
/// either way).
async fn mark_active(tx: &mut Tx<'_>, g: u32, changes: &[Change]) -> Result<(), sqlx::Error> {
    let (mut days, mut users) = (Vec::new(), Vec::new());
    for change in changes {
        if let Change::Stats(StatsChange::Active { day, user_id }) = change {
            days.push(day.to_string());
            users.push(user_id.to_string());
        }
    }
    sqlx::query(&format!(
        "INSERT INTO stats_active_g{g} (day, user_id) \
         SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING"
    ))
    .bind(days)
    .bind(users)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts many `InsertComment` changes with one statement (`UNNEST` of column arrays).
async fn insert_comments(tx: &mut Tx<'_>, g: u32, changes: &[Change]) -> Result<(), sqlx::Error> {
    let n = changes.len();
    let (mut ids, mut posts, mut positions, mut names) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut authors = Vec::with_capacity(n);
    let (mut anonymous, mut hosts, mut bodies, mut replies, mut times) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for change in changes {
        if let Change::InsertComment {
            comment_id,
            post_id,
            position,
            author_id,
            author_name,
            anonymous: a,
            is_host,
            body,
            reply_to,
            created_at,
        } = change
        {
            authors.push(author_id.map(|u| u.as_uuid()));
            ids.push(comment_id.as_uuid());
            posts.push(post_id.as_uuid());
            positions.push(*position as i64);
            names.push(author_name.as_str());
            anonymous.push(*a);
            hosts.push(*is_host);
            bodies.push(body.as_str());
            replies.push(reply_to.map(|r| r.as_uuid()));
            times.push(*created_at);
        }
    }
    sqlx::query(&format!(
        "INSERT INTO comments_g{g} (comment_id, post_id, position, author_name, anonymous, is_host, body, reply_to, created_at, author_id) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::bool[], $6::bool[], $7::text[], $8::uuid[], $9::timestamptz[], $10::uuid[]) \
         ON CONFLICT DO NOTHING"
    ))
    .bind(ids)
    .bind(posts)
    .bind(positions)
    .bind(names)
    .bind(anonymous)
    .bind(hosts)
    .bind(bodies)
    .bind(replies)
    .bind(times)
    .bind(authors)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn apply_one(tx: &mut Tx<'_>, g: u32, change: &Change) -> Result<(), sqlx::Error> {
    let e = &mut **tx;
    match change {
        Change::InsertUser {
            user_id,
            username,
            email,
            registered_at,
        } => {
            sqlx::query(&format!(
                "INSERT INTO users_g{g} (user_id, username, email, registered_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
            ))
            .bind(user_id.as_uuid())
            .bind(username)
            .bind(email)
            .bind(registered_at)
            .execute(e)
            .await?;
        }
        Change::SetAdmin { user_id } => {
            sqlx::query(&format!(
                "UPDATE users_g{g} SET is_admin = TRUE WHERE user_id = $1"
            ))
            .bind(user_id.as_uuid())
            .execute(e)
            .await?;
        }
        Change::InsertSession {
            session_id,
            user_id,
            token_hash,
            expires_at,
        } => {
            sqlx::query(&format!(
                "INSERT INTO sessions_g{g} (session_id, token_hash, user_id, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
            ))
            .bind(session_id.as_uuid())
            .bind(token_hash)
            .bind(user_id.as_uuid())
            .bind(expires_at)
            .execute(e)
            .await?;
        }
        Change::EndSession { session_id } => {
            sqlx::query(&format!("DELETE FROM sessions_g{g} WHERE session_id = $1"))
                .bind(session_id.as_uuid())
                .execute(e)
                .await?;
        }
        Change::DeleteUser { user_id } => {
            sqlx::query(&format!(
                "WITH s AS (DELETE FROM sessions_g{g} WHERE user_id = $1) \
                 DELETE FROM users_g{g} WHERE user_id = $1"
            ))
            .bind(user_id.as_uuid())
            .execute(e)
            .await?;
        }
        Change::ForgetPostAuthor { user_id } | Change::ForgetCommentAuthor { user_id } => {
            let table = if matches!(change, Change::ForgetPostAuthor { .. }) {
                "feed"
            } else {
                "comments"
            };
            sqlx::query(&format!(
                "UPDATE {table}_g{g} SET author_name = $1, author_id = NULL WHERE author_id = $2"
            ))
            .bind(projections::DELETED_USER)
            .bind(user_id.as_uuid())
            .execute(e)
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) ON CONFLICT DO NOTHING"
            ))
            .bind(post_id.as_uuid())
            .bind(*position as i64)
            .bind(author_name)
            .bind(anonymous)
            .bind(title)
            .bind(body)
            .bind(tags)
            .bind(created_at)
            .bind(author_id.map(|u| u.as_uuid()))
            .execute(e)
            .await?;
        }
        Change::DeletePost { post_id } => {
            sqlx::query(&format!("DELETE FROM feed_g{g} WHERE post_id = $1"))
                .bind(post_id.as_uuid())
                .execute(e)
                .await?;
        }
        Change::CountComment {
            post_id,
            delta,
            active_at,
        } => {
            sqlx::query(&format!(
                "UPDATE feed_g{g} SET comment_count = comment_count + $1, \
                 last_activity_at = COALESCE($2, last_activity_at) WHERE post_id = $3"
            ))
            .bind(delta)
            .bind(active_at)
            .bind(post_id.as_uuid())
            .execute(e)
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
            ))
            .bind(comment_id.as_uuid())
            .bind(post_id.as_uuid())
            .bind(*position as i64)
            .bind(author_name)
            .bind(anonymous)
            .bind(is_host)
            .bind(body)
            .bind(reply_to.map(|r| r.as_uuid()))
            .bind(created_at)
            .bind(author_id.map(|u| u.as_uuid()))
            .execute(e)
            .await?;
        }
        Change::DeleteComment { comment_id, .. } => {
            sqlx::query(&format!("DELETE FROM comments_g{g} WHERE comment_id = $1"))
                .bind(comment_id.as_uuid())
                .execute(e)
                .await?;
        }
        Change::DeleteCommentsOf { post_id } => {
            sqlx::query(&format!("DELETE FROM comments_g{g} WHERE post_id = $1"))
                .bind(post_id.as_uuid())
                .execute(e)
                .await?;
        }
        Change::Tasks(change) => apply_task_change(tx, g, change).await?,
        Change::Stats(change) => Stats::<Postgres>::apply(e, g, change).await?,
    }
    Ok(())
}

#[async_trait]
impl ReadModelStore for PostgresReadModels {
    /// Each batch costs a transaction's round trips and commit on the server: under the
    /// `comments` load, 25 ms between a projector's batches took PostgreSQL's CPU per run from
    /// 4.7-6.9 s to 4.3-5.1 s and the rate up by about a tenth, and left the time until a
    /// comment is visible where it was (BENCHMARKS.md).
    fn pace(&self, _projection: &str) -> std::time::Duration {
        std::time::Duration::from_millis(25)
    }

    async fn live(&self, projection: &str) -> Result<Option<Generation>, ReadModelError> {
        let row: Option<(i32, i32, i64)> = sqlx::query_as(
            "SELECT number, version, position FROM generations WHERE projection = $1 AND state = 'live'",
        )
        .bind(projection)
        .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(backend)?;
        lock_projection(&mut tx, projection)
            .await
            .map_err(backend)?;
        let unfinished: Vec<(i32,)> = sqlx::query_as(
            "SELECT number FROM generations WHERE projection = $1 AND state = 'building'",
        )
        .bind(projection)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        for (n,) in unfinished {
            retire(&mut tx, projection, n).await.map_err(backend)?;
        }
        let (last,): (i32,) = sqlx::query_as(
            "SELECT COALESCE(MAX(number), 0) FROM generations WHERE projection = $1",
        )
        .bind(projection)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let number = last + 1;
        for table in tables {
            for statement in table.create_statements(number as u32, table.postgres) {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
        }
        sqlx::query("INSERT INTO generations (projection, number, version, position, state) VALUES ($1, $2, $3, 0, 'building')")
            .bind(projection)
            .bind(number)
            .bind(version as i32)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Generation {
            number: number as u32,
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
        // A read model is derived from the log and its checkpoint moves in the same
        // transaction, so a batch need not wait for its commit record to be flushed: a crash
        // of PostgreSQL can lose the last batches, rows and checkpoint together, and the
        // projector applies them again from the log. The log itself keeps synchronous commits.
        // (One round trip: both statements go in one simple query.)
        let mut tx = self
            .pool
            .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
            .await
            .map_err(backend)?;
        // Moving the checkpoint first takes the write lock on the generation's row at once, so
        // a concurrent projector or promotion waits here rather than deadlocking later.
        let moved = sqlx::query("UPDATE generations SET position = $1 WHERE projection = $2 AND number = $3 AND position = $4 AND state <> 'retired'")
            .bind(to as i64)
            .bind(projection)
            .bind(generation as i32)
            .bind(from as i64)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if moved.rows_affected() != 1 {
            let row: Option<(i64, String)> = sqlx::query_as(
                "SELECT position, state FROM generations WHERE projection = $1 AND number = $2",
            )
            .bind(projection)
            .bind(generation as i32)
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
        // activity marks: most of a busy log) go in as one multi-row statement each, so a
        // batch costs a few round trips whatever its size.
        let mut rest = changes;
        while let Some(first) = rest.first() {
            let (kind, run) = Run::first(rest);
            match kind {
                Some(kind) if run > 1 => kind.apply(&mut tx, generation, &rest[..run]).await,
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
        retry_transient(|| self.promote_once(projection, generation)).await
    }

    async fn dump(&self, projection: &str) -> Result<Vec<String>, ReadModelError> {
        let mut lines = Vec::new();
        for table in tables_of(projection)? {
            let sql = dump_query(table, "json_build_object", "::text");
            let rows: Vec<(String,)> = sqlx::query_as(&sql)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
            lines.extend(rows.into_iter().map(|(r,)| format!("{} {r}", table.name)));
        }
        Ok(lines)
    }
}

const POST_COLUMNS: &str = "post_id, position, author_name, anonymous, title, body, tags, comment_count, created_at, last_activity_at";
const COMMENT_COLUMNS: &str =
    "comment_id, post_id, position, author_name, anonymous, is_host, body, reply_to, created_at";

fn post_view(row: &PgRow) -> Result<PostView, ReadModelError> {
    Ok(PostView {
        post_id: PostId::new(row.col("post_id")?),
        position: row.col::<i64>("position")? as Position,
        author_name: row.col("author_name")?,
        anonymous: row.col("anonymous")?,
        title: row.col("title")?,
        body: row.col("body")?,
        tags: row.col("tags")?,
        comment_count: row.col("comment_count")?,
        created_at: row.col("created_at")?,
        last_activity_at: row.col("last_activity_at")?,
    })
}

fn comment_view(row: &PgRow) -> Result<CommentView, ReadModelError> {
    Ok(CommentView {
        comment_id: CommentId::new(row.col("comment_id")?),
        post_id: PostId::new(row.col("post_id")?),
        position: row.col::<i64>("position")? as Position,
        author_name: row.col("author_name")?,
        anonymous: row.col("anonymous")?,
        is_host: row.col("is_host")?,
        body: row.col("body")?,
        reply_to: row.col::<Option<Uuid>>("reply_to")?.map(CommentId::new),
        created_at: row.col("created_at")?,
    })
}

fn user_view(row: &PgRow) -> Result<UserView, ReadModelError> {
    Ok(UserView {
        user_id: UserId::new(row.col("user_id")?),
        username: row.col("username")?,
        email: row.col("email")?,
        is_admin: row.col("is_admin")?,
        registered_at: row.col::<DateTime<Utc>>("registered_at")?,
    })
}

fn limit(page: &Page) -> i64 {
    page.limit.clamp(1, 1000) as i64
}

/// Each query once; the trait impl below retries transient failures.
impl PostgresReadModels {
    async fn promote_once(
        &self,
        projection: &str,
        generation: u32,
    ) -> Result<Promotion, ReadModelError> {
        let tables = tables_of(projection)?;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        lock_projection(&mut tx, projection)
            .await
            .map_err(backend)?;
        let rows: Vec<(i32, i64, String)> = sqlx::query_as(
            "SELECT number, position, state FROM generations \
             WHERE projection = $1 AND (number = $2 OR state = 'live') ORDER BY number FOR UPDATE",
        )
        .bind(projection)
        .bind(generation as i32)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let Some((_, position, state)) = rows
            .iter()
            .find(|(n, _, _)| *n == generation as i32)
            .cloned()
        else {
            return Err(ReadModelError::Superseded {
                projection: projection.to_owned(),
                generation,
            });
        };
        match state.as_str() {
            "live" => return Ok(Promotion::Done),
            "retired" => {
                return Err(ReadModelError::Superseded {
                    projection: projection.to_owned(),
                    generation,
                });
            }
            _ => {}
        }
        let live = rows.iter().find(|(_, _, s)| s == "live").cloned();
        if let Some((_, live_position, _)) = live
            && live_position > position
        {
            return Ok(Promotion::Behind {
                live_position: live_position as Position,
            });
        }
        for table in tables {
            for statement in table.view_statements(generation) {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
        }
        if let Some((old, _, _)) = live {
            retire(&mut tx, projection, old).await.map_err(backend)?;
        }
        sqlx::query("UPDATE generations SET state = 'live' WHERE projection = $1 AND number = $2")
            .bind(projection)
            .bind(generation as i32)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Promotion::Done)
    }

    async fn feed_once(&self, page: Page) -> Result<Vec<PostView>, ReadModelError> {
        let sql = format!(
            "SELECT {POST_COLUMNS} FROM feed WHERE position < $1 ORDER BY position DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(page.cursor.map_or(i64::MAX, |c| c as i64))
            .bind(limit(&page))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(post_view).collect()
    }

    async fn post_once(&self, id: PostId) -> Result<Option<PostView>, ReadModelError> {
        let sql = format!("SELECT {POST_COLUMNS} FROM feed WHERE post_id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(post_view).transpose()
    }

    async fn comments_once(
        &self,
        post: PostId,
        page: Page,
    ) -> Result<Vec<CommentView>, ReadModelError> {
        let sql = format!(
            "SELECT {COMMENT_COLUMNS} FROM comments WHERE post_id = $1 AND position > $2 ORDER BY position ASC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(post.as_uuid())
            .bind(page.cursor.map_or(0, |c| c as i64))
            .bind(limit(&page))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(comment_view).collect()
    }

    async fn comment_once(&self, id: CommentId) -> Result<Option<CommentView>, ReadModelError> {
        let sql = format!("SELECT {COMMENT_COLUMNS} FROM comments WHERE comment_id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(comment_view).transpose()
    }

    async fn user_once(&self, id: UserId) -> Result<Option<UserView>, ReadModelError> {
        let row = sqlx::query("SELECT user_id, username, email, is_admin, registered_at FROM users WHERE user_id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_view).transpose()
    }

    async fn session_once(&self, token_hash: &str) -> Result<Option<SessionView>, ReadModelError> {
        let row = sqlx::query(
            "SELECT s.session_id, s.expires_at, u.user_id, u.username, u.email, u.is_admin, u.registered_at \
             FROM sessions s JOIN users u ON u.user_id = s.user_id WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|row| {
            Ok(SessionView {
                session_id: SessionId::new(row.col("session_id")?),
                user: user_view(&row)?,
                expires_at: row.col("expires_at")?,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl ForumQueries for PostgresReadModels {
    async fn feed(&self, page: Page) -> Result<Vec<PostView>, ReadModelError> {
        retry_transient(|| self.feed_once(page)).await
    }

    async fn post(&self, id: PostId) -> Result<Option<PostView>, ReadModelError> {
        retry_transient(|| self.post_once(id)).await
    }

    async fn comments(&self, post: PostId, page: Page) -> Result<Vec<CommentView>, ReadModelError> {
        retry_transient(|| self.comments_once(post, page)).await
    }

    async fn comment(&self, id: CommentId) -> Result<Option<CommentView>, ReadModelError> {
        retry_transient(|| self.comment_once(id)).await
    }

    async fn user(&self, id: UserId) -> Result<Option<UserView>, ReadModelError> {
        retry_transient(|| self.user_once(id)).await
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionView>, ReadModelError> {
        retry_transient(|| self.session_once(token_hash)).await
    }

    async fn sessions_of(&self, user: UserId) -> Result<Vec<SessionSummary>, ReadModelError> {
        let rows = sqlx::query(
            "SELECT session_id, expires_at FROM sessions WHERE user_id = $1 ORDER BY session_id DESC",
        )
        .bind(user.as_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(SessionSummary {
                    session_id: SessionId::new(row.col("session_id")?),
                    expires_at: row.col("expires_at")?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl crate::kafka::RelayCheckpoints for PostgresReadModels {
    async fn relay_checkpoint(&self, name: &str) -> Result<Position, ReadModelError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM relay_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
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
            "INSERT INTO relay_checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position \
             WHERE excluded.position > relay_checkpoints.position",
        )
        .bind(name)
        .bind(i64::try_from(position).map_err(|e| ReadModelError::Backend(e.to_string()))?)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
}

super::tasks::tasks_sql!(
    PostgresReadModels,
    Postgres,
    PgRow,
    super::tasks::Dialect::Postgres,
    pool
);
