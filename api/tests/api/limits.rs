//! The documented limits are the enforced ones: every limit the served OpenAPI document states
//! on a request field or parameter is read from the document and tried at the limit (accepted)
//! and one past it (refused with a status the document lists for that operation).

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TestUser, position, spawn_app, str_field};

async fn openapi(app: &TestApp) -> Value {
    app.send(
        app.client
            .get(format!("{}/api/v1/openapi.json", app.address)),
    )
    .await
    .expect(200)
}

/// A numeric keyword (`maxLength`, `maximum`, ...) of a property of a request schema.
#[track_caller]
fn field(doc: &Value, schema: &str, property: &str, keyword: &str) -> i64 {
    let value = &doc["components"]["schemas"][schema]["properties"][property][keyword];
    value
        .as_i64()
        .unwrap_or_else(|| panic!("{schema}.{property} documents no {keyword}: {value}"))
}

/// A numeric keyword of the schema of an operation's parameter.
#[track_caller]
fn parameter(doc: &Value, method: &str, path: &str, name: &str, keyword: &str) -> i64 {
    let parameters = doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path} has no parameters"));
    let p = parameters
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"));
    p["schema"][keyword]
        .as_i64()
        .unwrap_or_else(|| panic!("{method} {path} {name} documents no {keyword}: {p}"))
}

/// Asserts that `status` is one the document lists for the operation.
#[track_caller]
fn documented(doc: &Value, method: &str, path: &str, status: u16) {
    let responses = &doc["paths"][path][method]["responses"];
    assert!(
        responses[status.to_string()].is_object(),
        "{method} {path} does not document {status}: {responses}"
    );
}

fn n(limit: i64) -> usize {
    usize::try_from(limit).expect("a non-negative limit")
}

/// A user made admin, once the users model shows it.
async fn admin(app: &TestApp, name: &str) -> TestUser {
    app.new_admin(name).await
}

#[tokio::test]
async fn post_and_comment_limits_are_enforced_at_their_documented_bounds() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let ann = app.new_user("ann").await;
    documented(&doc, "post", "/api/v1/posts", 422);

    let title = n(field(&doc, "NewPost", "title", "maxLength"));
    let post = |title: String| json!({"title": title, "body": "b", "anonymous": false});
    app.create_post(&ann.token, &post("题".repeat(title)))
        .await
        .expect(201);
    app.create_post(&ann.token, &post("题".repeat(title + 1)))
        .await
        .expect_problem(422);

    let body = n(field(&doc, "NewPost", "body", "maxLength"));
    let post = |body: String| json!({"body": body, "anonymous": true});
    app.create_post(&ann.token, &post("x".repeat(body)))
        .await
        .expect(201);
    app.create_post(&ann.token, &post("x".repeat(body + 1)))
        .await
        .expect_problem(422);

    let tags = n(field(&doc, "NewPost", "tags", "maxItems"));
    let tag_len =
        doc["components"]["schemas"]["NewPost"]["properties"]["tags"]["items"]["maxLength"]
            .as_u64()
            .expect("a documented tag length") as usize;
    let post = |tags: Vec<String>| json!({"body": "b", "anonymous": false, "tags": tags});
    let distinct = |count: usize| (0..count).map(|i| format!("t{i}")).collect::<Vec<_>>();
    app.create_post(&ann.token, &post(distinct(tags)))
        .await
        .expect(201);
    app.create_post(&ann.token, &post(distinct(tags + 1)))
        .await
        .expect_problem(422);
    // `maxItems` counts the entries sent, even those that would fold into one.
    app.create_post(&ann.token, &post(vec!["same".to_owned(); tags + 1]))
        .await
        .expect_problem(422);
    app.create_post(&ann.token, &post(vec!["标".repeat(tag_len)]))
        .await
        .expect(201);
    app.create_post(&ann.token, &post(vec!["标".repeat(tag_len + 1)]))
        .await
        .expect_problem(422);

    let post_id = str_field(
        &app.create_post(&ann.token, &json!({"body": "b", "anonymous": false}))
            .await
            .expect(201),
        "post_id",
    )
    .to_owned();
    let comment = n(field(&doc, "NewComment", "body", "maxLength"));
    let path = "/api/v1/posts/{id}/comments";
    documented(&doc, "post", path, 422);
    let body = |len: usize| json!({"body": "评".repeat(len), "anonymous": true});
    app.comment(&ann.token, &post_id, &body(comment))
        .await
        .expect(201);
    app.comment(&ann.token, &post_id, &body(comment + 1))
        .await
        .expect_problem(422);

    let key = n(parameter(
        &doc,
        "post",
        "/api/v1/posts",
        "Idempotency-Key",
        "maxLength",
    ));
    documented(&doc, "post", "/api/v1/posts", 400);
    for (len, status) in [(key, 201), (key + 1, 400)] {
        let request = app
            .client
            .post(app.url("/posts"))
            .bearer_auth(&ann.token)
            .header("Idempotency-Key", "k".repeat(len))
            .json(&json!({"body": format!("keyed {len}"), "anonymous": false}));
        let reply = app.send(request).await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "key of {len}: {}",
            reply.text
        );
    }
    app.assert_no_server_errors();
}

