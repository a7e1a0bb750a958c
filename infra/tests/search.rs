//! The search engines against one shared suite (`search_suite`).

mod search_suite;

use std::sync::Arc;

use infra::search::Embedded;
use projections::search::SearchIndex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_engine_passes_the_search_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("search");
    search_suite::run(Box::new(move || {
        Arc::new(Embedded::open(&root).expect("open the embedded engine")) as Arc<dyn SearchIndex>
    }))
    .await;
}

/// Runs against a real Meilisearch when `MEILI_URL` (and `MEILI_MASTER_KEY` if it has one) is
/// set; says it was skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meilisearch_passes_the_search_suite() {
    let Some(url) = std::env::var("MEILI_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("skipped: MEILI_URL not set");
        return;
    };
    let key = std::env::var("MEILI_MASTER_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let uid = format!("treehole_test_{}", uuid::Uuid::new_v4().simple());
    let runtime = tokio::runtime::Handle::current();
    let (u, k, i) = (url.clone(), key.clone(), uid.clone());
    search_suite::run(Box::new(move || {
        let (u, k, i) = (u.clone(), k.clone(), i.clone());
        // `open` is synchronous: connect on the test's runtime from a helper thread.
        let handle = runtime.clone();
        std::thread::spawn(move || {
            handle.block_on(async {
                Arc::new(
                    infra::search::MeiliSearch::connect(&u, k.as_deref(), &i)
                        .await
                        .expect("connect to Meilisearch"),
                ) as Arc<dyn SearchIndex>
            })
        })
        .join()
        .expect("connect thread")
    }))
    .await;
    let client = meilisearch_sdk::client::Client::new(url, key).expect("client");
    for name in [uid.clone(), format!("{uid}_build")] {
        let _ = client.index(name).delete().await;
    }
}

#[tokio::test]
async fn an_unreachable_meilisearch_is_a_clear_error() {
    let err = infra::search::MeiliSearch::connect("http://127.0.0.1:9", None, "posts")
        .await
        .err()
        .expect("nothing listens on port 9");
    let message = err.to_string();
    assert!(
        message.contains("unreachable") && message.contains("127.0.0.1:9"),
        "{message}"
    );
}
