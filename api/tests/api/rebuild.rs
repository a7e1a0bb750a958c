//! Zero-downtime rebuilds: queries keep answering while a projection is rebuilt beside the
//! live one, and the model swapped in equals a build from scratch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use commands::CommandHandler;
use infra::source::StoreSource;
use projections::EventSource;
use serde_json::{Value, json};

use crate::helpers::{read_models_of, spawn_app, str_field, with_search};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_under_live_traffic_never_fails_a_query_and_matches_a_fresh_build() {
    let app = Arc::new(spawn_app().await);
    let admin = app.new_user("rebuilder").await;
    let handler = CommandHandler::new(app.event_store());
    let granted = api::cli::admin::grant(&handler, &app.secret(), &admin.username)
        .await
        .expect("grant");
    app.get_auth(&format!("/me?after={granted}"), &admin.token)
        .await
        .expect(200);

    // Seed a history worth rebuilding.
    let writer = app.new_user("writer").await;
    let mut posts = Vec::new();
    for i in 0..30 {
        let post = app
            .create_post(
                &writer.token,
                &json!({"body": format!("post {i}"), "anonymous": i % 2 == 0}),
            )
            .await
            .expect(201);
        let id = str_field(&post, "post_id").to_owned();
        for j in 0..5 {
            app.comment(
                &admin.token,
                &id,
                &json!({"body": format!("c{j}"), "anonymous": true}),
            )
            .await
            .expect(201);
        }
        posts.push(id);
    }
    crate::helpers::task_traffic(&app, &admin.token, &writer.token).await;
    // Reports that fold a post, and one more.
    let reporter = app.new_user("reporter").await;
    for (token, reason) in [
        (&admin.token, "nsfw"),
        (&reporter.token, "nsfw"),
        (&reporter.token, "spam"),
    ] {
        app.post_json(
            &format!(
                "/posts/{}/reports",
                posts[if reason == "spam" { 5 } else { 4 }]
            ),
            Some(token),
            &json!({"reason": reason, "text": "look"}),
        )
        .await
        .expect(201);
    }

    // Live traffic: one task writes, one reads, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let write_traffic = {
        let (app, stop, token, post) = (
            app.clone(),
            stop.clone(),
            writer.token.clone(),
            posts[0].clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                app.comment(
                    &token,
                    &post,
                    &json!({"body": format!("live {n}"), "anonymous": true}),
                )
                .await
                .expect(201);
                app.create_post(
                    &token,
                    &json!({"body": format!("live post {n}"), "anonymous": false}),
                )
                .await
                .expect(201);
                n += 1;
            }
            n
        })
    };
    let read_traffic = {
        let (app, stop, token, post) = (
            app.clone(),
            stop.clone(),
            writer.token.clone(),
            posts[1].clone(),
        );
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let feed = app.get("/posts?limit=50").await.expect(200);
                let shown = feed["items"].as_array().expect("items").len();
                assert!(shown >= 30, "the feed was half-built: {shown} posts");
                let comments = app
                    .get(&format!("/posts/{post}/comments"))
                    .await
                    .expect(200);
                assert_eq!(
                    comments["items"].as_array().expect("items").len(),
                    5,
                    "comments were half-built"
                );
                app.get(&format!("/posts/{post}")).await.expect(200);
                app.get_auth("/me", &token).await.expect(200);
                reads += 4;
            }
            reads
        })
    };

    for name in ["feed", "comments", "users"] {
        app.rebuild(&admin.token, name).await;
    }
    stop.store(true, Ordering::Relaxed);
    let writes = write_traffic.await.expect("the writer ran");
    let reads = read_traffic
        .await
        .expect("no query failed during the rebuilds");
    eprintln!("traffic during the rebuilds: {writes} write rounds, {reads} reads");
    assert!(
        writes > 0 && reads > 0,
        "traffic ran during the rebuilds ({writes} writes, {reads} reads)"
    );
    app.assert_no_server_errors();

    // Everything written is visible, and the live model equals one built from nothing.
    let head = app.head().await;
    let caught_up = app.get(&format!("/posts?after={head}")).await.expect(200);
    assert!(!caught_up["items"].as_array().expect("items").is_empty());
    app.get_auth(&format!("/me?after={head}"), &admin.token)
        .await
        .expect(200);
    app.get(&format!("/posts/{}/comments?after={head}", posts[0]))
        .await
        .expect(200);
    // The live search projector is paced (a batch at most every 200 ms): wait for it too.
    app.get(&format!("/search?q=post&after={head}"))
        .await
        .expect(200);

    let scratch_dir = tempfile::tempdir().expect("a temp dir");
    let (live, scratch) = read_models_of(&app, scratch_dir.path()).await;
    let live = with_search(live, &app.data);
    let scratch = with_search(scratch, scratch_dir.path());
    let source: Arc<dyn EventSource> = Arc::new(StoreSource::new(app.event_store()));
    for projection in projections::all() {
        let name = projection.name();
        let built = projections::runner::rebuild(
            projection,
            source.clone(),
            scratch.clone(),
            None,
            &|_, _| {},
        )
        .await
        .expect("a scratch build");
        assert!(built.position >= head);
        let (a, b) = (
            live.dump(name).await.expect("dump"),
            scratch.dump(name).await.expect("dump"),
        );
        assert!(!a.is_empty(), "{name} is empty");
        assert_eq!(
            a, b,
            "{name}: the rebuilt live model differs from a scratch build"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_event_stops_the_projections_not_the_process() {
    use chrono::Utc;
    use commands::ExpectedVersion;
    use domain::{Metadata, NewEvent, StreamId};

    let app = spawn_app().await;
    let admin = app.new_user("operator").await;
    let handler = CommandHandler::new(app.event_store());
    let granted = api::cli::admin::grant(&handler, &app.secret(), &admin.username)
        .await
        .expect("grant");
    app.get_auth(&format!("/me?after={granted}"), &admin.token)
        .await
        .expect(200);
    // Every projection at the grant first: a projection still behind would read the grant and
    // the poison in one batch, whose rollback leaves it before the grant.
    for _ in 0..400 {
        let all = app
            .get_auth("/admin/projections", &admin.token)
            .await
            .expect(200);
        let behind = all["projections"]
            .as_array()
            .expect("a list")
            .iter()
            .any(|p| p["position"].as_u64().unwrap_or(0) < granted);
        if !behind {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // A payload this code cannot decode, as a bad deploy or a hand-edited log could leave.
    let poison = NewEvent {
        typed: Default::default(),
        event_id: uuid::Uuid::now_v7(),
        event_type: "CommentAdded".into(),
        schema: 1,
        occurred_at: Utc::now(),
        data: json!({"unexpected": true}),
        metadata: Metadata::default(),
    };
    let stream = StreamId::parse("post-poison").expect("a stream");
    let committed = app
        .event_store()
        .append(&stream, ExpectedVersion::Any, vec![poison])
        .await
        .expect("append");
    let at = committed.last_position();

    let mut waited = 0;
    let failed = loop {
        let all = app
            .get_auth("/admin/projections", &admin.token)
            .await
            .expect(200);
        let failed: Vec<Value> = all["projections"]
            .as_array()
            .expect("a list")
            .iter()
            .filter(|p| p["state"] == "failed")
            .cloned()
            .collect();
        if failed.len() == projections::all().len() {
            break failed;
        }
        waited += 1;
        assert!(waited < 200, "the projections did not stop: {all}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    for p in &failed {
        let error = p["last_error"].as_str().expect("an error");
        assert!(error.contains(&format!("position {at}")), "{error}");
        assert_eq!(
            p["position"].as_u64(),
            Some(at - 1),
            "it stopped before the poison"
        );
    }
    // The process keeps serving what it has, and says it is not ready.
    app.get("/healthz").await.expect(200);
    app.get("/posts").await.expect(200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status.as_u16(), 503, "{}", ready.text);
}