/// An address of exactly `len` bytes: a 64-byte local part and labels of at most 63.
fn email_of(len: usize) -> String {
    let local = "a".repeat(64);
    let mut domain = String::from("org");
    while local.len() + 1 + domain.len() < len {
        let room = len - (local.len() + 1 + domain.len()) - 1;
        domain = format!("{}.{domain}", "d".repeat(room.min(63)));
    }
    let email = format!("{local}@{domain}");
    assert_eq!(email.len(), len, "{email}");
    email
}

#[tokio::test]
async fn account_limits_are_enforced_at_their_documented_bounds() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    documented(&doc, "post", "/api/v1/auth/codes", 422);
    documented(&doc, "post", "/api/v1/users", 422);

    let email = n(field(&doc, "CodeRequest", "email", "maxLength"));
    assert_eq!(
        email,
        n(field(&doc, "RegisterRequest", "email", "maxLength"))
    );
    app.request_code(&email_of(email)).await.expect(202);
    app.request_code(&email_of(email + 1))
        .await
        .expect_problem(422);

    let (min, max) = (
        n(field(&doc, "RegisterRequest", "username", "minLength")),
        n(field(&doc, "RegisterRequest", "username", "maxLength")),
    );
    for (i, (name, status)) in [
        ("u".repeat(min), 201),
        ("名".repeat(max), 201),
        ("v".repeat(min - 1), 422),
        ("w".repeat(max + 1), 422),
    ]
    .into_iter()
    .enumerate()
    {
        let reply = app
            .register(&format!("user{i}@campus.edu"), &name, PASSWORD)
            .await;
        assert_eq!(reply.status.as_u16(), status, "{name:?}: {}", reply.text);
    }

    let (min, max) = (
        n(field(&doc, "RegisterRequest", "password", "minLength")),
        n(field(&doc, "RegisterRequest", "password", "maxLength")),
    );
    for (i, (password, status)) in [
        ("p".repeat(min), 201),
        ("密".repeat(max), 201),
        ("q".repeat(min - 1), 422),
        ("r".repeat(max + 1), 422),
    ]
    .into_iter()
    .enumerate()
    {
        let reply = app
            .register(&format!("pw{i}@campus.edu"), &format!("pw_{i}"), &password)
            .await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{}: {}",
            password.len(),
            reply.text
        );
    }
    app.assert_no_server_errors();
}

