//! Query parameters every list and read shares: one `after` (issue 14, defect 10).

use serde_json::json;

use crate::helpers::{Reply, TestApp, TestUser, spawn_app, str_field};
use crate::tasks::{admin, publish, register_model, register_worker};

/// A forum and a task queue with enough of everything to page through.
struct World {
    app: TestApp,
    admin: TestUser,
    ann: TestUser,
    bob: TestUser,
    worker_token: String,
    post_a: String,
    task: String,
    head: u64,
}

async fn world() -> World {
    let app = spawn_app().await;
    let admin = admin(&app, "ops_lists").await;
    let ann = app.new_user("ann_lists").await;
    let bob = app.new_user("bob_lists").await;
    let mut posts = Vec::new();
    for n in 0..3 {
        let post = app
            .create_post(
                &ann.token,
                &json!({"body": format!("a cat, number {n}"), "anonymous": false}),
            )
            .await
            .expect(201);
        posts.push(str_field(&post, "post_id").to_owned());
    }
    for post in &posts[..2] {
        for n in 0..3 {
            app.comment(
                &bob.token,
                post,
                &json!({"body": format!("comment {n}"), "anonymous": true}),
            )
            .await
            .expect(201);
        }
    }
    register_model(&app, &admin, "sdxl").await;
    let (_, worker_token) = register_worker(&app, &admin, &["sdxl"]).await;
    let mut task = String::new();
    for n in 0..3 {
        task = publish(
            &app,
            &ann,
            &json!({"model": "sdxl", "input": {"prompt": format!("p{n}")}}),
        )
        .await;
    }
    let head = app.head().await;
    World {
        post_a: posts[0].clone(),
        app,
        admin,
        ann,
        bob,
        worker_token,
        task,
        head,
    }
}

fn assert_refused(reply: &Reply, about: &str) {
    let kind = reply.expect_problem(400);
    assert!(kind.ends_with("bad-request"), "{}", reply.text);
    let detail = reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains(about),
        "{} {}: the detail should be about {about:?}: {detail}",
        reply.method,
        reply.path
    );
}

/// Every read that takes `after`, with the token it needs.
fn reads(w: &World) -> Vec<(String, Option<String>)> {
    let user = Some(w.ann.token.clone());
    let admin = Some(w.admin.token.clone());
    vec![
        ("/me".into(), user.clone()),
        ("/posts".into(), None),
        (format!("/posts/{}", w.post_a), None),
        (format!("/posts/{}/comments", w.post_a), None),
        ("/search?q=cat".into(), None),
        ("/models".into(), None),
        ("/models/sdxl".into(), None),
        ("/tasks".into(), user.clone()),
        (format!("/tasks/{}", w.task), user),
        ("/workers".into(), admin.clone()),
        ("/stats/overview".into(), None),
        ("/stats/daily?from=2020-01-01&to=2020-01-31".into(), None),
        ("/admin/projections".into(), admin),
    ]
}

async fn get(app: &TestApp, path: &str, token: Option<&str>, header: Option<u64>) -> Reply {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(after) = header {
        request = request.header("X-After-Position", after);
    }
    app.send(request).await
}

fn with(path: &str, query: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

#[tokio::test]
async fn a_repeated_or_conflicting_after_is_refused_by_every_route_that_takes_it() {
    let w = world().await;
    let (app, head) = (&w.app, w.head);
    for (path, token) in reads(&w) {
        let token = token.as_deref();
        // One position, in either form or in both alike, is read-your-writes as before.
        get(app, &with(&path, &format!("after={head}")), token, None)
            .await
            .expect(200);
        get(app, &path, token, Some(head)).await.expect(200);
        get(
            app,
            &with(&path, &format!("after={head}")),
            token,
            Some(head),
        )
        .await
        .expect(200);
        // Two are refused, however they are given.
        let twice = with(&path, &format!("after=1&after={head}"));
        assert_refused(&get(app, &twice, token, None).await, "after");
        let same = with(&path, &format!("after={head}&after={head}"));
        assert_refused(&get(app, &same, token, None).await, "after");
        let conflicting = with(&path, "after=1");
        assert_refused(&get(app, &conflicting, token, Some(head)).await, "after");
    }
    // Commands read `after` too, for the read models their authentication consults.
    let twice = format!("after=1&after={head}");
    let post = json!({"body": "one more", "anonymous": true});
    assert_refused(
        &app.post_json(&format!("/posts?{twice}"), Some(&w.bob.token), &post)
            .await,
        "after",
    );
    assert_refused(
        &app.post_json(
            &format!("/workers/claim?{twice}"),
            Some(&w.worker_token),
            &json!({}),
        )
        .await,
        "after",
    );
    let header_twice = app
        .send(
            app.client
                .get(app.url("/posts"))
                .header("X-After-Position", 1)
                .header("X-After-Position", head),
        )
        .await;
    assert_refused(&header_twice, "after");
    app.assert_no_server_errors();
}
