//! The Kafka event log end to end: commands -> store -> relay -> broker -> Kafka-fed projector
//! -> read model, compared with the store-fed read model line for line; a relay killed with
//! SIGKILL and a broker restarted mid-stream lose nothing; readiness reflects a dead broker.
//!
//! The brokers are real: `TREEHOLE_TEST_KAFKA_BROKERS` (the in-memory tansu that scripts/test
//! starts) and `TREEHOLE_TANSU_SQLITE_BIN` (tansu with its SQLite storage, started and
//! restarted by the test itself). Without them the tests say they were skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use infra::read_model::{PostgresReadModels, ReadModels, SqliteReadModels};
use projections::ReadModelStore;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::{
    HeldPort, Meili, TestApp, position, postgres_backend, read_models_of, spawn_app_with, str_field,
};

const PROJECTIONS: [&str; 4] = ["users", "feed", "comments", "stats"];

fn brokers() -> Option<String> {
    let brokers = std::env::var("TREEHOLE_TEST_KAFKA_BROKERS").ok();
    if brokers.is_none() {
        crate::helpers::skipped_here(
            "TREEHOLE_TEST_KAFKA_BROKERS not set (scripts/test starts a broker)",
        );
    }
    brokers
}

/// Consumer-group timings that make a group join take about a second instead of 23 (tests
/// only; librdkafka's defaults suit production).
fn fast_groups() -> BTreeMap<String, String> {
    [
        ("session.timeout.ms", "2000"),
        ("heartbeat.interval.ms", "500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn options_env(options: &BTreeMap<String, String>) -> String {
    options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Kafka settings of one test: its own topic and consumer groups.
struct Topic {
    brokers: String,
    topic: String,
    groups: String,
    partitions: i32,
    /// librdkafka options of every client of this topic (the app's, the relay's, the worker's).
    options: BTreeMap<String, String>,
}

impl Topic {
    fn new(brokers: &str, partitions: i32) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            brokers: brokers.to_owned(),
            topic: format!("treehole.test.{id}"),
            groups: format!("treehole.test.{id}."),
            partitions,
            options: fast_groups(),
        }
    }

    fn configure(&self, s: &mut api::cli::config::Settings) {
        s.kafka.brokers = Some(self.brokers.clone());
        s.kafka.topic = self.topic.clone();
        s.kafka.group_prefix = self.groups.clone();
        s.kafka.partitions = self.partitions;
        s.kafka.options = self.options.clone();
    }

    /// A `treehole` child process with this topic's settings and nothing else of the
    /// environment's `TREEHOLE_*`.
    fn command(&self, args: &[&str], log: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_treehole"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TREEHOLE_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("TREEHOLE_KAFKA_BROKERS", &self.brokers)
            .env("TREEHOLE_KAFKA_TOPIC", &self.topic)
            .env("TREEHOLE_KAFKA_GROUP_PREFIX", &self.groups)
            .env("TREEHOLE_KAFKA_PARTITIONS", self.partitions.to_string())
            .env("TREEHOLE_KAFKA_OPTIONS", options_env(&self.options))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .expect("a log"),
            )
            .kill_on_drop(true);
        command
    }
}

/// Where a Kafka-fed worker keeps its own read models: a data directory of its own, or a
/// database of its own when the suite runs on PostgreSQL.
/// It opens the topic's sealed values through the application's key store, with its secret.
struct WorkerTarget {
    dir: tempfile::TempDir,
    database_url: Option<String>,
    /// `TREEHOLE_KEY_STORE` and `TREEHOLE_SECRET` of the application whose topic it reads.
    keys: Option<(String, String)>,
}

