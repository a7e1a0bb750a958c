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

/// Says that a test was skipped, where `scripts/test` counts it: straight to stderr, past the
/// harness's capture (which swallows `eprintln!` of a passing test), so that a test that
/// returns early is not taken for one that passed.
fn skipped(test: &str, reason: &str) {
    use std::io::Write;
    let line = format!("test-skipped: {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Runs against a real Meilisearch when `MEILI_URL` (and `MEILI_MASTER_KEY` if it has one) is
/// set, as `scripts/test` does with the server it starts; says it was skipped otherwise. Its
/// indexes are deleted at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meilisearch_passes_the_search_suite() {
    let Some(url) = std::env::var("MEILI_URL").ok().filter(|u| !u.is_empty()) else {
        skipped("meilisearch_passes_the_search_suite", "MEILI_URL not set");
        return;
    };
    let key = std::env::var("MEILI_MASTER_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let uid = format!("treehole_test_{}", uuid::Uuid::new_v4().simple());
    let connect = {
        let (u, k, i) = (url.clone(), key.clone(), uid.clone());
        move || {
            let (u, k, i) = (u.clone(), k.clone(), i.clone());
            async move {
                infra::search::MeiliSearch::connect(&u, k.as_deref(), &i)
                    .await
                    .expect("connect to Meilisearch")
            }
        }
    };
    let runtime = tokio::runtime::Handle::current();
    let open = connect.clone();
    search_suite::run(Box::new(move || {
        // `open` is synchronous: connect on the test's runtime from a helper thread.
        let (handle, open) = (runtime.clone(), open.clone());
        std::thread::spawn(move || Arc::new(handle.block_on(open())) as Arc<dyn SearchIndex>)
            .join()
            .expect("connect thread")
    }))
    .await;
    connect()
        .await
        .delete_indexes()
        .await
        .expect("delete the suite's indexes");
}

#[tokio::test]
async fn a_search_server_that_is_not_there_is_a_clear_error() {
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