#[tokio::test]
async fn page_sizes_and_queries_are_enforced_at_their_documented_bounds() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let ann = app.new_user("ann").await;
    let post = app
        .create_post(
            &ann.token,
            &json!({"body": "hello world", "anonymous": false}),
        )
        .await
        .expect(201);
    let after = position(&post);
    let post_id = str_field(&post, "post_id");
    let comments = format!("/posts/{post_id}/comments");
    for (doc_path, path, token) in [
        ("/api/v1/posts", "/posts?".to_owned(), None),
        ("/api/v1/posts/{id}/comments", format!("{comments}?"), None),
        ("/api/v1/tasks", "/tasks?".to_owned(), Some(&ann.token)),
        ("/api/v1/search", "/search?q=hello&".to_owned(), None),
    ] {
        let min = parameter(&doc, "get", doc_path, "limit", "minimum");
        let max = parameter(&doc, "get", doc_path, "limit", "maximum");
        documented(&doc, "get", doc_path, 400);
        for (limit, status) in [(min, 200), (max, 200), (min - 1, 400), (max + 1, 400)] {
            let url = format!("{path}limit={limit}&after={after}");
            let reply = match token {
                Some(t) => app.get_auth(&url, t).await,
                None => app.get(&url).await,
            };
            assert_eq!(reply.status.as_u16(), status, "{url}: {}", reply.text);
        }
    }
    assert_eq!(
        parameter(&doc, "get", "/api/v1/search", "limit", "maximum"),
        50
    );
    assert_eq!(
        parameter(&doc, "get", "/api/v1/posts", "limit", "maximum"),
        100
    );

    let q = n(parameter(&doc, "get", "/api/v1/search", "q", "maxLength"));
    let words = |len: usize| {
        let mut s = "hello ".repeat(len / 6 + 1);
        s.truncate(len - 1);
        s.push('x');
        s
    };
    app.get(&format!("/search?q={}", words(q)))
        .await
        .expect(200);
    app.get(&format!("/search?q={}", words(q + 1)))
        .await
        .expect_problem(400);
    app.assert_no_server_errors();
}

#[tokio::test]
async fn model_task_and_worker_limits_are_enforced_at_their_documented_bounds() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let root = admin(&app, "root").await;
    let ann = app.new_user("ann").await;
    documented(&doc, "post", "/api/v1/models", 422);
    documented(&doc, "post", "/api/v1/tasks", 422);
    documented(&doc, "post", "/api/v1/workers", 422);

    let model = |name: &str, kind: String, max_concurrent: i64| {
        json!({"name": name, "kind": kind, "max_concurrent": max_concurrent,
            "input_schema": {"type": "object"}})
    };
    let kind = n(field(&doc, "NewModel", "kind", "maxLength"));
    let (min, max) = (
        field(&doc, "NewModel", "max_concurrent", "minimum"),
        field(&doc, "NewModel", "max_concurrent", "maximum"),
    );
    let name_len = n(field(&doc, "NewModel", "name", "maxLength"));
    for (name, body, status) in [
        ("m-kind", model("m-kind", "k".repeat(kind), 1), 201),
        ("m-kind2", model("m-kind2", "k".repeat(kind + 1), 1), 422),
        ("m-min", model("m-min", "k".into(), min), 201),
        ("m-max", model("m-max", "k".into(), max), 201),
        ("m-min2", model("m-min2", "k".into(), min - 1), 422),
        ("m-max2", model("m-max2", "k".into(), max + 1), 422),
        ("long", model(&"n".repeat(name_len), "k".into(), 1), 201),
        (
            "long2",
            model(&"n".repeat(name_len + 1), "k".into(), 1),
            422,
        ),
    ] {
        let reply = app.post_json("/models", Some(&root.token), &body).await;
        assert_eq!(reply.status.as_u16(), status, "{name}: {}", reply.text);
    }

    let (min, max) = (
        field(&doc, "NewTask", "priority", "minimum"),
        field(&doc, "NewTask", "priority", "maximum"),
    );
    for (priority, status) in [(min, 201), (max, 201), (min - 1, 422), (max + 1, 422)] {
        let body = json!({"model": "m-kind", "input": {}, "priority": priority});
        let reply = app.post_json("/tasks", Some(&ann.token), &body).await;
        assert_eq!(reply.status.as_u16(), status, "{priority}: {}", reply.text);
    }

    // A worker serves 1 to maxItems registered models, under a name of at most maxLength.
    let most = n(field(&doc, "NewWorker", "models", "maxItems"));
    let mut names = vec!["m-kind".to_owned(), "m-min".to_owned(), "m-max".to_owned()];
    while names.len() <= most {
        let name = format!("extra-{}", names.len());
        app.post_json("/models", Some(&root.token), &model(&name, "k".into(), 1))
            .await
            .expect(201);
        names.push(name);
    }
    let worker_name = n(field(&doc, "NewWorker", "name", "maxLength"));
    for (label, body, status) in [
        (
            "most models",
            json!({"name": "w", "models": names[..most]}),
            201,
        ),
        (
            "too many",
            json!({"name": "w", "models": names[..most + 1]}),
            422,
        ),
        ("no model", json!({"name": "w", "models": []}), 422),
        (
            "long name",
            json!({"name": "w".repeat(worker_name), "models": ["m-kind"]}),
            201,
        ),
        (
            "too long",
            json!({"name": "w".repeat(worker_name + 1), "models": ["m-kind"]}),
            422,
        ),
    ] {
        let reply = app.post_json("/workers", Some(&root.token), &body).await;
        assert_eq!(reply.status.as_u16(), status, "{label}: {}", reply.text);
    }
    app.assert_no_server_errors();
}