impl WorkerTarget {
    async fn new(app: Option<&TestApp>) -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temp dir"),
            database_url: postgres_backend().await,
            keys: app.map(|app| {
                let store = app
                    .database_url
                    .clone()
                    .unwrap_or_else(|| app.data.join("events.db").display().to_string());
                (store, hex::encode(app.secret()))
            }),
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec!["--data".to_owned(), self.dir.path().display().to_string()];
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".to_owned(), url.clone()]);
        }
        args
    }

    /// Points a worker at the application's key store and secret.
    fn key_env(&self, command: &mut Command) {
        if let Some((store, secret)) = &self.keys {
            command
                .env("TREEHOLE_KEY_STORE", store)
                .env("TREEHOLE_SECRET", secret);
        }
    }

    async fn read_models(&self) -> Arc<dyn ReadModels> {
        match &self.database_url {
            Some(url) => Arc::new(PostgresReadModels::connect(url).await.expect("models")),
            None => Arc::new(
                SqliteReadModels::open(&self.dir.path().join("readmodels.db"))
                    .await
                    .expect("models"),
            ),
        }
    }
}

fn start(topic: &Topic, args: &[String], log: &Path) -> Child {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    topic.command(&args, log).spawn().expect("treehole starts")
}

fn start_kafka_worker(topic: &Topic, target: &WorkerTarget, log: &Path) -> Child {
    let mut args = vec!["project".to_owned(), "--source".into(), "kafka".into()];
    args.extend(target.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = topic.command(&args, log);
    target.key_env(&mut command);
    command.spawn().expect("treehole starts")
}

fn start_relay(topic: &Topic, app: &TestApp, log: &Path) -> Child {
    let mut args = vec![
        "relay".to_owned(),
        "--data".into(),
        app.data.display().to_string(),
    ];
    if let Some(url) = &app.database_url {
        args.extend(["--database-url".to_owned(), url.clone()]);
    }
    start(topic, &args, log)
}

/// The last `lines` lines of a log, without librdkafka's repeated disconnection notices.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("Disconnected: connection"))
        .collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    format!(
        "--- {} (last {lines} lines but disconnections)\n{tail}\n",
        path.display()
    )
}

/// Waits until every projection of `models` has applied `head`, then returns their dumps; on
/// a timeout the failure shows the tail of each of `logs`.
async fn caught_up_dumps(
    models: &dyn ReadModels,
    head: u64,
    timeout: Duration,
    logs: &[&Path],
) -> Vec<Vec<String>> {
    caught_up_dumps_reviving(models, head, timeout, logs, || async {}).await
}

/// How long the Kafka-fed projections may stand still, behind, before `on_stall` is called:
/// longer than a consumer group's rebalance after a broker restart (the session is 15 s).
const STALL: Duration = Duration::from_secs(25);

/// [`caught_up_dumps`], calling `on_stall` whenever the projections stood still for [`STALL`]
/// while behind: the consumers' lack of progress, not a broker's log line, is what says that
/// something upstream stopped serving.
async fn caught_up_dumps_reviving<F, Fut>(
    models: &dyn ReadModels,
    head: u64,
    timeout: Duration,
    logs: &[&Path],
    mut on_stall: F,
) -> Vec<Vec<String>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = Instant::now() + timeout;
    let mut progress = (Vec::new(), Instant::now());
    loop {
        let mut behind = Vec::new();
        let mut positions = Vec::new();
        for name in PROJECTIONS {
            let at = models
                .live(name)
                .await
                .expect("live")
                .map_or(0, |g| g.position);
            positions.push(at);
            if at < head {
                behind.push(format!("{name} at {at}"));
            }
        }
        if behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Kafka-fed read models did not reach position {head}: {behind:?}\n{}",
            logs.iter().map(|l| log_tail(l, 150)).collect::<String>()
        );
        if positions != progress.0 {
            progress = (positions, Instant::now());
        } else if progress.1.elapsed() >= STALL {
            eprintln!("the Kafka-fed read models stood still for {STALL:?} at {behind:?}");
            on_stall().await;
            progress.1 = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut dumps = Vec::new();
    for name in PROJECTIONS {
        dumps.push(models.dump(name).await.expect("dump"));
    }
    dumps
}

async fn store_fed_dumps(app: &TestApp, head: u64) -> Vec<Vec<String>> {
    // The app's own projectors read the store; wait for them through read-your-writes.
    app.get(&format!("/posts?after={head}")).await.expect(200);
    app.get(&format!("/stats/overview?after={head}"))
        .await
        .expect(200);
    let scratch = tempfile::tempdir().expect("a temp dir");
    let (live, _) = read_models_of(app, scratch.path()).await;
    let mut dumps = Vec::new();
    for name in PROJECTIONS {
        dumps.push(live.dump(name).await.expect("dump"));
    }
    dumps
}

