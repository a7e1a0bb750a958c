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
