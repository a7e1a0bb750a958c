//! The real `treehole` binary killed with SIGKILL in the middle of a burst of commands: every
//! acknowledged command survives the restart, and read models rebuilt from the log alone equal
//! the ones that lived through the crash.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commands::EventStore;
use infra::event_store::SqliteEventStore;
use infra::read_model::SqliteReadModels;
use projections::ReadModelStore;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::helpers::{TestApp, TestUser, position, str_field};

const WRITERS: usize = 16;
/// Acknowledged commands after which the server is killed.
const KILL_AT: usize = 300;

/// A `treehole serve` child process.
struct Server {
    child: Child,
    app: TestApp,
    log: PathBuf,
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Server {
    /// Starts `treehole serve` on a free port and reads the address it prints.
    async fn start(data: &Path, log: PathBuf) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_treehole"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TREEHOLE_") {
                command.env_remove(name);
            }
        }
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("TREEHOLE_RATE_LIMITS", "off")
            .env("TREEHOLE_PASSWORD_MEMORY_KIB", "1024")
            .env("TREEHOLE_PASSWORD_ITERATIONS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .kill_on_drop(true);
        let mut child = command.spawn().expect("the treehole binary starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let address = match first {
            Ok(Ok(Some(line))) => line
                .strip_prefix("treehole listening on ")
                .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
                .to_owned(),
            other => panic!(
                "treehole did not say where it listens ({other:?}):\n{}",
                log_tail(&log)
            ),
        };
        // Keep reading so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server {
            child,
            app: TestApp::external(&address, data),
            log,
        }
    }

    /// SIGTERM, then waits for a clean exit.
    async fn stop(mut self) {
        let pid = self.child.id().expect("a running child").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit after SIGTERM:\n{}", log_tail(&self.log)))
            .expect("the exit status");
        assert!(
            status.success(),
            "treehole exited with {status} after SIGTERM:\n{}",
            log_tail(&self.log)
        );
    }
}

/// A command the server acknowledged with a 2xx.
#[derive(Debug, Clone)]
struct Ack {
    user: usize,
    post_id: String,
    /// `None` for a post.
    comment_id: Option<String>,
    anonymous: bool,
    author_name: String,
    position: u64,
}

fn ack(user: usize, post_id: &str, body: &Value, anonymous: bool) -> Ack {
    Ack {
        user,
        post_id: post_id.to_owned(),
        comment_id: body["comment_id"].as_str().map(str::to_owned),
        anonymous,
        author_name: str_field(body, "author_name").to_owned(),
        position: position(body),
    }
}

/// What the writers of the burst share.
struct Burst {
    users: Vec<TestUser>,
    acks: Mutex<Vec<Ack>>,
    /// Non-2xx answers (there must be none).
    refusals: Mutex<Vec<String>>,
    count: AtomicUsize,
    /// Notified when `KILL_AT` commands are acknowledged.
    enough: Notify,
}

/// One writer of the burst: posts and comments, named and anonymous, until the server is gone.
async fn writer(app: Arc<TestApp>, task: usize, mut posts: Vec<String>, burst: Arc<Burst>) {
    let user = task % burst.users.len();
    for n in 0usize.. {
        let anonymous = !(task + n).is_multiple_of(3);
        let (path, post_id) = if n % 5 == 4 {
            ("/posts".to_owned(), None)
        } else {
            let post = posts[(task * 7 + n) % posts.len()].clone();
            (format!("/posts/{post}/comments"), Some(post))
        };
        let body = json!({"body": format!("burst {task}/{n}"), "anonymous": anonymous});
        let request = app
            .client
            .post(app.url(&path))
            .bearer_auth(&burst.users[user].token)
            .json(&body)
            .build()
            .expect("a request");
        let reply = match app.try_send(request).await {
            Ok(r) => r,
            // The server was killed.
            Err(_) => return,
        };
        if !reply.status.is_success() {
            burst
                .refusals
                .lock()
                .unwrap()
                .push(format!("{path}: {} {}", reply.status, reply.text));
            return;
        }
        let answer = reply.json();
        let post_id = match post_id {
            Some(p) => p,
            None => {
                let p = str_field(&answer, "post_id").to_owned();
                posts.push(p.clone());
                p
            }
        };
        burst
            .acks
            .lock()
            .unwrap()
            .push(ack(user, &post_id, &answer, anonymous));
        if burst.count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AT {
            burst.enough.notify_one();
        }
    }
}

