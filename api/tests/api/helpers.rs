//! `spawn_app()`: the real application, in-process, on a random port, with its own data
//! directory; and small helpers that talk to it over HTTP like a client would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::cli::config::Settings;
use api::cli::startup::Application;
use commands::EventStore;
use domain::Position;
use infra::read_model::{PostgresReadModels, ReadModels, SqliteReadModels};
use projections::ReadModelStore;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

use crate::test_database::TestDatabase;

pub const PASSWORD: &str = "correct horse battery staple";

/// One answer as a client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON (panics with the body if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "{} {} answered {} with a non-JSON body ({e}): {:?}",
                self.method, self.path, self.status, self.text
            )
        })
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{} {} answered {}: {}",
            self.method,
            self.path,
            self.status,
            self.text
        );
        self.json()
    }

    /// Asserts a problem+json answer with this status and returns its `type`.
    #[track_caller]
    pub fn expect_problem(&self, status: u16) -> String {
        let body = self.expect(status);
        assert_problem_shape(self, &body);
        body["type"].as_str().unwrap_or_default().to_owned()
    }

    /// Status line, headers and body as one text, for searching everything a client saw.
    pub fn everything(&self) -> String {
        let mut s = format!("{} {}\n", self.status, self.path);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        s.push_str(&self.text);
        s
    }
}

/// An RFC 9457 problem: `application/problem+json` with string `type`, `title` and `detail`.
#[track_caller]
pub fn assert_problem_shape(reply: &Reply, body: &Value) {
    assert_eq!(
        reply.content_type(),
        "application/problem+json",
        "{} {} ({}) is not problem+json: {}",
        reply.method,
        reply.path,
        reply.status,
        reply.text
    );
    for field in ["type", "title", "detail"] {
        assert!(
            body[field].is_string(),
            "{} {}: problem without a string {field:?}: {}",
            reply.method,
            reply.path,
            reply.text
        );
    }
    assert_eq!(
        body["status"],
        json!(reply.status.as_u16()),
        "{}",
        reply.text
    );
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub user_id: String,
    pub username: String,
    pub email: String,
    pub token: String,
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The server's data directory (its outbox is where codes are read from).
    pub data: PathBuf,
    pub client: reqwest::Client,
    /// Only for an in-process application.
    store: Option<Arc<dyn EventStore>>,
    /// The in-process application's clock.
    clock: Option<api::clock::Clock>,
    /// The in-process application's background loops.
    loops: Option<api::background::supervisor::Supervisor>,
    _data_dir: Option<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    /// The PostgreSQL database of this app, when the suite runs on PostgreSQL.
    pub database_url: Option<String>,
    replies: Mutex<Vec<Reply>>,
    /// Parsed outbox files: path -> (recipient, code, order of discovery).
    outbox: Mutex<HashMap<PathBuf, (String, String, usize)>>,
}

/// `TREEHOLE_TEST_HTTP_BACKEND=postgres` runs the suite on PostgreSQL (a fresh database per
/// app on the server of `TREEHOLE_TEST_DATABASE_URL`); otherwise on the embedded default.
pub fn on_postgres() -> bool {
    std::env::var("TREEHOLE_TEST_HTTP_BACKEND").is_ok_and(|b| b == "postgres")
}

/// A fresh database for one app when the suite runs on PostgreSQL, dropped when the test's
/// thread ends.
pub async fn postgres_backend() -> Option<String> {
    if !on_postgres() {
        return None;
    }
    if let Some(why) = TestDatabase::unavailable() {
        panic!("TREEHOLE_TEST_HTTP_BACKEND=postgres needs a server: {why}");
    }
    let db = TestDatabase::create("treehole_http").await;
    let url = db.url.clone();
    MADE_HERE.with(|made| made.borrow_mut().push(db));
    Some(url)
}

