//! The PostgreSQL schema as sqlx migrations, embedded in the binary (`infra/migrations/postgres/`).
//!
//! They are applied by `treehole migrate`, and on start-up unless that is turned off
//! (`TREEHOLE_MIGRATE_ON_START=false`); the stores apply any still pending when they connect,
//! under sqlx's migration lock, so processes starting together do not race. Applied migrations
//! are recorded with checksums in `_sqlx_migrations`; an edited migration is refused.

use std::borrow::Cow;

use futures::future::BoxFuture;
use sqlx::PgConnection;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "event log",
        include_str!("../migrations/postgres/0001_event_log.sql"),
    ),
    (
        2,
        "read model generations",
        include_str!("../migrations/postgres/0002_read_model_generations.sql"),
    ),
    (
        3,
        "relay checkpoints",
        include_str!("../migrations/postgres/0003_relay_checkpoints.sql"),
    ),
    (
        4,
        "data keys",
        include_str!("../migrations/postgres/0004_data_keys.sql"),
    ),
];

/// Migrations compiled into the binary.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("database migration failed: {0}")]
pub struct MigrationError(String);

/// Applies every pending PostgreSQL migration on `conn`.
pub async fn migrate_postgres(conn: &mut PgConnection) -> Result<(), MigrationError> {
    let migrator = Migrator::new(Embedded(POSTGRES))
        .await
        .map_err(|e| MigrationError(e.to_string()))?;
    migrator
        .run_direct(conn)
        .await
        .map_err(|e| MigrationError(e.to_string()))
}

/// The versions and descriptions of the migrations not yet applied on `conn`.
pub async fn pending_postgres(
    conn: &mut PgConnection,
) -> Result<Vec<(i64, &'static str)>, MigrationError> {
    let failed = |e: sqlx::Error| MigrationError(e.to_string());
    let (table,): (Option<String>,) =
        sqlx::query_as("SELECT to_regclass('_sqlx_migrations')::text")
            .fetch_one(&mut *conn)
            .await
            .map_err(failed)?;
    let applied: Vec<i64> = match table {
        None => vec![],
        Some(_) => {
            sqlx::query_as::<_, (i64,)>("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&mut *conn)
                .await
                .map_err(failed)?
                .into_iter()
                .map(|(v,)| v)
                .collect()
        }
    };
    Ok(POSTGRES
        .iter()
        .filter(|(v, ..)| !applied.contains(v))
        .map(|(v, d, _)| (*v, *d))
        .collect())
}

async fn connect(url: &str) -> Result<PgConnection, MigrationError> {
    use sqlx::Connection;
    PgConnection::connect(url)
        .await
        .map_err(|e| MigrationError(format!("cannot connect to PostgreSQL: {e}")))
}

/// The migrations not yet applied to the database at `url`.
pub async fn pending(url: &str) -> Result<Vec<(i64, &'static str)>, MigrationError> {
    pending_postgres(&mut connect(url).await?).await
}

/// Applies every pending migration to the database at `url` and returns what it applied.
pub async fn migrate(url: &str) -> Result<Vec<(i64, &'static str)>, MigrationError> {
    let mut conn = connect(url).await?;
    let pending = pending_postgres(&mut conn).await?;
    migrate_postgres(&mut conn).await?;
    Ok(pending)
}

#[cfg(test)]
mod tests {
    /// A migration file that is not listed here would never run.
    #[test]
    fn every_migration_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("the migrations directory")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        assert_eq!(files.len(), super::POSTGRES.len(), "{files:?}");
        for (file, (version, _, _)) in files.iter().zip(super::POSTGRES) {
            assert!(
                file.starts_with(&format!("{version:04}_")),
                "{file} is not migration {version}"
            );
        }
    }
}
