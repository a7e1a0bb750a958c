//! Values from outside that look right and are not: addresses the mailer refuses, look-alike
//! usernames, invisible and direction-override text, ids in other spellings and non-object
//! JSON Schemas. Each is refused with a 4xx problem and leaves the log as it was.

use commands::CommandHandler;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem_shape, spawn_app, str_field};

/// Sends `body` to `path` and checks the answer is a `status` problem that appended nothing.
async fn refused(app: &TestApp, path: &str, token: Option<&str>, body: &Value, status: u16) {
    let head = app.head().await;
    let reply = app.post_json(path, token, body).await;
    assert_eq!(
        reply.status.as_u16(),
        status,
        "{path} {body}: {}",
        reply.text
    );
    assert_problem_shape(&reply, &reply.json());
    assert_eq!(app.head().await, head, "{path} {body} appended events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn addresses_the_mailer_refuses_are_invalid_and_record_nothing() {
    let app = spawn_app().await;
    for email in [
        "a@[127.0.0.1]",
        "a@127.0.0.1",
        "a\u{202E}@campus.edu",
        "\u{E4}nn@campus.edu",
        "\"a b\"@campus.edu",
        "a..b@campus.edu",
    ] {
        refused(&app, "/auth/codes", None, &json!({ "email": email }), 422).await;
    }
    app.request_code("fine@campus.edu").await.expect(202);
    app.assert_no_server_errors();
}

/// The outbox is swapped for a file, so the real mailer fails after validation passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_send_records_nothing_and_keeps_the_earlier_code() {
    let app = spawn_app().await;
    let email = "unlucky@campus.edu";
    app.request_code(email).await.expect(202);
    let first = app.code_for(email);

    let outbox = app.data.join("outbox");
    let aside = app.data.join("outbox-aside");
    std::fs::rename(&outbox, &aside).expect("outbox moved aside");
    std::fs::write(&outbox, b"not a directory").expect("a file in its place");
    let head = app.head().await;
    let failed = app
        .post_json("/auth/codes", None, &json!({ "email": email }))
        .await;
    assert_eq!(
        failed.expect_problem(503),
        "urn:treehole:problem:unavailable"
    );
    assert_eq!(
        app.head().await,
        head,
        "a code nobody received was recorded"
    );
    assert!(
        failed.text.contains("nothing was recorded"),
        "{}",
        failed.text
    );
    std::fs::remove_file(&outbox).expect("the file removed");
    std::fs::rename(&aside, &outbox).expect("outbox restored");

    app.register_with_code(email, "unlucky", PASSWORD, &first)
        .await
        .expect(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn look_alike_usernames_are_refused() {
    let app = spawn_app().await;
    app.new_user("boss").await;
    for (n, name) in [
        "b\u{43E}ss",
        "p\u{430}ypal",
        "\u{FF42}\u{FF4F}\u{FF53}\u{FF53}",
        "\u{3164}\u{3164}\u{3164}",
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("lookalike{n}@campus.edu");
        app.request_code(&email).await.expect(202);
        let code = app.code_for(&email);
        let body = json!({"email": email, "username": name, "password": PASSWORD, "code": code});
        refused(&app, "/users", None, &body, 422).await;
    }
    // One script, or Han with Latin, is fine.
    for (email, name) in [
        ("ivan@campus.edu", "\u{418}\u{432}\u{430}\u{43D}"),
        ("ming@campus.edu", "\u{5C0F}\u{660E}_ming"),
    ] {
        app.register(email, name, PASSWORD).await.expect(201);
    }
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invisible_and_override_text_is_refused() {
    let app = spawn_app().await;
    let ann = app.new_user("invisible_ann").await;
    let token = Some(ann.token.as_str());
    let post = app
        .create_post(
            &ann.token,
            &json!({"body": "a post to aim at", "anonymous": false}),
        )
        .await
        .expect(201);
    let comments = format!("/posts/{}/comments", str_field(&post, "post_id"));

    for body in [
        json!({"body": "\u{200B}", "anonymous": false}),
        json!({"body": "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}", "anonymous": true}),
        json!({"body": "fine", "title": "\u{202E}gnp.exe", "anonymous": false}),
        json!({"body": "fine", "title": "\u{200B}", "anonymous": false}),
        json!({"body": "abc\u{2066}def\u{2069}", "anonymous": false}),
        json!({"body": "fine", "tags": ["\u{200B}"], "anonymous": false}),
        json!({"body": "fine", "tags": ["ok\u{202E}"], "anonymous": false}),
    ] {
        refused(&app, "/posts", token, &body, 422).await;
    }
    for body in [
        json!({"body": "\u{200D}\u{200B}", "anonymous": true}),
        json!({"body": "see \u{202D}this\u{202C}", "anonymous": true}),
    ] {
        refused(&app, &comments, token, &body, 422).await;
    }
    // Invisible characters between visible ones are text: an emoji ZWJ sequence.
    app.comment(
        &ann.token,
        str_field(&post, "post_id"),
        &json!({"body": "\u{1F469}\u{200D}\u{1F4BB}", "anonymous": true}),
    )
    .await
    .expect(201);
    app.assert_no_server_errors();
}

/// Other spellings of a real id, each of which `Uuid::parse_str` takes.
fn other_spellings(id: &str) -> [String; 4] {
    [
        id.to_uppercase(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        id.replace('-', ""),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ids_have_one_spelling() {
    let app = spawn_app().await;
    let ann = app.new_user("spelling_ann").await;
    let post = app
        .create_post(&ann.token, &json!({"body": "spell me", "anonymous": false}))
        .await
        .expect(201);
    let post_id = str_field(&post, "post_id").to_owned();
    let comment = app
        .comment(
            &ann.token,
            &post_id,
            &json!({"body": "a comment", "anonymous": false}),
        )
        .await
        .expect(201);
    let comment_id = str_field(&comment, "comment_id").to_owned();
    let granted = api::cli::admin::grant(
        &CommandHandler::new(app.event_store()),
        &app.secret(),
        &ann.username,
    )
    .await
    .expect("grant");
    app.get_auth(&format!("/me?after={granted}"), &ann.token)
        .await
        .expect(200);
    let model = json!({"name": "spell", "kind": "echo", "max_concurrent": 1,
        "input_schema": {"type": "object"}});
    app.post_json("/models", Some(&ann.token), &model)
        .await
        .expect(201);
    let task = app
        .post_json(
            "/tasks",
            Some(&ann.token),
            &json!({"model": "spell", "input": {}}),
        )
        .await
        .expect(201);
    let task_id = str_field(&task, "task_id").to_owned();
    let after = crate::helpers::position(&task);

    app.get(&format!("/posts/{post_id}?after={after}"))
        .await
        .expect(200);
    app.get_auth(&format!("/tasks/{task_id}?after={after}"), &ann.token)
        .await
        .expect(200);
    let head = app.head().await;
    for other in other_spellings(&post_id) {
        app.get(&format!("/posts/{other}"))
            .await
            .expect_problem(404);
        app.get(&format!("/posts/{other}/comments"))
            .await
            .expect_problem(404);
        app.delete(&format!("/posts/{other}"), &ann.token)
            .await
            .expect_problem(404);
    }
    for other in other_spellings(&comment_id) {
        app.delete(&format!("/posts/{post_id}/comments/{other}"), &ann.token)
            .await
            .expect_problem(404);
        let reply = json!({"body": "re", "anonymous": false, "reply_to": other});
        refused(
            &app,
            &format!("/posts/{post_id}/comments"),
            Some(&ann.token),
            &reply,
            422,
        )
        .await;
    }
    for other in other_spellings(&task_id) {
        app.get_auth(&format!("/tasks/{other}"), &ann.token)
            .await
            .expect_problem(404);
        refused(
            &app,
            &format!("/tasks/{other}/cancel"),
            Some(&ann.token),
            &json!({}),
            404,
        )
        .await;
    }
    assert_eq!(app.head().await, head, "another spelling changed something");
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_input_schema_must_be_an_object() {
    let app = spawn_app().await;
    let admin = app.new_user("schema_admin").await;
    let granted = api::cli::admin::grant(
        &CommandHandler::new(app.event_store()),
        &app.secret(),
        &admin.username,
    )
    .await
    .expect("grant");
    app.get_auth(&format!("/me?after={granted}"), &admin.token)
        .await
        .expect(200);
    for schema in [
        json!(false),
        json!(true),
        json!([]),
        json!("object"),
        json!(1),
    ] {
        let body =
            json!({"name": "picky", "kind": "echo", "max_concurrent": 1, "input_schema": schema});
        refused(&app, "/models", Some(&admin.token), &body, 422).await;
    }
    let body = json!({"name": "picky", "kind": "echo", "max_concurrent": 1, "input_schema": {}});
    app.post_json("/models", Some(&admin.token), &body)
        .await
        .expect(201);
    let update = json!({"kind": "echo", "max_concurrent": 1, "input_schema": false});
    let reply = app
        .client
        .put(app.url("/models/picky"))
        .bearer_auth(&admin.token)
        .json(&update);
    let head = app.head().await;
    app.send(reply).await.expect_problem(422);
    assert_eq!(app.head().await, head);
    app.assert_no_server_errors();
}
