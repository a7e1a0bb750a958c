//! Key stores (the `commands::KeyStore` port): wrapped data keys and key handles, in a table
//! beside the log: in the SQLite file of the embedded event store, or in the PostgreSQL
//! database.
//!
//! Destroying a key must destroy its bytes, not only hide the row:
//! - SQLite: the connections run with `secure_delete` (freed cells are overwritten with zeros),
//!   and a shred ends with a `TRUNCATE` checkpoint, so the write-ahead log keeps no frame with the
//!   key either.
//! - PostgreSQL: the rows are deleted and both tables rewritten (`VACUUM FULL`), so the table
//!   files keep no dead copy. The server's write-ahead log keeps the key until its segments are
//!   recycled, and backups keep what they copied: see README ("What a reader can learn").

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use commands::{KeyDump, KeyError, KeyStore};
use domain::UserId;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use uuid::Uuid;

use crate::read_model::readers::{self, Readers};

fn backend(what: &str, e: sqlx::Error) -> KeyError {
    KeyError::Backend(format!("{what}: {e}"))
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS data_keys (
    user_id    TEXT NOT NULL PRIMARY KEY,
    wrapped    BLOB NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE TABLE IF NOT EXISTS key_handles (
    handle  TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    subject TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS key_handles_user ON key_handles (user_id);
";

/// The key store in a SQLite file (the embedded event store's `events.db`). Reads and a
/// user's shredding go through sqlx; keys and handles are put by a rusqlite connection on a
/// thread of its own, whose busy handler tries for the file's write lock (which the log's writer
/// shares) in short steps instead of SQLite's sleeps of up to 100 ms
/// (`readers::wait_for_the_lock`).
pub struct SqliteKeyStore {
    pool: SqlitePool,
    writes: Readers,
}

impl SqliteKeyStore {
    /// Opens the key tables in the SQLite file at `path`, creating them if missing.
    pub async fn open(path: &Path) -> Result<Self, KeyError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .pragma("secure_delete", "on");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| backend(&format!("cannot open {}", path.display()), e))?;
        sqlx::raw_sql(SQLITE_SCHEMA)
            .execute(&pool)
            .await
            .map_err(|e| backend("cannot create the key tables", e))?;
        let writer = readers::open_writer(path).map_err(KeyError::Backend)?;
        let prepared = writer
            .busy_handler(Some(readers::wait_for_the_lock))
            .and_then(|()| {
                writer.execute_batch("PRAGMA synchronous = FULL; PRAGMA secure_delete = on;")
            });
        prepared.map_err(|e| KeyError::Backend(format!("cannot open {}: {e}", path.display())))?;
        let writes = Readers::writer(writer, "sqlite-keys")
            .map_err(|e| KeyError::Backend(format!("the key store's writer: {e}")))?;
        Ok(Self { pool, writes })
    }

    /// Runs the statement `sql` with `params` on the writer's connection.
    async fn write<P>(&self, what: &str, sql: &'static str, params: P) -> Result<(), KeyError>
    where
        P: rusqlite::Params + Send + 'static,
    {
        self.writes
            .call(move |c| {
                c.prepare_cached(sql)
                    .and_then(|mut statement| statement.execute(params))
            })
            .await
            .ok_or_else(|| KeyError::Backend(format!("{what}: the key store is closed")))?
            .map(|_| ())
            .map_err(|e| KeyError::Backend(format!("{what}: {e}")))
    }

    /// Opens the key store in `dir/events.db`, beside the embedded log.
    pub async fn open_in(dir: &Path) -> Result<Self, KeyError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| KeyError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        Self::open(&dir.join(crate::event_store::sqlite::FILE_NAME)).await
    }
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    async fn put_key(&self, user: UserId, wrapped: Vec<u8>) -> Result<Vec<u8>, KeyError> {
        self.write(
            "cannot store a data key",
            "INSERT INTO data_keys (user_id, wrapped) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            (user.to_string(), wrapped),
        )
        .await?;
        self.get_key(user).await?.ok_or(KeyError::Destroyed(user))
    }

    async fn get_key(&self, user: UserId) -> Result<Option<Vec<u8>>, KeyError> {
        sqlx::query_scalar(
            "SELECT wrapped FROM data_keys WHERE user_id = ? AND length(wrapped) > 0",
        )
        .bind(user.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend("cannot read a data key", e))
    }

    async fn put_handle(&self, handle: &str, user: UserId, subject: &str) -> Result<(), KeyError> {
        self.write(
            "cannot store a key handle",
            "INSERT INTO key_handles (handle, user_id, subject) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
            (handle.to_owned(), user.to_string(), subject.to_owned()),
        )
        .await
    }

    async fn subjects(&self, user: UserId, prefix: &str) -> Result<Vec<String>, KeyError> {
        sqlx::query_scalar(
            "SELECT h.subject FROM key_handles h JOIN data_keys k ON k.user_id = h.user_id AND length(k.wrapped) > 0 \
             WHERE h.user_id = ? AND substr(h.handle, 1, length(?)) = ? ORDER BY h.subject",
        )
        .bind(user.to_string())
        .bind(prefix)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend("cannot list key handles", e))
    }

    async fn resolve(&self, handle: &str) -> Result<Option<UserId>, KeyError> {
        let user: Option<String> = sqlx::query_scalar(
            "SELECT h.user_id FROM key_handles h JOIN data_keys k ON k.user_id = h.user_id AND length(k.wrapped) > 0 \
             WHERE h.handle = ?",
        )
        .bind(handle)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend("cannot resolve a key handle", e))?;
        Ok(user.and_then(|u| Uuid::parse_str(&u).ok()).map(UserId::new))
    }

    async fn shred(&self, user: UserId) -> Result<(), KeyError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| backend("cannot destroy a data key", e))?;
        // The row goes (its cell is zeroed by `secure_delete`) and a tombstone, a row without
        // a key, takes its place, so that no key is ever made again for a user who left.
        for sql in [
            "DELETE FROM data_keys WHERE user_id = ?",
            "DELETE FROM key_handles WHERE user_id = ?",
            "INSERT INTO data_keys (user_id, wrapped) VALUES (?, x'') \
             ON CONFLICT (user_id) DO UPDATE SET wrapped = x''",
        ] {
            sqlx::query(sql)
                .bind(user.to_string())
                .execute(&mut *tx)
                .await
                .map_err(|e| backend("cannot destroy a data key", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| backend("cannot destroy a data key", e))?;
        // Copy the zeroed pages into the file and empty the write-ahead log, which still holds
        // frames with the key. A reader can hold the checkpoint back (each try waits up to the
        // busy timeout); after three tries the key's frames stay in the log until the next
        // checkpoint overwrites them, which is said in the warning.
        for _ in 0..3 {
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| backend("cannot checkpoint after destroying a key", e))?;
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(
            "the write-ahead log could not be truncated after destroying a data key: it keeps \
             the key's old frames until a later checkpoint"
        );
        Ok(())
    }

    async fn sample(&self) -> Result<Option<(UserId, Vec<u8>)>, KeyError> {
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT user_id, wrapped FROM data_keys WHERE length(wrapped) > 0 LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend("cannot read a data key", e))?;
        Ok(row.and_then(|(u, k)| Uuid::parse_str(&u).ok().map(|u| (UserId::new(u), k))))
    }

    async fn put_keys(&self, keys: &[(UserId, Vec<u8>)]) -> Result<(), KeyError> {
        let rows: Vec<(String, String)> = keys
            .iter()
            .map(|(u, k)| (u.to_string(), hex::encode(k)))
            .collect();
        self.write(
            "cannot store data keys",
            "INSERT INTO data_keys (user_id, wrapped) \
             SELECT value->>0, unhex(value->>1) FROM json_each(?1) WHERE true ON CONFLICT DO NOTHING",
            [serde_json::to_string(&rows).expect("strings serialise")],
        )
        .await
    }

    async fn put_handles(&self, handles: &[(String, UserId, String)]) -> Result<(), KeyError> {
        let rows: Vec<(&str, String, &str)> = handles
            .iter()
            .map(|(h, u, s)| (h.as_str(), u.to_string(), s.as_str()))
            .collect();
        self.write(
            "cannot store key handles",
            "INSERT INTO key_handles (handle, user_id, subject) \
             SELECT value->>0, value->>1, value->>2 FROM json_each(?1) WHERE true \
             ON CONFLICT DO NOTHING",
            [serde_json::to_string(&rows).expect("strings serialise")],
        )
        .await
    }

    async fn resolve_many(&self, handles: &[String]) -> Result<Vec<(String, UserId)>, KeyError> {
        let list = serde_json::to_string(handles).expect("strings serialise");
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT h.handle, h.user_id FROM key_handles h \
             JOIN data_keys k ON k.user_id = h.user_id AND length(k.wrapped) > 0 \
             WHERE h.handle IN (SELECT value FROM json_each(?))",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend("cannot resolve key handles", e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(h, u)| Uuid::parse_str(&u).ok().map(|u| (h, UserId::new(u))))
            .collect())
    }

    async fn get_keys(&self, users: &[UserId]) -> Result<Vec<(UserId, Vec<u8>)>, KeyError> {
        let ids: Vec<String> = users.iter().map(ToString::to_string).collect();
        let list = serde_json::to_string(&ids).expect("strings serialise");
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT user_id, wrapped FROM data_keys \
             WHERE user_id IN (SELECT value FROM json_each(?)) AND length(wrapped) > 0",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend("cannot read data keys", e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(u, k)| Uuid::parse_str(&u).ok().map(|u| (UserId::new(u), k)))
            .collect())
    }

    async fn all(&self) -> Result<KeyDump, KeyError> {
        let keys: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT user_id, wrapped FROM data_keys ORDER BY user_id")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| backend("cannot list the data keys", e))?;
        let handles: Vec<(String, String, String)> =
            sqlx::query_as("SELECT handle, user_id, subject FROM key_handles ORDER BY handle")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| backend("cannot list the key handles", e))?;
        let user = |u: &str| {
            Uuid::parse_str(u)
                .map(UserId::new)
                .map_err(|e| KeyError::Backend(format!("a key store row names no user: {e}")))
        };
        Ok(KeyDump {
            destroyed: keys
                .iter()
                .filter(|(_, k)| k.is_empty())
                .map(|(u, _)| user(u))
                .collect::<Result<_, KeyError>>()?,
            keys: keys
                .iter()
                .filter(|(_, k)| !k.is_empty())
                .map(|(u, k)| Ok((user(u)?, k.clone())))
                .collect::<Result<_, KeyError>>()?,
            handles: handles
                .iter()
                .map(|(h, u, s)| Ok((h.clone(), user(u)?, s.clone())))
                .collect::<Result<_, KeyError>>()?,
        })
    }
}