thread_local! {
    /// The test databases made on this thread. libtest runs each test on a thread of its own,
    /// which ends after the test's runtime (and so its apps' connections) is gone; that is when
    /// they are dropped. The URLs are handed around as strings, so nothing else holds them.
    static MADE_HERE: std::cell::RefCell<Vec<TestDatabase>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The live read models of `app` and an empty store of the same backend, for comparing a
/// live model with a build from scratch.
pub async fn read_models_of(
    app: &TestApp,
    scratch: &Path,
) -> (Arc<dyn ReadModels>, Arc<dyn ReadModels>) {
    match &app.database_url {
        Some(url) => (
            Arc::new(PostgresReadModels::connect(url).await.expect("live models")),
            Arc::new(
                PostgresReadModels::connect(&postgres_backend().await.expect("a database"))
                    .await
                    .expect("scratch models"),
            ),
        ),
        None => (
            Arc::new(
                SqliteReadModels::open(&app.data.join("readmodels.db"))
                    .await
                    .expect("live models"),
            ),
            Arc::new(
                SqliteReadModels::open(&scratch.join("readmodels.db"))
                    .await
                    .expect("scratch models"),
            ),
        ),
    }
}

/// Says that a test was skipped, where `scripts/test` counts it: straight to stderr, past the
/// harness's capture (which swallows `eprintln!` of a passing test), so that a test that
/// returns early is not taken for one that passed. The test is named by its thread (libtest
/// names it so, and a `#[tokio::test]` body runs on it).
pub fn skipped_here(reason: &str) {
    let thread = std::thread::current();
    skipped(thread.name().unwrap_or("api"), reason);
}

/// [`skipped_here`] with the test's name given.
pub fn skipped(test: &str, reason: &str) {
    use std::io::Write;
    let line = format!("test-skipped: {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A loopback port this test holds while the value lives: a socket bound to it that never
/// listens. The machine gives a held port to no other socket that asks for a free one, which a
/// port bound and dropped again does not promise: CI once gave such a port, freed, to another
/// test's restarted broker.
pub struct HeldPort {
    pub port: u16,
    _socket: tokio::net::TcpSocket,
}

impl HeldPort {
    /// A port for a server this test starts, stops and starts again on it: bound with
    /// SO_REUSEADDR, so that the server (tansu, Meilisearch) can listen on it while it is held,
    /// and nothing else takes it between a stop and a start.
    pub fn for_server() -> Self {
        Self::bind(true)
    }

    /// A port where connections are refused, and stay refused for the test's whole run.
    pub fn closed() -> Self {
        Self::bind(false)
    }

    fn bind(reuse: bool) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(reuse).expect("SO_REUSEADDR");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("a loopback port");
        let port = socket.local_addr().expect("an address").port();
        Self {
            port,
            _socket: socket,
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
/// The Meilisearch server of `MEILI_URL` (with `MEILI_MASTER_KEY`), as `scripts/test` starts
/// it; each test makes indexes of its own there and deletes them at its end.
#[derive(Debug, Clone)]
pub struct Meili {
    pub url: String,
    pub key: Option<String>,
}

impl Meili {
    /// The server, or `None` (and the test said skipped) when `MEILI_URL` is not set.
    pub fn from_env(test: &str) -> Option<Self> {
        let Some(url) = std::env::var("MEILI_URL").ok().filter(|u| !u.is_empty()) else {
            skipped(test, "MEILI_URL not set");
            return None;
        };
        let key = std::env::var("MEILI_MASTER_KEY")
            .ok()
            .filter(|k| !k.is_empty());
        Some(Self { url, key })
    }

    /// A fresh index name, `treehole_<what>_<uuid>` (the prefixes `scripts/test` checks for
    /// leftovers).
    pub fn new_index(what: &str) -> String {
        format!("treehole_{what}_{}", uuid::Uuid::new_v4().simple())
    }

    /// Search settings that put the application's search on `index` of this server.
    pub fn settings(&self, index: &str) -> api::cli::config::SearchConfig {
        api::cli::config::SearchConfig {
            meili_url: Some(self.url.clone()),
            meili_key: self.key.clone().map(Into::into),
            meili_index: index.to_owned(),
        }
    }

    /// The engine on `index` (and its `_build` index), as the application opens it.
    pub async fn engine(&self, index: &str) -> infra::search::MeiliSearch {
        infra::search::MeiliSearch::connect(&self.url, self.key.as_deref(), index)
            .await
            .expect("Meilisearch answers")
    }

    /// Deletes `index` and its build index.
    pub async fn delete(&self, index: &str) {
        self.engine(index)
            .await
            .delete_indexes()
            .await
            .expect("delete the test's indexes");
    }
}

/// The read models of a data directory together with its embedded search index, as the
/// projections write them: for comparing every projection, search included.
pub fn with_search(models: Arc<dyn ReadModels>, data: &Path) -> Arc<dyn ReadModelStore> {
    let search = infra::search::Embedded::open(&data.join("search")).expect("the search index");
    api::cli::startup::projection_store(models, Arc::new(search))
}

/// The application as the tests run it: no rate limits, cheap password hashing.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// [`spawn_app`] with changed settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let data = tempfile::tempdir().expect("a temporary data directory");
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().expect("an address"),
        data: data.path().to_path_buf(),
        ..Settings::default()
    };
    settings.rate_limits.enabled = false;
    settings.password.memory_kib = 1024;
    settings.password.iterations = 1;
    configure(&mut settings);
    // A database of its own, unless `configure` gave it another app's.
    if settings.database_url.is_none() {
        settings.database_url = postgres_backend().await.map(Into::into);
    }

    let settings_data = settings.data.clone();
    let database_url = settings
        .database_url
        .as_ref()
        .map(|url| url.expose_secret().to_owned());
    let app = Application::build(settings)
        .await
        .expect("the application starts");
    let address = format!("http://{}", app.local_addr());
    let store = app.event_store();
    let clock = app.clock();
    let loops = app.loops();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let mut test_app = TestApp::external(&address, &settings_data);
    test_app.store = Some(store);
    test_app.clock = Some(clock);
    test_app.loops = Some(loops);
    test_app.database_url = database_url;
    test_app.shutdown = Some(tx);
    test_app._data_dir = Some(data);
    test_app
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApp {
    /// Helpers for a server running elsewhere (e.g. the `treehole` binary as a child process).
    pub fn external(address: &str, data: &Path) -> TestApp {
        TestApp {
            address: address.to_owned(),
            data: data.to_path_buf(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                // A test that waits longer than the server's idle limit between two requests
                // must not send the second on a connection the server is closing.
                .pool_idle_timeout(api::cli::config::CLIENT_IDLE)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            store: None,
            clock: None,
            loops: None,
            database_url: None,
            _data_dir: None,
            shutdown: None,
            replies: Mutex::new(Vec::new()),
            outbox: Mutex::new(HashMap::new()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.address)
    }

    /// The server secret (`<data>/secret.key`): what keys reservation streams and codes.
    pub fn secret(&self) -> Vec<u8> {
        let text = std::fs::read_to_string(self.data.join("secret.key")).expect("the secret key");
        hex::decode(text.trim()).expect("a hex key")
    }

    pub fn event_store(&self) -> Arc<dyn EventStore> {
        self.store.clone().expect("an in-process application")
    }

    /// The log's head position.
    pub async fn head(&self) -> Position {
        self.event_store().head().await.expect("the log's head")
    }

    /// Sends a request built on [`Self::client`], records the answer and returns it.
    pub async fn send(&self, request: RequestBuilder) -> Reply {
        let request = request.build().expect("a well-formed request");
        let what = format!("{} {}", request.method(), request.url());
        self.try_send(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"))
    }

    /// [`Self::send`] for a server that may be gone: a transport failure is an `Err`.
    pub async fn try_send(&self, request: reqwest::Request) -> Result<Reply, reqwest::Error> {
        let method = request.method().clone();
        let path = match request.url().query() {
            Some(q) => format!("{}?{q}", request.url().path()),
            None => request.url().path().to_owned(),
        };
        let response = self.client.execute(request).await?;
        let reply = Reply {
            method,
            path,
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await?,
        };
        self.replies.lock().unwrap().push(reply.clone());
        Ok(reply)
    }

    /// Every answer this app has given the helpers so far.
    pub fn replies(&self) -> Vec<Reply> {
        self.replies.lock().unwrap().clone()
    }

    #[track_caller]
    pub fn assert_no_server_errors(&self) {
        for r in self.replies.lock().unwrap().iter() {
            assert!(
                !r.status.is_server_error(),
                "{} {} answered {}: {}",
                r.method,
                r.path,
                r.status,
                r.text
            );
        }
    }

    fn with_token(request: RequestBuilder, token: Option<&str>) -> RequestBuilder {
        match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Reply {
        self.send(self.client.get(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        let request = self.client.post(self.url(path)).json(body);
        self.send(Self::with_token(request, token)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.send(self.client.delete(self.url(path)).bearer_auth(token))
            .await
    }

    /// Asks for a code. The outbox is read right after the answer, so the e-mails to one
    /// address are numbered in the order they were asked for (file times are too coarse).
    pub async fn request_code(&self, email: &str) -> Reply {
        let reply = self
            .post_json("/auth/codes", None, &json!({ "email": email }))
            .await;
        drop(self.scan_outbox());
        reply
    }

    /// The code of the newest verification e-mail to `email` in `<data>/outbox/`.
    pub fn code_for(&self, email: &str) -> String {
        let to = email.trim().to_lowercase();
        self.scan_outbox()
            .values()
            .filter(|(recipient, _, _)| *recipient == to)
            .max_by_key(|(_, _, seen)| *seen)
            .map(|(_, code, _)| code.clone())
            .unwrap_or_else(|| panic!("no verification e-mail to {to} in the outbox"))
    }

    fn scan_outbox(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (String, String, usize)>> {
        let dir = self.data.join("outbox");
        let mut cache = self.outbox.lock().unwrap();
        for entry in std::fs::read_dir(&dir).expect("the outbox directory") {
            let path = entry.expect("an outbox entry").path();
            if path.extension().is_none_or(|e| e != "eml") || cache.contains_key(&path) {
                continue;
            }
            // A file still being written by a concurrent request is skipped, not cached,
            // and read again next time.
            if let Some((to, code)) = parse_eml(&path) {
                let seen = cache.len();
                cache.insert(path, (to, code, seen));
            }
        }
        cache
    }

    /// Asks for a code and registers with it.
    pub async fn register(&self, email: &str, username: &str, password: &str) -> Reply {
        self.request_code(email).await.expect(202);
        let code = self.code_for(email);
        self.register_with_code(email, username, password, &code)
            .await
    }

    pub async fn register_with_code(
        &self,
        email: &str,
        username: &str,
        password: &str,
        code: &str,
    ) -> Reply {
        let body =
            json!({"email": email, "username": username, "password": password, "code": code});
        self.post_json("/users", None, &body).await
    }

    pub async fn login_reply(&self, login: &str, password: &str) -> Reply {
        let body = json!({ "login": login, "password": password });
        self.post_json("/sessions", None, &body).await
    }

    /// Logs in from a device with a label (`POST /sessions`); the answer as given.
    pub async fn login_on(&self, login: &str, device: &str) -> Reply {
        let body = json!({ "login": login, "password": PASSWORD, "device": device });
        self.post_json("/sessions", None, &body).await
    }

    /// `GET /me/sessions` with `token`, once the users model has reached `after`: the list.
    pub async fn my_sessions(&self, token: &str, after: Position) -> Vec<Value> {
        self.get_auth(&format!("/me/sessions?after={after}"), token)
            .await
            .expect(200)["sessions"]
            .as_array()
            .expect("a list of sessions")
            .clone()
    }

    /// Logs in and returns the bearer token.
    pub async fn login(&self, login: &str, password: &str) -> String {
        self.login_reply(login, password).await.expect(201)["token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    /// Registers `name` (as username, and `name@campus.edu`) and logs in.
    pub async fn new_user(&self, name: &str) -> TestUser {
        let email = format!("{name}@campus.edu");
        let registered = self.register(&email, name, PASSWORD).await.expect(201);
        TestUser {
            user_id: registered["user_id"]
                .as_str()
                .expect("a user id")
                .to_owned(),
            username: name.to_owned(),
            email,
            token: self.login(name, PASSWORD).await,
        }
    }

    /// Moves the in-process application's clock forward.
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.clock
            .as_ref()
            .expect("an in-process application")
            .advance(by);
    }

    /// The in-process application's background loops.
    pub fn loops(&self) -> &api::background::supervisor::Supervisor {
        self.loops.as_ref().expect("an in-process application")
    }

    /// [`Self::new_user`] made moderator, once the users model shows it.
    pub async fn new_moderator(&self, name: &str) -> TestUser {
        let moderator = self.new_user(name).await;
        let granted = api::cli::admin::moderator(
            &commands::CommandHandler::new(self.event_store()),
            &self.secret(),
            &moderator.username,
            true,
        )
        .await
        .expect("moderator");
        let me = self
            .get_auth(&format!("/me?after={granted}"), &moderator.token)
            .await
            .expect(200);
        assert_eq!(me["is_moderator"], true);
        moderator
    }

    /// [`Self::new_user`] made admin, once the users model shows it.
    pub async fn new_admin(&self, name: &str) -> TestUser {
        let admin = self.new_user(name).await;
        let granted = api::cli::admin::grant(
            &commands::CommandHandler::new(self.event_store()),
            &self.secret(),
            &admin.username,
        )
        .await
        .expect("grant");
        let me = self
            .get_auth(&format!("/me?after={granted}"), &admin.token)
            .await
            .expect(200);
        assert_eq!(me["is_admin"], true);
        admin
    }

    pub async fn create_post(&self, token: &str, post: &Value) -> Reply {
        self.post_json("/posts", Some(token), post).await
    }

    pub async fn comment(&self, token: &str, post_id: &str, comment: &Value) -> Reply {
        self.post_json(&format!("/posts/{post_id}/comments"), Some(token), comment)
            .await
    }

    /// One projection's entry of `GET /admin/projections` (`token`: an admin's).
    pub async fn projection_status(&self, token: &str, name: &str) -> Value {
        let all = self.get_auth("/admin/projections", token).await.expect(200);
        all["projections"]
            .as_array()
            .expect("a list")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("projection {name} is not listed: {all}"))
    }

    /// Rebuilds a projection through `POST /admin/projections/{name}/rebuild` (`token`: an
    /// admin's) and waits, at most 30 s, until its new generation is live.
    pub async fn rebuild(&self, token: &str, name: &str) {
        let before = self.projection_status(token, name).await["generation"]
            .as_u64()
            .expect("a generation");
        let path = format!("/admin/projections/{name}/rebuild");
        self.post_json(&path, Some(token), &json!({}))
            .await
            .expect(202);
        for _ in 0..600 {
            let status = self.projection_status(token, name).await;
            if status["rebuild"].is_null() && status["generation"].as_u64() > Some(before) {
                assert_ne!(status["state"], "failed", "{status}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the rebuild of {name} did not finish: {}",
            self.projection_status(token, name).await
        );
    }

    /// Every item of a cursor-paged list, following `next_cursor` until it is null.
    pub async fn all_pages(&self, path: &str, after: Position) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{path}{sep}limit=100&after={after}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&url).await.expect(200);
            let page_items = page["items"].as_array().expect("items").clone();
            assert!(page_items.len() <= 100, "a page larger than its limit");
            items.extend(page_items);
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => {
                    assert!(page["next_cursor"].is_null(), "{page}");
                    return items;
                }
            }
        }
    }
}

/// `(recipient, code)` of a complete verification e-mail.
fn parse_eml(path: &Path) -> Option<(String, String)> {
    api::tools::bench::parse_mail(&std::fs::read_to_string(path).ok()?)
}

/// The `position` a command answered with (what `?after=` waits for).
pub fn position(body: &Value) -> Position {
    body["position"]
        .as_u64()
        .unwrap_or_else(|| panic!("no position in {body}"))
}

pub fn str_field<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {body}"))
}

/// A little task life, by an admin: a model, a worker, and three tasks of `submitter_token`'s
/// that succeed, fail for good and are cancelled. Returns the last position it wrote.
pub async fn task_traffic(app: &TestApp, admin_token: &str, submitter_token: &str) -> Position {
    let model = json!({"name": "echo", "kind": "text-to-text", "max_concurrent": 2,
        "input_schema": {"type": "object", "required": ["text"]}});
    app.post_json("/models", Some(admin_token), &model)
        .await
        .expect(201);
    let worker = app
        .post_json(
            "/workers",
            Some(admin_token),
            &json!({"name": "w", "models": ["echo"]}),
        )
        .await
        .expect(201);
    let token = str_field(&worker, "token").to_owned();
    let mut tasks = Vec::new();
    for text in ["hello", "boom", "never mind"] {
        let body = json!({"model": "echo", "input": {"text": text}});
        let reply = app
            .post_json("/tasks", Some(submitter_token), &body)
            .await
            .expect(201);
        tasks.push(str_field(&reply, "task_id").to_owned());
    }
    app.post_json(
        &format!("/tasks/{}/cancel", tasks[2]),
        Some(submitter_token),
        &json!({}),
    )
    .await
    .expect(200);
    let claim = json!({"wait_secs": 5});
    let path = format!("/workers/claim?after={}", position(&worker));
    let first = app.post_json(&path, Some(&token), &claim).await.expect(200);
    let done = app
        .post_json(
            &format!("/workers/tasks/{}/complete", str_field(&first, "task_id")),
            Some(&token),
            &json!({"result": {"text": "hello"}}),
        )
        .await
        .expect(200);
    let second = app.post_json(&path, Some(&token), &claim).await.expect(200);
    let failed = app
        .post_json(
            &format!("/workers/tasks/{}/fail", str_field(&second, "task_id")),
            Some(&token),
            &json!({"error": "boom", "retryable": false}),
        )
        .await
        .expect(200);
    assert_eq!(failed["status"], "failed");
    position(&failed).max(position(&done))
}
