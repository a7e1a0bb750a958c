//! The SQLite read-model store through the read-model contract suite.

mod read_model_contract;

use std::sync::Arc;

use infra::read_model::SqliteReadModels;
use tempfile::TempDir;

/// Keeps the database's directory alive for the test.
struct SqliteHarness(#[allow(dead_code)] TempDir);

impl read_model_contract::Harness for SqliteHarness {
    async fn create() -> Option<(Self, read_model_contract::Store)> {
        let dir = TempDir::new().expect("a temporary directory");
        let store = SqliteReadModels::open(&dir.path().join("readmodels.db"))
            .await
            .expect("the store opens");
        Some((Self(dir), Arc::new(store)))
    }
}

read_model_contract::read_model_contract!(SqliteHarness);

/// An upgrade: the live generation was made by an older version whose table lacked a column
/// this code reads. Until the new generation replaces it, queries must still answer, with the
/// column's default.
#[tokio::test]
async fn an_older_live_generation_is_given_the_new_columns_while_its_successor_builds() {
    use chrono::{DateTime, Utc};
    use domain::PostId;
    use projections::{Change, FeedChange, FeedQueries, Promotion, ReadModelStore};
    use uuid::Uuid;

    let dir = TempDir::new().expect("a temporary directory");
    let path = dir.path().join("readmodels.db");
    let store = SqliteReadModels::open(&path)
        .await
        .expect("the store opens");
    let post_id = PostId::new(Uuid::from_u128(7));
    let g = store.create_generation("feed", 1).await.expect("create");
    let insert = Change::Feed(FeedChange::InsertPost {
        post_id,
        position: 1,
        author_id: None,
        author_name: "洞主".into(),
        anonymous: true,
        title: None,
        body: "old".into(),
        tags: vec![],
        created_at: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("a time"),
    });
    store
        .apply("feed", g.number, &[insert], 0, 1)
        .await
        .expect("apply");
    assert_eq!(
        store.promote("feed", g.number).await.expect("promote"),
        Promotion::Done
    );
    // What an older version's table looked like: no reaction counts.
    let raw = rusqlite::Connection::open(&path).expect("the file");
    raw.execute_batch(&format!(
        "ALTER TABLE feed_g{0} DROP COLUMN likes; ALTER TABLE feed_g{0} DROP COLUMN dislikes;",
        g.number
    ))
    .expect("drop the columns");
    drop(raw);
    assert!(
        store.post(post_id).await.is_err(),
        "the query needs the columns"
    );

    let next = store.create_generation("feed", 2).await.expect("create");
    assert_ne!(next.number, g.number);
    let post = store
        .post(post_id)
        .await
        .expect("the query answers")
        .expect("the post");
    assert_eq!(
        (post.body.as_str(), post.likes, post.dislikes),
        ("old", 0, 0)
    );
}
