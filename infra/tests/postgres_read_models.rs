//! The PostgreSQL read-model store through the read-model contract suite.
//!
//! Needs `TREEHOLE_TEST_DATABASE_URL` (`scripts/test` starts a throwaway server); each test
//! gets a database of its own. Without it every test returns at once and says
//! `test-skipped: NAME: TREEHOLE_TEST_DATABASE_URL not set` on stderr, which `scripts/test`
//! counts as skipped, not passed.

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

mod read_model_contract;
mod test_database;

use std::sync::Arc;

use infra::read_model::PostgresReadModels;
use test_database::TestDatabase;

/// The test's database, dropped with the harness.
struct PostgresHarness(#[allow(dead_code)] TestDatabase);

impl read_model_contract::Harness for PostgresHarness {
    async fn create() -> Option<(Self, read_model_contract::Store)> {
        let db = TestDatabase::create_or_skip("treehole_rm").await?;
        let store = PostgresReadModels::connect(&db.url)
            .await
            .expect("the store connects");
        Some((Self(db), Arc::new(store)))
    }
}

read_model_contract::read_model_contract!(PostgresHarness);

#[tokio::test]
async fn migrations_report_what_is_pending_and_apply_once() {
    let Some(db) = TestDatabase::create_or_skip("treehole_mig").await else {
        return;
    };
    let url = db.url.as_str();
    let all = infra::migrations::pending(url).await.expect("pending");
    assert_eq!(
        all.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(infra::migrations::migrate(url).await.expect("migrate"), all);
    assert!(
        infra::migrations::pending(url)
            .await
            .expect("pending")
            .is_empty()
    );
    assert!(
        infra::migrations::migrate(url)
            .await
            .expect("migrate")
            .is_empty()
    );
}

/// Runs `sql` on the database at `url` beside the store (to make a generation look older).
async fn execute(url: &str, sql: &str) {
    let raw = sqlx::PgPool::connect(url).await.expect("the database");
    sqlx::raw_sql(sql)
        .execute(&raw)
        .await
        .expect("the older shape");
    raw.close().await;
}

/// An upgrade keeps queries answering (see the contract's case); PostgreSQL's view froze its
/// `*` when it was made, so the older version's view lacks the columns too.
#[tokio::test]
async fn an_older_live_generation_answers_while_its_successor_builds() {
    let Some(db) = TestDatabase::create_or_skip("treehole_rm_upgrade").await else {
        return;
    };
    let url = db.url.as_str();
    let store = PostgresReadModels::connect(url)
        .await
        .expect("the store connects");
    read_model_contract::an_older_live_generation_answers_while_its_successor_builds(
        Arc::new(store),
        |g| async move {
            execute(
                url,
                &format!(
                    "DROP VIEW feed; ALTER TABLE feed_g{g} DROP COLUMN likes, \
                     DROP COLUMN dislikes; CREATE VIEW feed AS SELECT * FROM feed_g{g}"
                ),
            )
            .await;
        },
    )
    .await;
}

/// An upgrade that brings a table keeps queries answering (see the contract's case).
#[tokio::test]
async fn an_older_inbox_without_a_newer_table_answers_while_its_successor_builds() {
    let Some(db) = TestDatabase::create_or_skip("treehole_rm_upgrade_table").await else {
        return;
    };
    let url = db.url.as_str();
    let store = PostgresReadModels::connect(url)
        .await
        .expect("the store connects");
    read_model_contract::an_older_inbox_without_a_newer_table_answers_while_its_successor_builds(
        Arc::new(store),
        |g| async move {
            execute(
                url,
                &format!("DROP VIEW follow_spans; DROP TABLE follow_spans_g{g}"),
            )
            .await;
        },
    )
    .await;
}

/// The inbox's function lives and dies with its generation's tables: made with them, dropped
/// when a newer generation retires them.
#[tokio::test]
async fn the_inbox_function_comes_and_goes_with_its_generation() {
    use projections::ReadModelStore;
    let Some(db) = TestDatabase::create_or_skip("treehole_rm_inbox_fn").await else {
        return;
    };
    let url = db.url.as_str();
    let store = PostgresReadModels::connect(url)
        .await
        .expect("the store connects");
    let raw = sqlx::PgPool::connect(url).await.expect("the database");
    let functions = || async {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT proname::text FROM pg_proc WHERE proname LIKE 'inbox_apply_g%' ORDER BY 1",
        )
        .fetch_all(&raw)
        .await
        .expect("pg_proc");
        names
    };
    let first = store.create_generation("inbox", 3).await.expect("create");
    store.promote("inbox", first.number).await.expect("promote");
    assert_eq!(
        functions().await,
        [format!("inbox_apply_g{}", first.number)]
    );
    let second = store.create_generation("inbox", 3).await.expect("create");
    assert_eq!(functions().await.len(), 2, "both while the second builds");
    store
        .promote("inbox", second.number)
        .await
        .expect("promote");
    assert_eq!(
        functions().await,
        [format!("inbox_apply_g{}", second.number)]
    );
    raw.close().await;
}
