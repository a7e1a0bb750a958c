//! Models, tasks, workers and webhooks over HTTP: exactly-once claims under a race, leases that
//! bring a dead worker's task back, signed webhooks retried with backoff, the SSRF guard, and
//! bad inputs that append nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use commands::CommandHandler;
use domain::{Envelope, Position};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{TestApp, TestUser, position, spawn_app, spawn_app_with, str_field};

/// A user made admin, once the users model shows it.
pub(crate) async fn admin(app: &TestApp, name: &str) -> TestUser {
    let admin = app.new_user(name).await;
    let granted = api::cli::admin::grant(
        &CommandHandler::new(app.event_store()),
        &app.secret(),
        &admin.username,
    )
    .await
    .expect("grant");
    let me = app
        .get_auth(&format!("/me?after={granted}"), &admin.token)
        .await
        .expect(200);
    assert_eq!(me["is_admin"], true);
    admin
}

fn schema() -> Value {
    json!({
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 500},
            "steps": {"type": "integer", "minimum": 1, "maximum": 100},
            "n": {"type": "integer"}
        },
        "additionalProperties": false
    })
}

pub(crate) async fn register_model(app: &TestApp, admin: &TestUser, name: &str) -> Position {
    let body = json!({"name": name, "kind": "text-to-image", "input_schema": schema(), "max_concurrent": 1000});
    position(
        &app.post_json("/models", Some(&admin.token), &body)
            .await
            .expect(201),
    )
}

/// A worker credential for `models`: (worker id, token), usable once the returned position is.
pub(crate) async fn register_worker(
    app: &TestApp,
    admin: &TestUser,
    models: &[&str],
) -> (String, String) {
    let body = json!({"name": "gpu box", "models": models});
    let reply = app
        .post_json("/workers", Some(&admin.token), &body)
        .await
        .expect(201);
    let token = str_field(&reply, "token").to_owned();
    assert!(token.starts_with("thw_"), "{reply}");
    // Make the credential visible before it is used.
    app.get_auth(
        &format!("/workers?after={}", position(&reply)),
        &admin.token,
    )
    .await
    .expect(200);
    (str_field(&reply, "worker_id").to_owned(), token)
}

pub(crate) async fn publish(app: &TestApp, user: &TestUser, body: &Value) -> String {
    let reply = app
        .post_json("/tasks", Some(&user.token), body)
        .await
        .expect(201);
    assert_eq!(reply["status"], "queued");
    str_field(&reply, "task_id").to_owned()
}