#[tokio::test]
async fn worker_protocol_limits_are_enforced_at_their_documented_bounds() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    let root = admin(&app, "root").await;
    let ann = app.new_user("ann").await;
    let model = json!({"name": "echo", "kind": "k", "max_concurrent": 10,
        "input_schema": {"type": "object"}});
    app.post_json("/models", Some(&root.token), &model)
        .await
        .expect(201);
    let worker = app
        .post_json(
            "/workers",
            Some(&root.token),
            &json!({"name": "w", "models": ["echo"]}),
        )
        .await
        .expect(201);
    let token = str_field(&worker, "token").to_owned();
    let publish = || async {
        app.post_json(
            "/tasks",
            Some(&ann.token),
            &json!({"model": "echo", "input": {}}),
        )
        .await
        .expect(201)
    };
    let claim_path = format!("/workers/claim?after={}", position(&worker));
    documented(&doc, "post", "/api/v1/workers/claim", 400);

    let (min, max) = (
        field(&doc, "ClaimRequest", "lease_secs", "minimum"),
        field(&doc, "ClaimRequest", "lease_secs", "maximum"),
    );
    let wait = field(&doc, "ClaimRequest", "wait_secs", "maximum");
    assert_eq!(field(&doc, "ClaimRequest", "wait_secs", "minimum"), 0);
    for (body, status) in [
        (json!({"lease_secs": min - 1}), 400),
        (json!({"lease_secs": max + 1}), 400),
        (json!({"wait_secs": wait + 1}), 400),
    ] {
        let reply = app.post_json(&claim_path, Some(&token), &body).await;
        assert_eq!(reply.status.as_u16(), status, "{body}: {}", reply.text);
        reply.expect_problem(status);
    }
    // At the bounds a claim is taken (a task is waiting, so `wait_secs` does not delay it).
    let mut held = Vec::new();
    for body in [
        json!({"lease_secs": min}),
        json!({"lease_secs": max, "wait_secs": wait}),
    ] {
        // After the task's publication, so that the claim sees it.
        let published = publish().await;
        let path = format!("/workers/claim?after={}", position(&published));
        let claimed = app.post_json(&path, Some(&token), &body).await.expect(200);
        held.push(str_field(&claimed, "task_id").to_owned());
    }
    let task = &held[1];

    let heartbeat = format!("/workers/tasks/{task}/heartbeat");
    documented(&doc, "post", "/api/v1/workers/tasks/{id}/heartbeat", 400);
    let max = field(&doc, "HeartbeatRequest", "lease_secs", "maximum");
    app.post_json(&heartbeat, Some(&token), &json!({"lease_secs": max}))
        .await
        .expect(200);
    app.post_json(&heartbeat, Some(&token), &json!({"lease_secs": max + 1}))
        .await
        .expect_problem(400);

    let error = n(field(&doc, "FailRequest", "error", "maxLength"));
    let fail = format!("/workers/tasks/{task}/fail");
    documented(&doc, "post", "/api/v1/workers/tasks/{id}/fail", 422);
    let body = |len: usize| json!({"error": "e".repeat(len), "retryable": false});
    app.post_json(&fail, Some(&token), &body(error + 1))
        .await
        .expect_problem(422);
    app.post_json(&fail, Some(&token), &body(error))
        .await
        .expect(200);
    app.assert_no_server_errors();
}