/// Some of everything: users, named and anonymous posts and comments, a deleted comment and a
/// deleted post, a logout.
async fn forum_traffic(app: &TestApp, prefix: &str, users: usize) -> u64 {
    let mut tokens = Vec::new();
    for i in 0..users {
        tokens.push(app.new_user(&format!("{prefix}{i}")).await.token);
    }
    let mut last = 0;
    for (i, token) in tokens.iter().enumerate() {
        let post = app
            .create_post(
                token,
                &json!({"title": format!("t{i}"), "body": format!("post {i}"), "anonymous": i.is_multiple_of(2), "tags": ["kafka"]}),
            )
            .await
            .expect(201);
        let post_id = str_field(&post, "post_id").to_owned();
        for (j, commenter) in tokens.iter().enumerate() {
            let c = app
                .comment(
                    commenter,
                    &post_id,
                    &json!({"body": format!("c{i}.{j}"), "anonymous": !j.is_multiple_of(3)}),
                )
                .await
                .expect(201);
            last = position(&c);
            if j == 1 {
                let id = str_field(&c, "comment_id");
                let d = app
                    .delete(&format!("/posts/{post_id}/comments/{id}"), commenter)
                    .await;
                assert!(d.status.is_success(), "delete: {}", d.text);
            }
        }
        if i == users - 1 {
            let d = app.delete(&format!("/posts/{post_id}"), token).await;
            assert!(d.status.is_success(), "delete post: {}", d.text);
        }
    }
    let out = app.delete("/sessions/current", &tokens[0]).await;
    assert!(out.status.is_success(), "logout: {}", out.text);
    last.max(app.head().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kafka_fed_read_model_equals_the_store_fed_one() {
    let Some(brokers) = brokers() else { return };
    // Three partitions: the worker must put the streams back into the store's order.
    let topic = Topic::new(&brokers, 3);
    let app = spawn_app_with(|s| topic.configure(s)).await;
    let logs = tempfile::tempdir().expect("a temp dir");
    let log = logs.path().join("worker.log");
    let target = WorkerTarget::new(Some(&app)).await;
    let mut worker = start_kafka_worker(&topic, &target, &log);

    let head = forum_traffic(&app, "kafka", 6).await;
    assert!(head > 60, "too little traffic: {head}");
    let expected = store_fed_dumps(&app, head).await;
    let models = target.read_models().await;
    let got = caught_up_dumps(models.as_ref(), head, Duration::from_secs(60), &[&log]).await;
    for (name, (a, b)) in PROJECTIONS.iter().zip(expected.iter().zip(&got)) {
        assert!(!a.is_empty(), "{name} is empty");
        assert_eq!(
            a, b,
            "{name}: the Kafka-fed model differs from the store-fed one"
        );
    }

    // More traffic after the worker caught up is followed too.
    let more = forum_traffic(&app, "more", 2).await;
    let expected = store_fed_dumps(&app, more).await;
    let got = caught_up_dumps(models.as_ref(), more, Duration::from_secs(60), &[&log]).await;
    assert_eq!(expected, got, "after more traffic");
    worker.kill().await.expect("stop the worker");
    app.assert_no_server_errors();

    // The analysts' tail of the topic is pseudonymised: no raw user id, e-mail or secret hash.
    let tail = topic
        .command(
            &[
                "events",
                "tail",
                "--from-beginning",
                "--idle-timeout",
                "3",
                "--data",
            ],
            &logs.path().join("tail.log"),
        )
        .arg(&app.data)
        .output()
        .await
        .expect("events tail runs");
    assert!(tail.status.success(), "events tail failed");
    let text = String::from_utf8(tail.stdout).expect("utf-8");
    assert_eq!(text.lines().count() as u64, more, "one line per event");
    let raw = app
        .event_store()
        .read_all(0, 100_000)
        .await
        .expect("the log");
    for envelope in &raw {
        if envelope.stream.as_str().starts_with("user-") {
            let id = envelope.stream.as_str().trim_start_matches("user-");
            assert!(!text.contains(id), "raw user id {id} in the tail");
        }
        for secret in ["email", "username", "password_hash", "token_hash"] {
            // Personal values as the store opens them, other secrets as stored.
            let value = &envelope.data[secret];
            let value = value["$personal"].get("value").unwrap_or(value);
            if let Some(v) = value.as_str().filter(|v| !v.is_empty()) {
                assert!(!text.contains(v), "{secret} {v} in the tail");
            }
        }
    }

    // The relay's status is visible to operators.
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status.as_u16(), 200, "{}", ready.text);
}

/// The search projection fed from the topic into Meilisearch (`treehole project --source kafka
/// --only search` with the `TREEHOLE_MEILI_*` settings) holds the same documents as the
/// application's store-fed one, in an index beside it on the same server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kafka_fed_search_index_on_meilisearch_equals_the_store_fed_one() {
    const TEST: &str = "kafka::a_kafka_fed_search_index_on_meilisearch_equals_the_store_fed_one";
    let Some(meili) = Meili::from_env(TEST) else {
        return;
    };
    let Some(brokers) = brokers() else {
        return;
    };
    let topic = Topic::new(&brokers, 3);
    let (app_index, worker_index) = (Meili::new_index("kafka"), Meili::new_index("kafka"));
    let app = spawn_app_with(|s| {
        topic.configure(s);
        s.search = meili.settings(&app_index);
        // Meilisearch's one task queue is shared with the other suites of the run.
        s.consistency_timeout_ms = 30_000;
    })
    .await;
    let logs = tempfile::tempdir().expect("a temp dir");
    let log = logs.path().join("worker.log");
    let target = WorkerTarget::new(Some(&app)).await;
    let mut args = vec![
        "project".to_owned(),
        "--source".into(),
        "kafka".into(),
        "--only".into(),
        "search".into(),
    ];
    args.extend(target.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = topic.command(&args, &log);
    target.key_env(&mut command);
    let mut worker = command
        .env("TREEHOLE_MEILI_URL", &meili.url)
        .env("TREEHOLE_MEILI_KEY", meili.key.clone().unwrap_or_default())
        .env("TREEHOLE_MEILI_INDEX", &worker_index)
        .spawn()
        .expect("treehole starts");

    let head = forum_traffic(&app, "ksearch", 4).await;
    app.get(&format!("/search?q=post&after={head}"))
        .await
        .expect(200);
    let expected = meili
        .engine(&app_index)
        .await
        .dump("search")
        .await
        .expect("the store-fed dump");
    assert!(!expected.is_empty(), "the store-fed index is empty");
    let fed = meili.engine(&worker_index).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while fed
        .live("search")
        .await
        .ok()
        .flatten()
        .is_none_or(|g| g.position < head)
    {
        assert!(
            Instant::now() < deadline,
            "the Kafka-fed search index did not reach position {head}\n{}",
            log_tail(&log, 150)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        expected,
        fed.dump("search").await.expect("the Kafka-fed dump"),
        "the Kafka-fed search index differs from the store-fed one"
    );
    worker.kill().await.expect("stop the worker");
    drop(app);
    meili.delete(&app_index).await;
    meili.delete(&worker_index).await;
}

/// The in-process relay and a broker that cannot be reached: readiness says so, in words.
#[tokio::test]
async fn readiness_reports_an_unreachable_broker() {
    let port = HeldPort::closed();
    let topic = Topic::new(&port.address(), 1);
    let app = spawn_app_with(|s| topic.configure(s)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = app.get("/readyz").await;
        if ready.status.as_u16() == 503 {
            let body: Value = ready.json();
            let detail = body["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("Kafka relay"), "{detail}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready: {}", ready.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Commands still work: the store is the log of record; the relay catches up later.
    let user = app.new_user("offline").await;
    app.create_post(
        &user.token,
        &json!({"body": "still here", "anonymous": false}),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn a_kafka_worker_without_a_broker_fails_with_a_clear_error() {
    let port = HeldPort::closed();
    let topic = Topic::new(&port.address(), 1);
    let logs = tempfile::tempdir().expect("a temp dir");
    let log = logs.path().join("worker.log");
    let target = WorkerTarget::new(None).await;
    let worker = start_kafka_worker(&topic, &target, &log);
    let out = tokio::time::timeout(Duration::from_secs(60), worker.wait_with_output())
        .await
        .expect("the worker gives up")
        .expect("the worker ran");
    assert!(!out.status.success());
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("cannot reach the brokers"), "{log}");
}

/// tansu with its SQLite storage on a fixed loopback port, so that it can be restarted with
/// its data.
struct DurableBroker {
    bin: String,
    dir: tempfile::TempDir,
    /// Its port, kept its own between its restarts.
    port: HeldPort,
    child: Option<Child>,
    /// Where this start's part of the log begins.
    log_from: usize,
}

/// What tansu 0.6's libsql engine logs once its one storage task has stopped: that task ends
/// at the first request whose asker went away (a client closing a connection with a request
/// in flight), and from then on every request fails with it and group updates panic
/// (`tansu-storage-0.6.0/src/service.rs:337`). The broker stays up but serves nothing until
/// it is restarted; runs of the restart test failed on it 1 in 8 even at rest. Under load the
/// same stop is also logged as a group update's `SendError` (a clean-clone run of 2026-12-05
/// failed on it, the broker never revived).
const STORAGE_STOPPED: [&str; 2] = ["UnableToSend", "SendError"];

impl DurableBroker {
    async fn start() -> Option<Self> {
        let Ok(bin) = std::env::var("TREEHOLE_TANSU_SQLITE_BIN") else {
            crate::helpers::skipped_here(
                "TREEHOLE_TANSU_SQLITE_BIN not set (scripts/kafka-tools builds it)",
            );
            return None;
        };
        let mut broker = Self {
            bin,
            dir: tempfile::tempdir().expect("a temp dir"),
            port: HeldPort::for_server(),
            child: None,
            log_from: 0,
        };
        broker.restart().await;
        Some(broker)
    }

    fn address(&self) -> String {
        self.port.address()
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // A restart, not a crash of the broker: let it close its storage.
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    /// Restarts the broker when its storage task has stopped (see [`STORAGE_STOPPED`]).
    async fn revive_if_stopped(&mut self) -> bool {
        let stopped = self
            .log()
            .get(self.log_from..)
            .is_some_and(|l| STORAGE_STOPPED.iter().any(|s| l.contains(s)));
        if stopped {
            self.restart().await;
        }
        stopped
    }

    /// Watches the broker and restarts it whenever its storage task stops, until dropped;
    /// counts the restarts in `revived`. The test's own restart goes through the same lock.
    fn supervise(broker: Arc<tokio::sync::Mutex<Self>>, revived: Arc<AtomicU64>) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if broker.lock().await.revive_if_stopped().await {
                    revived.fetch_add(1, Ordering::Relaxed);
                }
            }
        }))
    }

    async fn restart(&mut self) {
        self.stop().await;
        self.log_from = self.log().len();
        let url = format!("tcp://{}", self.port.address());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("a log");
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(self.address())
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "tansu did not start: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every position in the topic, read back with `treehole events tail --source kafka --raw`.
async fn positions_in_topic(topic: &Topic, log: &Path) -> Vec<u64> {
    let args = [
        "events",
        "tail",
        "--source",
        "kafka",
        "--raw",
        "--from-beginning",
        "--idle-timeout",
        "3",
    ];
    let out = topic
        .command(&args, log)
        .output()
        .await
        .expect("events tail runs");
    assert!(
        out.status.success(),
        "events tail failed: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let envelope: Value = serde_json::from_str(line).expect("an envelope per line");
            envelope["position"].as_u64().expect("a position")
        })
        .collect()
}

/// What tansu 0.6 logs for every request once its one storage task has stopped for good (it
/// panics in its `update_group`, `tansu-storage-0.6.0/src/service.rs:337`), which restarting
/// the broker does not always cure.
const TANSU_STORAGE_STOPPED: &str = "UnableToSend";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_relay_and_a_restarted_broker_lose_nothing() {
    // The test restarts the broker whenever it stops serving (see below), yet in 2 of 7 clean
    // runs around 2026-12-07 tansu's storage task stopped and stayed stopped, and the test
    // failed on the broker's fault with treehole's models behind. A run that failed with that
    // fault in its message, and only then, runs once more on a fresh broker; a second failure
    // fails the test.
    for attempt in 1..=2 {
        let Some(broker) = DurableBroker::start().await else {
            return;
        };
        let run = std::panic::AssertUnwindSafe(killed_relay_and_restarted_broker(broker));
        let Err(panic) = futures::FutureExt::catch_unwind(run).await else {
            return;
        };
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if attempt == 2 || !message.contains(TANSU_STORAGE_STOPPED) {
            std::panic::resume_unwind(panic);
        }
        eprintln!(
            "tansu's storage task stopped for good in the first run ({TANSU_STORAGE_STOPPED} in its \
             log): running once more on a fresh broker"
        );
    }
}

async fn killed_relay_and_restarted_broker(broker: DurableBroker) {
    let mut topic = Topic::new(&broker.address(), 2);
    let broker_log = broker.log_path();
    let broker = Arc::new(tokio::sync::Mutex::new(broker));
    let revived = Arc::new(AtomicU64::new(0));
    let supervisor = DurableBroker::supervise(broker.clone(), revived.clone());
    // tansu 0.6's SQLite engine serves all storage requests from one task, and an idempotent
    // producer makes that task stop: it panicked in its idempotence check after the restart
    // (and stopped silently under load before it). The broker then answers nothing, and the
    // test failed 3 runs in 4 on a loaded machine. Without idempotence the relay's retries may
    // duplicate or reorder records, which the Kafka-fed projectors must (and do) absorb.
    topic
        .options
        .insert("enable.idempotence".into(), "false".into());
    // The same engine answers heartbeats from that one task too, behind the relay's produce
    // requests and their fsyncs: with the 2 s session of `fast_groups` they timed out under
    // load, every group rebalanced, and the rebalances timed out again (a failed run's worker
    // log showed nothing but session timeouts for two minutes). Nothing on the consumer side
    // is killed here, so a session of production-like length costs nothing.
    topic
        .options
        .insert("session.timeout.ms".into(), "15000".into());
    topic
        .options
        .insert("heartbeat.interval.ms".into(), "1000".into());
    // The relay runs as its own process here, so that it can be killed.
    let app = Arc::new(
        spawn_app_with(|s| {
            topic.configure(s);
            s.kafka.relay = false;
        })
        .await,
    );
    let logs = tempfile::tempdir().expect("a temp dir");
    let (relay_log, worker_log) = (
        logs.path().join("relay.log"),
        logs.path().join("worker.log"),
    );
    let mut relay = start_relay(&topic, &app, &relay_log);
    let target = WorkerTarget::new(Some(&app)).await;
    let mut worker = start_kafka_worker(&topic, &target, &worker_log);

    let user = app.new_user("steady").await;
    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (app, stop, last, token) =
            (app.clone(), stop.clone(), last.clone(), user.token.clone());
        writers.push(tokio::spawn(async move {
            let post = app
                .create_post(
                    &token,
                    &json!({"body": format!("w{w}"), "anonymous": w == 0}),
                )
                .await
                .expect(201);
            let post_id = str_field(&post, "post_id").to_owned();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let c = app
                    .comment(
                        &token,
                        &post_id,
                        &json!({"body": format!("{w}.{n}"), "anonymous": n.is_multiple_of(2)}),
                    )
                    .await
                    .expect(201);
                last.fetch_max(position(&c), Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    let until = |at: u64| {
        let last = last.clone();
        async move {
            while last.load(Ordering::Relaxed) < at {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    until(150).await;
    relay.kill().await.expect("SIGKILL the relay");
    let killed_at = last.load(Ordering::Relaxed);
    until(killed_at + 100).await;
    let mut relay = start_relay(&topic, &app, &relay_log);
    until(killed_at + 250).await;
    broker.lock().await.restart().await;
    let restarted_at = last.load(Ordering::Relaxed);
    until(restarted_at + 150).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("a writer");
    }
    let head = app.head().await;

    let models = target.read_models().await;
    // The broker's storage task may also stop without a word (it did after the test's own
    // restart in a clean-clone run of 2026-12-05, which had moved the log mark past the
    // evidence), so the consumers standing still restarts the broker too.
    let got = caught_up_dumps_reviving(
        models.as_ref(),
        head,
        Duration::from_secs(180),
        &[&worker_log, &relay_log, &broker_log],
        || {
            let (broker, revived) = (broker.clone(), revived.clone());
            async move {
                broker.lock().await.restart().await;
                revived.fetch_add(1, Ordering::Relaxed);
            }
        },
    )
    .await;
    let expected = store_fed_dumps(&app, head).await;
    assert_eq!(
        expected, got,
        "the Kafka-fed model differs from the store-fed one"
    );
    relay.kill().await.expect("stop the relay");
    worker.kill().await.expect("stop the worker");

    // Read the topic back; a read that met the broker's storage task stopped ends idle with
    // part of the topic, so restart the broker and read again, a few times, until one read has
    // it all.
    let all: std::collections::BTreeSet<u64> = (1..=head).collect();
    let mut distinct = std::collections::BTreeSet::new();
    let mut positions = Vec::new();
    for _ in 0..5 {
        positions = positions_in_topic(&topic, &logs.path().join("tail.log")).await;
        distinct = positions.iter().copied().collect();
        if distinct == all {
            break;
        }
        // A read that stopped short met a broker serving nothing: restart it (its data is
        // durable), whether or not it said why.
        broker.lock().await.restart().await;
        revived.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(
        distinct,
        all,
        "the topic must hold every event at least once (broker log:\n{})",
        broker.lock().await.log()
    );
    drop(supervisor);
    eprintln!(
        "the durable broker stopped serving {} time(s) and was restarted (tansu 0.6)",
        revived.load(Ordering::Relaxed)
    );
    eprintln!(
        "topic: {} records for {head} events ({} duplicates after the kill and the restart)",
        positions.len(),
        positions.len() as u64 - head
    );
    app.assert_no_server_errors();
}

/// What a reader of the topic learns: no e-mail address, username or password hash in any
/// record, no author id next to anonymous content, and nothing that links two anonymous
/// comments of one user under two posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_topic_keeps_personal_data_and_authorship_secret() {
    let Some(brokers) = brokers() else { return };
    let topic = Topic::new(&brokers, 1);
    let app = spawn_app_with(|s| topic.configure(s)).await;
    let (a, b, last) = crate::privacy::two_writers(&app, "topic").await;
    let logs = tempfile::tempdir().expect("a temp dir");
    let log = logs.path().join("tail.log");
    let mut records: Vec<Value> = Vec::new();
    for _ in 0..30 {
        let out = topic
            .command(
                &[
                    "events",
                    "tail",
                    "--source",
                    "kafka",
                    "--raw",
                    "--from-beginning",
                    "--idle-timeout",
                    "3",
                ],
                &log,
            )
            .output()
            .await
            .expect("events tail runs");
        assert!(out.status.success(), "{}", log_tail(&log, 20));
        let text = String::from_utf8(out.stdout).expect("utf-8");
        for w in [&a, &b] {
            crate::privacy::assert_no_personal_data(&text, w, "the topic");
        }
        records = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("an envelope per line"))
            .collect();
        if records.iter().any(|r| r["position"].as_u64() == Some(last)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        records.iter().any(|r| r["position"].as_u64() == Some(last)),
        "the relay did not publish up to {last}"
    );
    assert!(records.iter().any(|r| r.to_string().contains("$sealed")));
    for w in [&a, &b] {
        assert_eq!(
            crate::privacy::assert_anonymous_records_name_nobody(&records, w, "the topic"),
            w.anonymous.len()
        );
    }
    crate::privacy::assert_comments_unlinkable(&records, &a, "the topic");
    app.assert_no_server_errors();
}