/// Every event of the log.
pub(crate) async fn events(app: &TestApp) -> Vec<Envelope> {
    let store = app.event_store();
    let mut all = Vec::new();
    loop {
        let batch = store
            .read_all(all.last().map_or(0, |e: &Envelope| e.position), 1000)
            .await
            .expect("the log");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// Polls `GET /tasks/{id}` until `done` holds, or fails after `within`.
async fn wait_for_task(
    app: &TestApp,
    user: &TestUser,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let reply = app.get_auth(&format!("/tasks/{id}"), &user.token).await;
        // Not visible yet right after its publication.
        let task = if reply.status == StatusCode::NOT_FOUND {
            Value::Null
        } else {
            reply.expect(200)
        };
        if done(&task) {
            return task;
        }
        assert!(Instant::now() < deadline, "task never got there: {task:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn eight_workers_race_for_500_tasks_and_each_is_completed_exactly_once() {
    let app = spawn_app_with(|s| s.tasks.reap_interval_ms = 100).await;
    let admin = admin(&app, "ops_admin").await;
    let alice = app.new_user("zhou_min").await;
    register_model(&app, &admin, "sdxl").await;
    let mut workers = Vec::new();
    for _ in 0..8 {
        workers.push(register_worker(&app, &admin, &["sdxl"]).await);
    }
    let mut inputs = HashMap::new();
    for n in 0..500 {
        let id = publish(
            &app,
            &alice,
            &json!({"model": "sdxl", "input": {"prompt": "a cat", "n": n}}),
        )
        .await;
        inputs.insert(id, n);
    }

    // Worker 0 claims one task with a short lease and dies holding it.
    let abandoned = app
        .post_json(
            "/workers/claim",
            Some(&workers[0].1),
            &json!({"lease_secs": 1}),
        )
        .await
        .expect(200);
    let abandoned_id = str_field(&abandoned, "task_id").to_owned();

    // The other seven, and worker 0 again as a fresh process, race for the rest.
    let completed = Arc::new(AtomicUsize::new(0));
    let app = Arc::new(app);
    let mut racers = Vec::new();
    for (index, (_, token)) in workers.iter().enumerate() {
        let (app, token, completed) = (app.clone(), token.clone(), completed.clone());
        racers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while completed.load(Ordering::SeqCst) < 500 {
                assert!(Instant::now() < deadline, "the race did not finish");
                let claim = app
                    .post_json(
                        "/workers/claim",
                        Some(&token),
                        &json!({"lease_secs": 30, "wait_secs": 1}),
                    )
                    .await;
                if claim.status == StatusCode::NO_CONTENT {
                    continue;
                }
                let task = claim.expect(200);
                let id = str_field(&task, "task_id").to_owned();
                let result = json!({"n": task["input"]["n"], "by": index});
                app.post_json(
                    &format!("/workers/tasks/{id}/complete"),
                    Some(&token),
                    &json!({"result": result}),
                )
                .await
                .expect(200);
                completed.fetch_add(1, Ordering::SeqCst);
                mine.push(id);
            }
            mine
        }));
    }
    let mut done_by: HashMap<String, usize> = HashMap::new();
    for (index, racer) in racers.into_iter().enumerate() {
        for id in racer.await.expect("a racer") {
            assert!(
                done_by.insert(id.clone(), index).is_none(),
                "{id} completed twice"
            );
        }
    }
    assert_eq!(done_by.len(), 500, "every task completed once");
    assert!(
        done_by
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1,
        "the work was shared"
    );

    // The log agrees: one success per task, one claim per task but the abandoned one, whose
    // lease ran out and which another worker then completed.
    let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut successes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut expired = Vec::new();
    for e in events(&app).await {
        let id = e.data["task_id"].as_str().unwrap_or_default().to_owned();
        match e.event_type.as_str() {
            "TaskClaimed" => claims
                .entry(id)
                .or_default()
                .push(e.data["worker_id"].to_string()),
            "TaskSucceeded" => successes
                .entry(id)
                .or_default()
                .push(e.data["worker_id"].to_string()),
            "TaskAttemptFailed" => {
                assert_eq!(e.data["lease_expired"], true);
                expired.push(id);
            }
            _ => {}
        }
    }
    assert_eq!(successes.len(), 500);
    assert!(
        successes.values().all(|w| w.len() == 1),
        "a task succeeded twice"
    );
    assert_eq!(expired, vec![abandoned_id.clone()]);
    for (id, workers_of) in &claims {
        let expected = if *id == abandoned_id { 2 } else { 1 };
        assert_eq!(workers_of.len(), expected, "claims of {id}: {workers_of:?}");
        assert_eq!(
            workers_of.last(),
            successes[id].first(),
            "the last claimer completed {id}"
        );
    }

    // And so does the submitter's view: 500 succeeded tasks, each with its own input's result.
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    let head = app.head().await;
    loop {
        let path = match &cursor {
            Some(c) => format!("/tasks?limit=100&cursor={c}&after={head}"),
            None => format!("/tasks?limit=100&after={head}"),
        };
        let page = app.get_auth(&path, &alice.token).await.expect(200);
        for task in page["items"].as_array().expect("items") {
            assert_eq!(task["status"], "succeeded", "{task}");
            assert_eq!(
                task["result"]["n"],
                inputs[str_field(task, "task_id")],
                "{task}"
            );
            seen += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, 500);
    let retried = app
        .get_auth(&format!("/tasks/{abandoned_id}"), &alice.token)
        .await
        .expect(200);
    assert_eq!(retried["attempts"], 2, "{retried:#}");
    app.assert_no_server_errors();
}

/// The `treehole worker` binary, running `exec` for `model`.
fn worker_process(
    app: &TestApp,
    token: &str,
    model: &str,
    exec: &str,
    extra: &[&str],
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_treehole"))
        .args([
            "worker",
            "--model",
            model,
            "--exec",
            exec,
            "--server",
            app.address.as_str(),
        ])
        .args(extra)
        .env("TREEHOLE_WORKER_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the worker starts")
}

#[tokio::test]
async fn a_killed_worker_s_task_comes_back_after_its_lease_and_the_reference_worker_completes_it() {
    let app = spawn_app_with(|s| s.tasks.reap_interval_ms = 100).await;
    let admin = admin(&app, "ops_admin").await;
    let bob = app.new_user("sun_hao").await;
    register_model(&app, &admin, "flux").await;
    let (first_worker, first_token) = register_worker(&app, &admin, &["flux"]).await;
    let (second_worker, second_token) = register_worker(&app, &admin, &["flux"]).await;
    let input = json!({"prompt": "湖边的图书馆, watercolor", "steps": 20});
    let id = publish(&app, &bob, &json!({"model": "flux", "input": input})).await;

    // The first worker takes the task and is killed while its command runs.
    let mut doomed = worker_process(
        &app,
        &first_token,
        "flux",
        "sleep 60",
        &["--lease-secs", "2"],
    );
    let running = wait_for_task(&app, &bob, &id, Duration::from_secs(30), |t| {
        t["status"] == "running"
    })
    .await;
    assert_eq!(running["worker_id"], first_worker.as_str());
    doomed.kill().await.expect("kill -9");

    // After the lease, the task is queued again and the second worker's `cat` echoes the input.
    let mut rescuer = worker_process(&app, &second_token, "flux", "cat", &["--max-tasks", "1"]);
    let done = wait_for_task(&app, &bob, &id, Duration::from_secs(30), |t| {
        t["status"] == "succeeded"
    })
    .await;
    assert_eq!(
        done["result"], input,
        "stdout parsed as JSON is the result: {done:#}"
    );
    assert_eq!(done["worker_id"], second_worker.as_str());
    assert_eq!(done["attempts"], 2);
    let story: Vec<&str> = done["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|h| h["event"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        story
            .iter()
            .filter(|e| **e != "TaskLeaseExtended")
            .copied()
            .collect::<Vec<_>>(),
        [
            "TaskPublished",
            "TaskClaimed",
            "TaskAttemptFailed",
            "TaskRequeued",
            "TaskClaimed",
            "TaskSucceeded"
        ],
        "{done:#}"
    );
    let expired = &done["history"].as_array().expect("history")[story
        .iter()
        .position(|e| *e == "TaskAttemptFailed")
        .expect("a failure")];
    assert_eq!(expired["detail"]["lease_expired"], true);
    assert!(
        rescuer.wait().await.expect("the rescuer exits").success(),
        "--max-tasks 1 ends it"
    );

    // A command that fails with EX_DATAERR fails its task for good, with its stderr as the error.
    let id = publish(
        &app,
        &bob,
        &json!({"model": "flux", "input": {"prompt": "x"}}),
    )
    .await;
    let mut picky = worker_process(
        &app,
        &second_token,
        "flux",
        "echo 'no such style' >&2; exit 65",
        &["--max-tasks", "1"],
    );
    let failed = wait_for_task(&app, &bob, &id, Duration::from_secs(30), |t| {
        t["status"] == "failed"
    })
    .await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no such style"),
        "{failed:#}"
    );
    assert_eq!(failed["attempts"], 1);
    assert!(picky.wait().await.expect("exits").success());
    app.assert_no_server_errors();
}