/// Every acknowledged post is readable and every acknowledged comment listed, as answered.
async fn assert_acks_visible(app: &TestApp, acks: &[Ack], after: u64) {
    app.get(&format!("/posts?limit=1&after={after}"))
        .await
        .expect(200);
    let mut by_post: BTreeMap<&str, Vec<&Ack>> = BTreeMap::new();
    for a in acks {
        by_post.entry(a.post_id.as_str()).or_default().push(a);
    }
    for (post_id, acked) in by_post {
        let view = app.get(&format!("/posts/{post_id}")).await.expect(200);
        let listed: HashMap<String, Value> = app
            .all_pages(&format!("/posts/{post_id}/comments"), after)
            .await
            .into_iter()
            .map(|c| (str_field(&c, "comment_id").to_owned(), c))
            .collect();
        for a in acked {
            match &a.comment_id {
                None => assert_eq!(view["author_name"], a.author_name.as_str(), "{view}"),
                Some(c) => {
                    let item = listed
                        .get(c)
                        .unwrap_or_else(|| panic!("acknowledged comment {c} is lost: {a:?}"));
                    assert_eq!(item["author_name"], a.author_name.as_str(), "{item}");
                    assert_eq!(item["anonymous"], a.anonymous, "{item}");
                }
            }
        }
    }
}

/// Each anonymous commenter has one name per post, which nobody else has.
fn assert_pseudonyms_consistent(acks: &[Ack], owners: &HashMap<String, usize>) {
    let mut names: HashMap<(&str, usize), &str> = HashMap::new();
    let mut holders: HashMap<(&str, &str), usize> = HashMap::new();
    // Only the author of an anonymous post is its host; under a named post they get a
    // pseudonym like anyone.
    let anonymous_posts: Vec<&str> = acks
        .iter()
        .filter(|a| a.comment_id.is_none() && a.anonymous)
        .map(|a| a.post_id.as_str())
        .collect();
    for a in acks
        .iter()
        .filter(|a| a.comment_id.is_some() && a.anonymous)
    {
        if owners.get(&a.post_id) == Some(&a.user) && anonymous_posts.contains(&a.post_id.as_str())
        {
            assert_eq!(a.author_name, "洞主", "{a:?}");
            continue;
        }
        let name = names
            .entry((a.post_id.as_str(), a.user))
            .or_insert(a.author_name.as_str());
        assert_eq!(*name, a.author_name, "a commenter changed name: {a:?}");
        let holder = holders
            .entry((a.post_id.as_str(), a.author_name.as_str()))
            .or_insert(a.user);
        assert_eq!(*holder, a.user, "two commenters share a name: {a:?}");
    }
}

/// The whole log is readable, positions increase, stream versions have no holes, and every
/// acknowledged command's event is where its answer said.
async fn assert_log_holds(events_db: &Path, acks: &[Ack], head: u64) {
    let store = SqliteEventStore::open(events_db)
        .await
        .expect("the log opens");
    assert_eq!(store.head().await.expect("a head"), head);
    let mut by_position = HashMap::new();
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut after = 0;
    loop {
        let batch = store.read_all(after, 500).await.expect("the log reads");
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in batch {
            let v = versions.entry(e.stream.as_str().to_owned()).or_insert(0);
            assert_eq!(e.version, *v + 1, "a hole in stream {}", e.stream.as_str());
            *v = e.version;
            by_position.insert(e.position, e);
        }
    }
    assert_eq!(after, head);
    let mut positions: Vec<_> = by_position.keys().copied().collect();
    positions.sort_unstable();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    for a in acks {
        let e = by_position
            .get(&a.position)
            .unwrap_or_else(|| panic!("acknowledged event is not in the log: {a:?}"));
        assert_eq!(e.stream.as_str(), format!("post-{}", a.post_id), "{a:?}");
        match &a.comment_id {
            None => assert_eq!(e.event_type, "PostPublished"),
            Some(c) => {
                assert_eq!(e.event_type, "CommentAdded");
                assert_eq!(e.data["comment_id"], c.as_str(), "{a:?}");
            }
        }
    }
}

/// Waits (with `?after=`) until every projection has applied `head`.
async fn wait_for_projections(app: &TestApp, token: &str, post_id: &str, head: u64) {
    app.get_auth(&format!("/me?after={head}"), token)
        .await
        .expect(200);
    app.get(&format!("/posts/{post_id}/comments?limit=1&after={head}"))
        .await
        .expect(200);
    app.get(&format!("/stats/overview?after={head}"))
        .await
        .expect(200);
}

async fn dump(dir: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let models = SqliteReadModels::open(&dir.join("readmodels.db"))
        .await
        .expect("the read models open");
    let mut out = BTreeMap::new();
    for name in ["users", "feed", "comments", "stats"] {
        out.insert(name, models.dump(name).await.expect("a dump"));
    }
    models.close().await;
    out
}

