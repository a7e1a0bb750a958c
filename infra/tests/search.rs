//! The search engines against one shared suite (`search_suite`).

mod search_suite;

use std::sync::Arc;

use infra::search::{Embedded, MeiliSearch};
use projections::search::SearchIndex;

/// The embedded engine in a directory of its own; the directory is kept while the returned
/// guard lives.
fn embedded() -> (search_suite::Open, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("search");
    let open: search_suite::Open = Box::new(move || {
        Arc::new(Embedded::open(&root).expect("open the embedded engine")) as Arc<dyn SearchIndex>
    });
    (open, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_engine_passes_the_search_suite() {
    let (open, _dir) = embedded();
    search_suite::run(open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_engine_forgets_named_authors() {
    let (open, _dir) = embedded();
    search_suite::forget::run(open).await;
}

/// Says that a test was skipped, where `scripts/test` counts it: straight to stderr, past the
/// harness's capture (which swallows `eprintln!` of a passing test), so that a test that
/// returns early is not taken for one that passed.
fn skipped(test: &str, reason: &str) {
    use std::io::Write;
    let line = format!("test-skipped: {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A real Meilisearch for one test, in indexes of its own: the server `MEILI_URL` (and
/// `MEILI_MASTER_KEY` if it has one) names, as `scripts/test` sets them with the server it
/// starts.
struct Meili {
    url: String,
    key: Option<String>,
    uid: String,
}

impl Meili {
    /// `None`, having said that `test` was skipped, when `MEILI_URL` is not set.
    fn from_env(test: &str) -> Option<Self> {
        let Some(url) = std::env::var("MEILI_URL").ok().filter(|u| !u.is_empty()) else {
            skipped(test, "MEILI_URL not set");
            return None;
        };
        let key = std::env::var("MEILI_MASTER_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        let uid = format!("treehole_test_{}", uuid::Uuid::new_v4().simple());
        Some(Self { url, key, uid })
    }

    async fn connect(&self) -> MeiliSearch {
        MeiliSearch::connect(&self.url, self.key.as_deref(), &self.uid)
            .await
            .expect("connect to Meilisearch")
    }

    /// Opens the engine from the suite's synchronous `open`: connects on the test's runtime
    /// from a helper thread.
    fn open(&self) -> search_suite::Open {
        let runtime = tokio::runtime::Handle::current();
        let (url, key, uid) = (self.url.clone(), self.key.clone(), self.uid.clone());
        Box::new(move || {
            let handle = runtime.clone();
            let this = Meili {
                url: url.clone(),
                key: key.clone(),
                uid: uid.clone(),
            };
            std::thread::spawn(move || {
                Arc::new(handle.block_on(this.connect())) as Arc<dyn SearchIndex>
            })
            .join()
            .expect("connect thread")
        })
    }

    /// Leaves the server as the test found it.
    async fn delete_indexes(&self) {
        self.connect()
            .await
            .delete_indexes()
            .await
            .expect("delete the test's indexes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meilisearch_passes_the_search_suite() {
    let Some(meili) = Meili::from_env("meilisearch_passes_the_search_suite") else {
        return;
    };
    search_suite::run(meili.open()).await;
    meili.delete_indexes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meilisearch_forgets_named_authors() {
    let Some(meili) = Meili::from_env("meilisearch_forgets_named_authors") else {
        return;
    };
    search_suite::forget::run(meili.open()).await;
    meili.delete_indexes().await;
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