type Received = Arc<Mutex<Vec<(Instant, HeaderMap, Bytes)>>>;

/// A webhook receiver on loopback that fails the first two deliveries of each task.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let log = received.clone();
    let app = axum::Router::new().route(
        "/hooks/{token}",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                let mut log = log.lock().expect("lock");
                log.push((Instant::now(), headers, body));
                if log.len() <= 2 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/hooks/s3cr3t"), received)
}

/// What a receiver does with a delivery: the signature must be HMAC-SHA256 over
/// `<timestamp>.<body>` with the submitter's key, and the timestamp recent.
fn verified(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(format!("no {name}"))
    };
    let timestamp: i64 = header("x-treehole-timestamp")?
        .parse()
        .map_err(|_| "bad timestamp")?;
    if (chrono::Utc::now().timestamp() - timestamp).abs() > 300 {
        return Err("stale timestamp".into());
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("a key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let given = header("x-treehole-signature")?
        .strip_prefix("sha256=")
        .ok_or("no sha256= prefix")?;
    mac.verify_slice(&hex::decode(given).map_err(|_| "bad hex")?)
        .map_err(|_| "signature mismatch".into())
}

#[tokio::test]
async fn webhooks_are_signed_retried_with_backoff_and_every_attempt_is_in_the_task_view() {
    let app = spawn_app_with(|s| {
        s.webhooks.allow_internal = true;
        s.webhooks.backoff_ms = 300;
    })
    .await;
    let admin = admin(&app, "ops_admin").await;
    let carol = app.new_user("wu_lei").await;
    let me = app.get_auth("/me", &carol.token).await.expect(200);
    let key = hex::decode(str_field(&me, "webhook_secret")).expect("a hex key");
    register_model(&app, &admin, "sdxl").await;
    let (_, token) = register_worker(&app, &admin, &["sdxl"]).await;
    let (url, received) = receiver().await;
    let id = publish(
        &app,
        &carol,
        &json!({"model": "sdxl", "input": {"prompt": "a fox"}, "webhook_url": url}),
    )
    .await;

    let task = app
        .post_json("/workers/claim", Some(&token), &json!({"wait_secs": 5}))
        .await
        .expect(200);
    assert_eq!(str_field(&task, "task_id"), id);
    app.post_json(
        &format!("/workers/tasks/{id}/complete"),
        Some(&token),
        &json!({"result": {"image": "fox.png"}}),
    )
    .await
    .expect(200);

    let done = wait_for_task(&app, &carol, &id, Duration::from_secs(30), |t| {
        t["webhook"]["state"] == "delivered"
    })
    .await;
    let attempts: Vec<(u64, Value, bool)> = done["webhook"]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap_or(0),
                a["status"].clone(),
                a["delivered"] == true,
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (1, json!(503), false),
            (2, json!(503), false),
            (3, json!(204), true)
        ],
        "{done:#}"
    );

    let received = received.lock().expect("lock").clone();
    assert_eq!(received.len(), 3, "exactly three deliveries");
    for (_, headers, body) in &received {
        verified(&key, headers, body).expect("a valid signature");
        let sent: Value = serde_json::from_slice(body).expect("a JSON body");
        assert_eq!(sent["task_id"], id.as_str());
        assert_eq!(sent["status"], "succeeded");
        assert_eq!(sent["result"], json!({"image": "fox.png"}));
        // Another user's key does not verify it: the signature is the submitter's.
        let other = api::background::dispatch::webhook_key(
            b"not the server key",
            domain::UserId::new(uuid::Uuid::nil()),
        );
        assert!(verified(&other, headers, body).is_err());
    }
    // Exponential backoff: the second wait is about twice the first.
    let gap = |i: usize| received[i].0 - received[i - 1].0;
    assert!(gap(1) >= Duration::from_millis(300), "{:?}", gap(1));
    assert!(gap(2) >= Duration::from_millis(600), "{:?}", gap(2));

    // A tampered body does not verify.
    let (_, headers, body) = &received[2];
    let mut tampered = body.to_vec();
    tampered[2] ^= 1;
    assert!(verified(&key, headers, &tampered).is_err());
    app.assert_no_server_errors();
}

