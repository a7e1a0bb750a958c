//! A database of its own on the test server (`TREEHOLE_TEST_DATABASE_URL`) for one test,
//! dropped with it: the PostgreSQL suites make one per test, and a CI machine's disk has run
//! out under databases left behind. The infra suites include this module, and so do the
//! HTTP suites (`api/tests/api/main.rs`, by path).

use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

pub const URL_VAR: &str = "TREEHOLE_TEST_DATABASE_URL";

pub struct TestDatabase {
    server: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// The reason the tests cannot run, if no server is configured.
    pub fn unavailable() -> Option<String> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => None,
            _ => Some(format!("{URL_VAR} not set")),
        }
    }

    /// A fresh database, or `None` without a server, having said that the running test was
    /// skipped where `scripts/test` counts it: a `test-skipped:` line on stderr, past the
    /// harness's capture, named by the test's thread.
    #[allow(dead_code)] // the HTTP suites, which need a server when they run on PostgreSQL
    pub async fn create_or_skip(prefix: &str) -> Option<Self> {
        if let Some(why) = Self::unavailable() {
            use std::io::Write;
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("a PostgreSQL suite");
            let _ =
                std::io::stderr().write_all(format!("test-skipped: {test}: {why}\n").as_bytes());
            return None;
        }
        Some(Self::create(prefix).await)
    }

    /// A fresh database named `prefix_<uuid>` (panics without a server: ask
    /// [`Self::unavailable`] first).
    pub async fn create(prefix: &str) -> Self {
        let server = std::env::var(URL_VAR).unwrap_or_default();
        let name = format!("{prefix}_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
        admin
            .execute(&*format!("CREATE DATABASE {name}"))
            .await
            .expect("a test database");
        let mut url = url::Url::parse(&server).expect("a URL");
        url.set_path(&name);
        Self {
            server,
            name,
            url: url.into(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop cannot await: use a thread with a runtime of its own. A database left behind
        // (if this fails) harms nobody on a throwaway server.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                admin
                    .execute(&*format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
