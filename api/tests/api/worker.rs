//! Projector workers as their own processes (`treehole project --only feed,comments`) beside
//! a `serve` that runs only the `users` projection: a worker killed with SIGKILL mid-stream and
//! restarted (twice over, racing itself) leaves read models equal to a build from scratch.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use infra::source::StoreSource;
use projections::{EventSource, ReadModelStore};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::helpers::{TestApp, position, read_models_of, spawn_app, spawn_app_with, str_field};

fn start_worker(app: &TestApp, log: &std::path::Path) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_treehole"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TREEHOLE_") {
            command.env_remove(name);
        }
    }
    command
        .args(["project", "--only", "feed,comments", "--data"])
        .arg(&app.data);
    if let Some(url) = &app.database_url {
        command.args(["--database-url", url]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("a log"),
        )
        .kill_on_drop(true)
        .spawn()
        .expect("the worker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_stream_resumes_without_losing_or_doubling_events() {
    let app = Arc::new(spawn_app_with(|s| s.projectors = "users".into()).await);
    let logs = tempfile::tempdir().expect("a temp dir");
    let log = logs.path().join("worker.log");
    let mut worker = start_worker(&app, &log);

    let user = app.new_user("burst").await;
    let post = app
        .create_post(&user.token, &json!({"body": "hot", "anonymous": true}))
        .await
        .expect(201);
    let post_id = str_field(&post, "post_id").to_owned();
    // The worker builds the feed: reading our own write proves it runs.
    app.get(&format!("/posts/{post_id}?after={}", position(&post)))
        .await
        .expect(200);

    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let burst = {
        let (app, stop, last, token, post_id) = (
            app.clone(),
            stop.clone(),
            last.clone(),
            user.token.clone(),
            post_id.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let c = app
                    .comment(
                        &token,
                        &post_id,
                        &json!({"body": format!("c{n}"), "anonymous": n.is_multiple_of(3)}),
                    )
                    .await
                    .expect(201);
                last.fetch_max(position(&c), Ordering::Relaxed);
                if n.is_multiple_of(10) {
                    let p = app
                        .create_post(
                            &token,
                            &json!({"body": format!("p{n}"), "anonymous": false}),
                        )
                        .await
                        .expect(201);
                    last.fetch_max(position(&p), Ordering::Relaxed);
                }
                n += 1;
            }
            n
        })
    };

    // Let the worker get into the stream, then kill it without warning.
    while last.load(Ordering::Relaxed) < 150 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.kill().await.expect("SIGKILL");
    let killed_at = last.load(Ordering::Relaxed);
    while last.load(Ordering::Relaxed) < killed_at + 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Two workers of the same projections now race for every batch: the checkpoint guard must
    // let exactly one apply each (a double-applied comment would show in the comment counts).
    let mut worker = start_worker(&app, &log);
    let mut rival = start_worker(&app, &log);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let commands = burst.await.expect("the burst ran");
    assert!(commands > 0);

    let head = app.head().await;
    let waited = app
        .get(&format!("/posts/{post_id}/comments?after={head}"))
        .await;
    assert_eq!(
        waited.status.as_u16(),
        200,
        "the restarted worker did not catch up: {}\n{}",
        waited.text,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    worker.kill().await.expect("stop the worker");
    rival.kill().await.expect("stop the rival");
    app.assert_no_server_errors();

    let scratch_dir = tempfile::tempdir().expect("a temp dir");
    let (live, scratch) = read_models_of(&app, scratch_dir.path()).await;
    let scratch: Arc<dyn ReadModelStore> = scratch;
    let source: Arc<dyn EventSource> = Arc::new(StoreSource::new(app.event_store()));
    for projection in projections::all()
        .into_iter()
        .filter(|p| ["feed", "comments"].contains(&p.name()))
    {
        let name = projection.name();
        projections::runner::rebuild(
            projection,
            source.clone(),
            scratch.clone(),
            None,
            &|_, _| {},
        )
        .await
        .expect("a scratch build");
        let (a, b) = (
            live.dump(name).await.expect("dump"),
            scratch.dump(name).await.expect("dump"),
        );
        assert!(a.len() > 10, "{name} has {} rows", a.len());
        assert_eq!(
            a, b,
            "{name}: the worker's model differs from a scratch build"
        );
    }
}

/// A projector whose model the latest events do not change (here `tasks`, under posts) still
/// moves its checkpoint in the store, which projectors and observers in other processes read:
/// it reaches the head.
#[tokio::test]
async fn a_projector_that_events_do_not_change_still_saves_its_checkpoint() {
    let app = spawn_app().await;
    let user = app.new_user("quiet").await;
    let post = app
        .create_post(
            &user.token,
            &json!({"body": "nothing for tasks", "anonymous": false}),
        )
        .await
        .expect(201);
    let written = position(&post);
    let scratch_dir = tempfile::tempdir().expect("a temp dir");
    let (live, _) = read_models_of(&app, scratch_dir.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let saved = live
            .live("tasks")
            .await
            .expect("live")
            .expect("a live tasks generation")
            .position;
        if saved >= written {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tasks checkpoint stayed at {saved}, the post is at {written}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