/// The log (with its key tables, in the same file) and the server secret that unwraps the keys.
fn copy_log(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a directory");
    for file in ["events.db", "events.db-wal", "secret.key"] {
        let source = from.join(file);
        if source.exists() {
            std::fs::copy(&source, to.join(file)).expect("a copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_commands_survive_sigkill_and_a_rebuild_matches() {
    if crate::helpers::on_postgres() {
        crate::helpers::skipped_here("crash safety runs the embedded binary on its SQLite files");
        return;
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, tmp.path().join("serve-1.log")).await;
    let app = Arc::new(TestApp::external(&server.app.address, &data));

    let mut users = Vec::new();
    for name in ["crash_amy", "crash_ben", "crash_cat", "crash_dan"] {
        users.push(app.new_user(name).await);
    }
    let mut owners = HashMap::new();
    let mut posts = Vec::new();
    let mut acks = Vec::new();
    for (user, anonymous) in [(0, true), (1, false), (2, true)] {
        let body = json!({"body": format!("before the crash {user}"), "anonymous": anonymous});
        let answer = app.create_post(&users[user].token, &body).await.expect(201);
        let post_id = str_field(&answer, "post_id").to_owned();
        acks.push(ack(user, &post_id, &answer, anonymous));
        owners.insert(post_id.clone(), user);
        posts.push(post_id);
    }

    // The burst, killed once KILL_AT commands are acknowledged.
    let burst = Arc::new(Burst {
        users,
        acks: Mutex::new(Vec::new()),
        refusals: Mutex::new(Vec::new()),
        count: AtomicUsize::new(0),
        enough: Notify::new(),
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|task| tokio::spawn(writer(app.clone(), task, posts.clone(), burst.clone())))
        .collect();
    if tokio::time::timeout(Duration::from_secs(120), burst.enough.notified())
        .await
        .is_err()
    {
        panic!(
            "the burst stalled at {} acknowledgements; refusals {:?}:\n{}",
            burst.count.load(Ordering::SeqCst),
            burst.refusals.lock().unwrap(),
            log_tail(&server.log)
        );
    }
    server.child.kill().await.expect("SIGKILL");
    for w in writers {
        w.await.expect("a writer");
    }
    let refusals = burst.refusals.lock().unwrap().clone();
    assert!(
        refusals.is_empty(),
        "refused during the burst: {refusals:?}"
    );
    let burst_acks = burst.acks.lock().unwrap().clone();
    assert!(burst_acks.len() >= KILL_AT);
    for a in &burst_acks {
        if a.comment_id.is_none() {
            owners.insert(a.post_id.clone(), a.user);
        }
    }
    acks.extend(burst_acks);
    let users = &burst.users;
    let acknowledged = acks.iter().map(|a| a.position).max().expect("acks");

    // Restart on the same data: everything acknowledged is there.
    let server = Server::start(&data, tmp.path().join("serve-2.log")).await;
    let app = &server.app;
    assert_acks_visible(app, &acks, acknowledged).await;
    assert_pseudonyms_consistent(&acks, &owners);

    // Names survive the restart: everyone comments once more on the first post.
    for (user, u) in users.iter().enumerate() {
        let body = json!({"body": "after the restart", "anonymous": true});
        let answer = app.comment(&u.token, &posts[0], &body).await.expect(201);
        acks.push(ack(user, &posts[0], &answer, true));
    }
    assert_pseudonyms_consistent(&acks, &owners);
    let head = acks.iter().map(|a| a.position).max().expect("acks");
    assert_acks_visible(app, &acks, head).await;
    wait_for_projections(app, &users[0].token, &posts[0], head).await;
    app.assert_no_server_errors();
    server.stop().await;

    // Rebuild every read model from a copy of the log alone.
    let rebuilt = tmp.path().join("rebuilt");
    copy_log(&data, &rebuilt);
    assert_log_holds(&data.join("events.db"), &acks, head).await;
    let server = Server::start(&rebuilt, tmp.path().join("serve-3.log")).await;
    wait_for_projections(&server.app, &users[0].token, &posts[0], head).await;
    assert_acks_visible(&server.app, &acks, head).await;
    server.app.assert_no_server_errors();
    server.stop().await;

    let (lived, fresh) = (dump(&data).await, dump(&rebuilt).await);
    for (name, lines) in &lived {
        let other = &fresh[name];
        assert!(!lines.is_empty(), "the {name} model is empty");
        if let Some(i) = (0..lines.len().max(other.len())).find(|&i| lines.get(i) != other.get(i)) {
            panic!(
                "{name}: the rebuild differs at line {i} ({} vs {} lines):\n  lived:   {:?}\n  rebuilt: {:?}",
                lines.len(),
                other.len(),
                lines.get(i),
                other.get(i)
            );
        }
    }
    let distinct: HashSet<&str> = acks.iter().map(|a| a.post_id.as_str()).collect();
    // Posts whose answer was lost in the kill may have committed too.
    assert!(fresh["feed"].len() >= distinct.len());
}