/// The key store in the PostgreSQL database of the event store.
pub struct PostgresKeyStore {
    pool: PgPool,
}

impl PostgresKeyStore {
    /// Connects to the database at `url`; the tables come with the migrations (0004).
    pub async fn connect(url: &str) -> Result<Self, KeyError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| KeyError::Backend(format!("the PostgreSQL URL is malformed: {e}")))?
            .application_name("treehole-keys")
            // The rewrite after a shred gives up rather than wait without end for a lock.
            // Each batched look-up is planned for its own list: after five runs PostgreSQL
            // would keep one generic plan for `= ANY($1)`, and the one it picked took 0.45 s a
            // call where the planned one takes milliseconds (a rebuild of a sealed log makes
            // one or two per page it reads; BENCHMARKS.md, "The price of sealing").
            .options([
                ("lock_timeout", "10s"),
                ("plan_cache_mode", "force_custom_plan"),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| backend("cannot connect the key store", e))?;
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| backend("cannot connect the key store", e))?;
        crate::migrations::migrate_postgres(&mut conn)
            .await
            .map_err(|e| KeyError::Backend(e.to_string()))?;
        drop(conn);
        Ok(Self { pool })
    }
}

#[async_trait]
impl KeyStore for PostgresKeyStore {
    async fn put_key(&self, user: UserId, wrapped: Vec<u8>) -> Result<Vec<u8>, KeyError> {
        sqlx::query(
            "INSERT INTO data_keys (user_id, wrapped) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user.as_uuid())
        .bind(&wrapped)
        .execute(&self.pool)
        .await
        .map_err(|e| backend("cannot store a data key", e))?;
        self.get_key(user).await?.ok_or(KeyError::Destroyed(user))
    }

    async fn get_key(&self, user: UserId) -> Result<Option<Vec<u8>>, KeyError> {
        sqlx::query_scalar(
            "SELECT wrapped FROM data_keys WHERE user_id = $1 AND length(wrapped) > 0",
        )
        .bind(user.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend("cannot read a data key", e))
    }

    async fn put_handle(&self, handle: &str, user: UserId, subject: &str) -> Result<(), KeyError> {
        sqlx::query(
            "INSERT INTO key_handles (handle, user_id, subject) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(handle)
        .bind(user.as_uuid())
        .bind(subject)
        .execute(&self.pool)
        .await
        .map_err(|e| backend("cannot store a key handle", e))?;
        Ok(())
    }

    async fn subjects(&self, user: UserId, prefix: &str) -> Result<Vec<String>, KeyError> {
        sqlx::query_scalar(
            "SELECT h.subject FROM key_handles h JOIN data_keys k ON k.user_id = h.user_id AND length(k.wrapped) > 0 \
             WHERE h.user_id = $1 AND starts_with(h.handle, $2) ORDER BY h.subject",
        )
        .bind(user.as_uuid())
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend("cannot list key handles", e))
    }

    async fn resolve(&self, handle: &str) -> Result<Option<UserId>, KeyError> {
        let user: Option<Uuid> = sqlx::query_scalar(
            "SELECT h.user_id FROM key_handles h JOIN data_keys k ON k.user_id = h.user_id AND length(k.wrapped) > 0 \
             WHERE h.handle = $1",
        )
        .bind(handle)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend("cannot resolve a key handle", e))?;
        Ok(user.map(UserId::new))
    }