#[tokio::test]
async fn webhook_urls_on_loopback_private_or_metadata_addresses_are_refused_by_default() {
    let app = spawn_app().await;
    let admin = admin(&app, "ops_admin").await;
    let dave = app.new_user("zheng_yu").await;
    register_model(&app, &admin, "sdxl").await;
    let head = app.head().await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.9/hook",
        "http://192.168.1.20/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::127.0.0.1]/hook",
        "http://[::ffff:0:7f00:1]/hook",
        "http://[2002:a9fe:a9fe::]/hook",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
        "http://[fec0::1]/hook",
        "http://[100::1]/hook",
        "http://0.0.0.0/hook",
        "ftp://files.example/hook",
        "http://user:password@hooks.example/",
        "not a url",
    ] {
        let body = json!({"model": "sdxl", "input": {"prompt": "p"}, "webhook_url": url});
        let reply = app.post_json("/tasks", Some(&dave.token), &body).await;
        let kind = reply.expect_problem(422);
        assert_eq!(
            kind, "urn:treehole:problem:webhook-refused",
            "{url}: {}",
            reply.text
        );
    }
    assert_eq!(app.head().await, head, "nothing was appended");
}

#[tokio::test]
async fn invalid_task_inputs_get_problems_and_append_nothing() {
    let app = spawn_app().await;
    let admin = admin(&app, "ops_admin").await;
    let erin = app.new_user("feng_jie").await;
    register_model(&app, &admin, "sdxl").await;
    register_model(&app, &admin, "retired").await;
    app.post_json("/models/retired/disable", Some(&admin.token), &json!({}))
        .await
        .expect(200);
    let head = app.head().await;
    let big = "x".repeat(70 * 1024);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"model": "sdxl", "input": {}}),
            422,
            "schema-violation",
        ),
        (
            json!({"model": "sdxl", "input": {"prompt": 42}}),
            422,
            "schema-violation",
        ),
        (
            json!({"model": "sdxl", "input": {"prompt": "p", "steps": 1000}}),
            422,
            "schema-violation",
        ),
        (
            json!({"model": "sdxl", "input": {"prompt": "p", "seed": 1}}),
            422,
            "schema-violation",
        ),
        (
            json!({"model": "sdxl", "input": "just text"}),
            422,
            "schema-violation",
        ),
        (
            json!({"model": "nope", "input": {"prompt": "p"}}),
            422,
            "unknown-model",
        ),
        (
            json!({"model": "Bad Name!", "input": {"prompt": "p"}}),
            422,
            "validation",
        ),
        (
            json!({"model": "retired", "input": {"prompt": "p"}}),
            422,
            "model-disabled",
        ),
        (
            json!({"model": "sdxl", "input": {"prompt": big}}),
            413,
            "input-too-large",
        ),
        (
            json!({"model": "sdxl", "input": {"prompt": "p"}, "priority": 101}),
            422,
            "validation",
        ),
        (
            json!({"model": "sdxl", "input": {"prompt": "p"}, "colour": "red"}),
            422,
            "invalid-body",
        ),
        (json!({"input": {"prompt": "p"}}), 422, "invalid-body"),
    ];
    for (body, status, kind) in cases {
        let reply = app.post_json("/tasks", Some(&erin.token), &body).await;
        let got = reply.expect_problem(status);
        assert_eq!(
            got,
            format!("urn:treehole:problem:{kind}"),
            "{}",
            reply.text
        );
    }
    // Models: bad schemas and bad fields are refused too, and only admins manage them.
    let model_cases: Vec<(Value, u16)> = vec![
        (
            json!({"name": "m1", "kind": "k", "input_schema": {"type": "no-such-type"}, "max_concurrent": 1}),
            422,
        ),
        (
            json!({"name": "m1", "kind": "k", "input_schema": [], "max_concurrent": 1}),
            422,
        ),
        (
            json!({"name": "m1", "kind": "", "input_schema": {}, "max_concurrent": 1}),
            422,
        ),
        (
            json!({"name": "m1", "kind": "k", "input_schema": {}, "max_concurrent": 0}),
            422,
        ),
        (
            json!({"name": "sdxl", "kind": "k", "input_schema": {}, "max_concurrent": 1}),
            409,
        ),
    ];
    for (body, status) in model_cases {
        app.post_json("/models", Some(&admin.token), &body)
            .await
            .expect_problem(status);
    }
    let ok = json!({"name": "m2", "kind": "k", "input_schema": {}, "max_concurrent": 1});
    app.post_json("/models", Some(&erin.token), &ok)
        .await
        .expect_problem(403);
    app.post_json(
        "/workers",
        Some(&erin.token),
        &json!({"name": "w", "models": ["sdxl"]}),
    )
    .await
    .expect_problem(403);
    app.post_json(
        "/workers",
        Some(&admin.token),
        &json!({"name": "w", "models": ["nope"]}),
    )
    .await
    .expect_problem(422);
    assert_eq!(app.head().await, head, "nothing was appended");
    app.assert_no_server_errors();
}

