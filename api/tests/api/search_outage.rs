//! Meilisearch going away while the application runs: queries answer 503 problem+json,
//! `/readyz` says the search engine is the reason, posts written meanwhile are kept in the log,
//! and once the server is back the search projector resumes from the checkpoint document that
//! moved with its last applied batch, losing and repeating nothing.
//!
//! The test starts its own server (the fixture at `../shared/bin/meilisearch` from the
//! project's root, or `$TREEHOLE_MEILI_BIN`), kills it with SIGKILL and restarts it on the same
//! database and port. Without the binary it says it was skipped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use projections::ReadModelStore;
use projections::search::SearchIndex;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::{HeldPort, Meili, TestApp, position, skipped, spawn_app_with};

const TEST: &str = "search_outage::a_meilisearch_outage_answers_503_says_why_and_loses_no_post";

/// A Meilisearch server of this test's own, on loopback.
struct OwnMeili {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port, kept its own between a stop and a start.
    port: HeldPort,
    key: String,
    child: Option<Child>,
}

impl OwnMeili {
    /// Starts the server, or returns `None` (and the test said skipped) without the binary.
    async fn start() -> Option<Self> {
        let bin = match std::env::var_os("TREEHOLE_MEILI_BIN") {
            Some(bin) => PathBuf::from(bin),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bin/meilisearch"),
        };
        if !bin.is_file() {
            skipped(TEST, &format!("no Meilisearch binary at {}", bin.display()));
            return None;
        }
        let mut server = Self {
            bin,
            dir: tempfile::tempdir().expect("a temp dir"),
            port: HeldPort::for_server(),
            key: uuid::Uuid::new_v4().simple().to_string(),
            child: None,
        };
        server.launch().await;
        Some(server)
    }

    fn url(&self) -> String {
        format!("http://{}", self.port.address())
    }

    /// Runs the server on this database and port and waits until `/health` answers.
    async fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("meilisearch.log"))
            .expect("a log");
        let child = Command::new(&self.bin)
            .arg("--db-path")
            .arg(self.dir.path().join("data.ms"))
            .args(["--http-addr", &self.port.address()])
            .arg("--no-analytics")
            .env("MEILI_MASTER_KEY", &self.key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("meilisearch starts");
        self.child = Some(child);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let health = client.get(format!("{}/health", self.url())).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "Meilisearch did not answer /health within 30 s:\n{}",
            std::fs::read_to_string(self.dir.path().join("meilisearch.log")).unwrap_or_default()
        );
    }

    /// SIGKILL: no chance to finish anything in flight.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill meilisearch");
        }
    }
}

async fn post(app: &TestApp, token: &str, n: usize) -> u64 {
    let body = json!({"title": format!("Lantern {n}"), "body": "Lanterns by the lake tonight.", "anonymous": true});
    position(&app.create_post(token, &body).await.expect(201))
}

/// Searches `lantern` until the search projection has applied `head` (read-your-writes answers
/// 503 until then) and returns the total.
async fn lanterns_once_caught_up(app: &TestApp, head: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let reply = app.get(&format!("/search?q=lantern&after={head}")).await;
        if reply.status.is_success() {
            return reply.json()["total"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "search did not recover within 90 s: {} {}",
            reply.status,
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_meilisearch_outage_answers_503_says_why_and_loses_no_post() {
    let Some(mut server) = OwnMeili::start().await else {
        return;
    };
    let meili = Meili {
        url: server.url(),
        key: Some(server.key.clone()),
    };
    let index = Meili::new_index("outage");
    let app = spawn_app_with(|s| s.search = meili.settings(&index)).await;
    let user = app.new_user("lantern_writer").await;
    let mut head = 0;
    for n in 0..5 {
        head = post(&app, &user.token, n).await;
    }
    assert_eq!(lanterns_once_caught_up(&app, head).await, json!(5));
    app.get("/readyz").await.expect(200);

    // Posts arrive and the server dies under the projector's batches.
    for n in 5..35 {
        post(&app, &user.token, n).await;
    }
    server.kill().await;
    for n in 35..50 {
        post(&app, &user.token, n).await;
    }

    // Queries: 503 problem+json, not a 500 and not an empty page.
    app.get("/search?q=lantern").await.expect_problem(503);
    let ready = app.get("/readyz").await;
    ready.expect_problem(503);
    let why = ready.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        why.contains("search engine") && why.contains("Meilisearch"),
        "/readyz does not say why: {why}"
    );
    let head = app.head().await;

    // Back on the same database: every post exactly once, the checkpoint at the head, and no
    // document naming the (anonymous) author.
    server.launch().await;
    assert_eq!(lanterns_once_caught_up(&app, head).await, json!(50));
    app.get("/readyz").await.expect(200);
    let engine = meili.engine(&index).await;
    let live = engine
        .live(projections::search::NAME)
        .await
        .expect("the checkpoint")
        .expect("a live generation");
    assert_eq!(live.position, head);
    let docs = engine.documents().await.expect("documents");
    assert_eq!(docs.len(), 50, "posts lost or repeated");
    for doc in &docs {
        let text = serde_json::to_string(doc).expect("json");
        assert!(
            !text.contains(&user.user_id) && !text.contains(&user.username),
            "a search document names its author"
        );
    }

    drop(app);
    engine.delete_indexes().await.expect("delete the indexes");
    server.kill().await;
}