    async fn shred(&self, user: UserId) -> Result<(), KeyError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| backend("cannot destroy a data key", e))?;
        // This transaction's id: a snapshot at least as old may still see the deleted row.
        let xid: i64 = sqlx::query_scalar("SELECT txid_current()")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| backend("cannot destroy a data key", e))?;
        // A tombstone (a row without a key) takes the key's place, so that no key is ever made
        // again for a user who left.
        for sql in [
            "DELETE FROM data_keys WHERE user_id = $1",
            "DELETE FROM key_handles WHERE user_id = $1",
            // Two shreds at once (the command and a reader past the event) both end here.
            "INSERT INTO data_keys (user_id, wrapped) VALUES ($1, '\\x') \
             ON CONFLICT (user_id) DO UPDATE SET wrapped = '\\x'",
        ] {
            sqlx::query(sql)
                .bind(user.as_uuid())
                .execute(&mut *tx)
                .await
                .map_err(|e| backend("cannot destroy a data key", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| backend("cannot destroy a data key", e))?;
        // Rewrite the tables so that no dead tuple keeps the wrapped key in their files. A
        // transaction open at this moment with an older snapshot keeps the dead row alive
        // through the rewrite (its bytes then stay in free space until overwritten), so the
        // rewrite waits, bounded, until no such snapshot is left; and it gives up rather than
        // wait without end for a lock.
        for _ in 0..50 {
            let older: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL \
                 AND age(backend_xmin) >= age(($1 % 4294967296)::text::xid)",
            )
            .bind(xid)
            .fetch_one(&self.pool)
            .await
            .unwrap_or(0);
            if older == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The key store's sessions run with a lock timeout (see `connect`).
        let rewrite = sqlx::raw_sql("VACUUM FULL data_keys, key_handles")
            .execute(&self.pool)
            .await;
        if let Err(e) = rewrite {
            tracing::warn!(error = %e, "the key tables could not be rewritten after destroying a data key: the old row stays in their free space until overwritten");
        }
        Ok(())
    }

    async fn sample(&self) -> Result<Option<(UserId, Vec<u8>)>, KeyError> {
        let row: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT user_id, wrapped FROM data_keys WHERE length(wrapped) > 0 LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend("cannot read a data key", e))?;
        Ok(row.map(|(u, k)| (UserId::new(u), k)))
    }

    async fn put_keys(&self, keys: &[(UserId, Vec<u8>)]) -> Result<(), KeyError> {
        let users: Vec<Uuid> = keys.iter().map(|(u, _)| u.as_uuid()).collect();
        let wrapped: Vec<Vec<u8>> = keys.iter().map(|(_, k)| k.clone()).collect();
        sqlx::query(
            "INSERT INTO data_keys (user_id, wrapped) \
             SELECT * FROM UNNEST($1::uuid[], $2::bytea[]) ON CONFLICT DO NOTHING",
        )
        .bind(users)
        .bind(wrapped)
        .execute(&self.pool)
        .await
        .map_err(|e| backend("cannot store data keys", e))?;
        Ok(())
    }

    async fn put_handles(&self, handles: &[(String, UserId, String)]) -> Result<(), KeyError> {
        let names: Vec<&str> = handles.iter().map(|(h, _, _)| h.as_str()).collect();
        let users: Vec<Uuid> = handles.iter().map(|(_, u, _)| u.as_uuid()).collect();
        let subjects: Vec<&str> = handles.iter().map(|(_, _, s)| s.as_str()).collect();
        sqlx::query(
            "INSERT INTO key_handles (handle, user_id, subject) \
             SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(names)
        .bind(users)
        .bind(subjects)
        .execute(&self.pool)
        .await
        .map_err(|e| backend("cannot store key handles", e))?;
        Ok(())
    }

    async fn resolve_many(&self, handles: &[String]) -> Result<Vec<(String, UserId)>, KeyError> {
        let rows: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT h.handle, h.user_id FROM key_handles h \
             JOIN data_keys k ON k.user_id = h.user_id AND length(k.wrapped) > 0 \
             WHERE h.handle = ANY($1)",
        )
        .bind(handles)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend("cannot resolve key handles", e))?;
        Ok(rows.into_iter().map(|(h, u)| (h, UserId::new(u))).collect())
    }

    async fn get_keys(&self, users: &[UserId]) -> Result<Vec<(UserId, Vec<u8>)>, KeyError> {
        let ids: Vec<Uuid> = users.iter().map(|u| u.as_uuid()).collect();
        let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT user_id, wrapped FROM data_keys \
             WHERE user_id = ANY($1) AND length(wrapped) > 0",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend("cannot read data keys", e))?;
        Ok(rows.into_iter().map(|(u, k)| (UserId::new(u), k)).collect())
    }

    async fn all(&self) -> Result<KeyDump, KeyError> {
        let keys: Vec<(Uuid, Vec<u8>)> =
            sqlx::query_as("SELECT user_id, wrapped FROM data_keys ORDER BY user_id")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| backend("cannot list the data keys", e))?;
        let handles: Vec<(String, Uuid, String)> =
            sqlx::query_as("SELECT handle, user_id, subject FROM key_handles ORDER BY handle")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| backend("cannot list the key handles", e))?;
        Ok(KeyDump {
            destroyed: keys
                .iter()
                .filter(|(_, k)| k.is_empty())
                .map(|(u, _)| UserId::new(*u))
                .collect(),
            keys: keys
                .into_iter()
                .filter(|(_, k)| !k.is_empty())
                .map(|(u, k)| (UserId::new(u), k))
                .collect(),
            handles: handles
                .into_iter()
                .map(|(h, u, s)| (h, UserId::new(u), s))
                .collect(),
        })
    }
}
