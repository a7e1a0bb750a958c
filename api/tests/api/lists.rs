//! Query parameters every list and read shares: one `after` (issue 14, defect 10) and sealed
//! list cursors that belong to their list (defect 11).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
    post_b: String,
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
        post_b: posts[1].clone(),
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

/// `next_cursor` of the first page of `path` (one item a page).
async fn first_cursor(app: &TestApp, path: &str, token: Option<&str>, head: u64) -> String {
    let page = get(
        app,
        &with(path, &format!("limit=1&after={head}")),
        token,
        None,
    )
    .await
    .expect(200);
    let cursor = str_field(&page, "next_cursor").to_owned();
    // The cursor works where it was given.
    get(
        app,
        &with(path, &format!("limit=1&cursor={cursor}")),
        token,
        None,
    )
    .await
    .expect(200);
    cursor
}

fn truncations(cursor: &str) -> Vec<String> {
    let cut = |n: usize| cursor[..cursor.len().saturating_sub(n)].to_owned();
    vec![
        cut(1),
        cut(2),
        cut(4),
        cursor[..cursor.len() / 2].to_owned(),
    ]
}

/// Cursors a client could build from what it sees: the old unsealed forms, and valid cursors
/// with one character changed.
fn forgeries(cursor: &str) -> Vec<String> {
    let mut out: Vec<String> = ["p1:1", "p1:0", "p1:999999"]
        .iter()
        .map(|t| URL_SAFE_NO_PAD.encode(t))
        .collect();
    for at in [0, cursor.len() / 2, cursor.len() - 1] {
        let mut bytes = cursor.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        out.push(String::from_utf8(bytes).expect("ASCII"));
    }
    out
}

#[tokio::test]
async fn list_cursors_are_refused_when_truncated_forged_or_used_on_another_list() {
    let w = world().await;
    let (app, head) = (&w.app, w.head);
    let ann = Some(w.ann.token.as_str());
    let bob = Some(w.bob.token.as_str());
    let feed = "/posts".to_owned();
    let comments_a = format!("/posts/{}/comments", w.post_a);
    let comments_b = format!("/posts/{}/comments", w.post_b);
    let tasks = "/tasks".to_owned();
    let search = "/search?q=cat".to_owned();
    let lists: Vec<(&str, Option<&str>)> = vec![
        (&feed, None),
        (&comments_a, None),
        (&comments_b, None),
        (&tasks, ann),
        (&search, None),
    ];
    let mut cursors = Vec::new();
    for (path, token) in &lists {
        cursors.push(first_cursor(app, path, *token, head).await);
    }

    let refused = |path: &str, cursor: &str| with(path, &format!("limit=1&cursor={cursor}"));
    for (i, (path, token)) in lists.iter().enumerate() {
        let own = &cursors[i];
        for bad in truncations(own).iter().chain(&forgeries(own)) {
            assert_refused(&get(app, &refused(path, bad), *token, None).await, "cursor");
        }
        // Every other list's cursor, including a comment cursor of another post.
        for (j, other) in cursors.iter().enumerate() {
            if i != j {
                assert_refused(
                    &get(app, &refused(path, other), *token, None).await,
                    "cursor",
                );
            }
        }
    }
    // A task list cursor is its owner's: another user's task list refuses it.
    assert_refused(
        &get(app, &refused(&tasks, &cursors[3]), bob, None).await,
        "cursor",
    );
    // A search cursor belongs to its query.
    assert_refused(
        &get(app, &refused("/search?q=number", &cursors[4]), None, None).await,
        "cursor",
    );
    app.assert_no_server_errors();
}