#[tokio::test]
async fn workers_and_users_hold_different_credentials_and_tasks_are_private() {
    let app = spawn_app().await;
    let admin = admin(&app, "ops_admin").await;
    let frank = app.new_user("chen_tao").await;
    let grace = app.new_user("lin_xue").await;
    register_model(&app, &admin, "sdxl").await;
    register_model(&app, &admin, "llm").await;
    let (worker_id, token) = register_worker(&app, &admin, &["sdxl"]).await;
    let (_, other_token) = register_worker(&app, &admin, &["sdxl"]).await;

    // A user token is no worker token, and a worker token is no user token.
    app.post_json("/workers/claim", Some(&frank.token), &json!({}))
        .await
        .expect_problem(401);
    app.get_auth("/me", &token).await.expect_problem(401);
    // A worker claims only for its models.
    app.post_json("/workers/claim", Some(&token), &json!({"models": ["llm"]}))
        .await
        .expect_problem(403);
    app.post_json("/workers/claim", Some(&token), &json!({"lease_secs": 0}))
        .await
        .expect_problem(400);
    assert_eq!(
        app.post_json("/workers/claim", Some(&token), &json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    // Someone else's task does not exist for you; its submitter may cancel it while queued.
    let id = publish(
        &app,
        &frank,
        &json!({"model": "sdxl", "input": {"prompt": "p"}}),
    )
    .await;
    app.get_auth(&format!("/tasks/{id}"), &grace.token)
        .await
        .expect_problem(404);
    app.post_json(
        &format!("/tasks/{id}/cancel"),
        Some(&grace.token),
        &json!({}),
    )
    .await
    .expect_problem(404);
    let cancelled = app
        .post_json(
            &format!("/tasks/{id}/cancel"),
            Some(&frank.token),
            &json!({}),
        )
        .await
        .expect(200);
    let task = app
        .get_auth(
            &format!("/tasks/{id}?after={}", position(&cancelled)),
            &frank.token,
        )
        .await
        .expect(200);
    assert_eq!(task["status"], "cancelled");
    app.post_json(
        &format!("/tasks/{id}/cancel"),
        Some(&frank.token),
        &json!({}),
    )
    .await
    .expect_problem(409);

    // Only the holder reports; a running task cannot be cancelled.
    let id = publish(
        &app,
        &frank,
        &json!({"model": "sdxl", "input": {"prompt": "q"}}),
    )
    .await;
    let claimed = app
        .post_json("/workers/claim", Some(&token), &json!({"wait_secs": 5}))
        .await
        .expect(200);
    assert_eq!(str_field(&claimed, "task_id"), id);
    assert_eq!(claimed["attempt"], 1);
    app.post_json(
        &format!("/workers/tasks/{id}/complete"),
        Some(&other_token),
        &json!({"result": 1}),
    )
    .await
    .expect_problem(409);
    app.post_json(
        &format!("/tasks/{id}/cancel"),
        Some(&frank.token),
        &json!({}),
    )
    .await
    .expect_problem(409);
    let beat = app
        .post_json(
            &format!("/workers/tasks/{id}/heartbeat"),
            Some(&token),
            &json!({"lease_secs": 120}),
        )
        .await
        .expect(200);
    assert!(beat["lease_until"].is_string());
    let failed = app
        .post_json(
            &format!("/workers/tasks/{id}/fail"),
            Some(&token),
            &json!({"error": "CUDA out of memory", "retryable": true}),
        )
        .await
        .expect(200);
    assert_eq!(failed["status"], "queued", "retryable with attempts left");

    // A revoked worker is refused at once.
    let revoked = app
        .delete(&format!("/workers/{worker_id}"), &admin.token)
        .await
        .expect(200);
    let claim = app
        .post_json(
            &format!("/workers/claim?after={}", position(&revoked)),
            Some(&token),
            &json!({}),
        )
        .await;
    claim.expect_problem(401);
    app.assert_no_server_errors();
}

#[tokio::test]
async fn claims_take_the_most_urgent_task_first_and_respect_a_model_s_concurrency() {
    let app = spawn_app().await;
    let admin = admin(&app, "ops_admin").await;
    let user = app.new_user("he_ping").await;
    let body = json!({"name": "solo", "kind": "text-to-image", "input_schema": schema(), "max_concurrent": 1});
    app.post_json("/models", Some(&admin.token), &body)
        .await
        .expect(201);
    let (_, token) = register_worker(&app, &admin, &["solo"]).await;
    let low = publish(
        &app,
        &user,
        &json!({"model": "solo", "input": {"prompt": "low"}, "priority": -5}),
    )
    .await;
    let old = publish(
        &app,
        &user,
        &json!({"model": "solo", "input": {"prompt": "old"}}),
    )
    .await;
    let urgent = publish(
        &app,
        &user,
        &json!({"model": "solo", "input": {"prompt": "urgent"}, "priority": 50}),
    )
    .await;
    let new = publish(
        &app,
        &user,
        &json!({"model": "solo", "input": {"prompt": "new"}}),
    )
    .await;

    let mut order = Vec::new();
    for _ in 0..4 {
        // `?after=` so that the claim sees every publication.
        let head = app.head().await;
        let claimed = app
            .post_json(
                &format!("/workers/claim?after={head}"),
                Some(&token),
                &json!({"wait_secs": 5}),
            )
            .await
            .expect(200);
        let id = str_field(&claimed, "task_id").to_owned();
        // While one task of the model runs, nothing else of it may be claimed.
        let head = app.head().await;
        let busy = app
            .post_json(
                &format!("/workers/claim?after={head}"),
                Some(&token),
                &json!({}),
            )
            .await;
        assert_eq!(
            busy.status,
            StatusCode::NO_CONTENT,
            "max_concurrent 1: {}",
            busy.text
        );
        app.post_json(
            &format!("/workers/tasks/{id}/complete"),
            Some(&token),
            &json!({"result": null}),
        )
        .await
        .expect(200);
        order.push(id);
    }
    assert_eq!(order, [urgent, old, new, low], "priority first, then age");
}
