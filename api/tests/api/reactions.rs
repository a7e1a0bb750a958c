//! Reactions (issue 18): set, not toggled; counted once per user and item; nobody sees who
//! reacted, and the log does not say either.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{TestApp, position, spawn_app, spawn_app_with, str_field};

async fn react(
    app: &TestApp,
    token: Option<&str>,
    path: &str,
    body: &Value,
) -> crate::helpers::Reply {
    let request = app.client.put(app.url(path)).json(body);
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    app.send(request).await
}

fn counts(answer: &Value) -> (i64, i64) {
    (
        answer["likes"].as_i64().expect("likes"),
        answer["dislikes"].as_i64().expect("dislikes"),
    )
}

#[tokio::test]
async fn a_reaction_is_set_not_toggled_and_counted_once_per_user() {
    let app = spawn_app().await;
    let (author, b, c) = (
        app.new_user("rauthor").await,
        app.new_user("rbee").await,
        app.new_user("rcee").await,
    );
    let post = app
        .create_post(
            &author.token,
            &json!({"body": "react to me", "anonymous": true}),
        )
        .await
        .expect(201);
    let id = str_field(&post, "post_id").to_owned();
    let path = format!("/posts/{id}/reaction");

    let liked = react(&app, Some(&b.token), &path, &json!({"value": 1}))
        .await
        .expect(200);
    assert_eq!(counts(&liked), (1, 0));
    assert_eq!(liked["mine"], 1);
    assert!(position(&liked) > 0);
    // The same value again records nothing and counts nothing more.
    let head = app.head().await;
    let again = react(&app, Some(&b.token), &path, &json!({"value": 1}))
        .await
        .expect(200);
    assert_eq!(counts(&again), (1, 0));
    assert_eq!(again["position"], 0);
    assert_eq!(app.head().await, head);

    let disliked = react(&app, Some(&c.token), &path, &json!({"value": -1}))
        .await
        .expect(200);
    assert_eq!(counts(&disliked), (1, 1));
    let switched = react(&app, Some(&b.token), &path, &json!({"value": -1}))
        .await
        .expect(200);
    assert_eq!(counts(&switched), (0, 2));
    let cleared = react(&app, Some(&c.token), &path, &json!({"value": 0}))
        .await
        .expect(200);
    assert_eq!(counts(&cleared), (0, 1));
    assert_eq!(cleared["mine"], 0);

    let shown = app
        .get(&format!("/posts/{id}?after={}", position(&cleared)))
        .await
        .expect(200);
    assert_eq!(counts(&shown), (0, 1));
    let listed = app
        .get(&format!("/posts?after={}", position(&cleared)))
        .await
        .expect(200);
    assert_eq!(counts(&listed["items"][0]), (0, 1));

    // Comments have counts of their own, by either route.
    let comment = app
        .comment(&b.token, &id, &json!({"body": "me too", "anonymous": true}))
        .await
        .expect(201);
    let cid = str_field(&comment, "comment_id").to_owned();
    let nested = react(
        &app,
        Some(&c.token),
        &format!("/posts/{id}/comments/{cid}/reaction"),
        &json!({"value": 1}),
    )
    .await
    .expect(200);
    assert_eq!(counts(&nested), (1, 0));
    // The flat route finds the comment's post in the read model.
    app.get(&format!("/posts/{id}/comments?after={}", position(&nested)))
        .await
        .expect(200);
    let flat = react(
        &app,
        Some(&author.token),
        &format!("/comments/{cid}/reaction"),
        &json!({"value": 1}),
    )
    .await
    .expect(200);
    assert_eq!(counts(&flat), (2, 0));
    let page = app
        .get(&format!("/posts/{id}/comments?after={}", position(&flat)))
        .await
        .expect(200);
    assert_eq!(counts(&page["items"][0]), (2, 0));
    let post_again = app
        .get(&format!("/posts/{id}?after={}", position(&flat)))
        .await
        .expect(200);
    assert_eq!(
        counts(&post_again),
        (0, 1),
        "a comment's reactions are not the post's"
    );
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_users_reacting_at_once_count_two_hundred() {
    let app = Arc::new(spawn_app().await);
    let author = app.new_user("crowdpost").await;
    let post = app
        .create_post(
            &author.token,
            &json!({"body": "popular", "anonymous": false}),
        )
        .await
        .expect(201);
    let id = str_field(&post, "post_id").to_owned();
    let mut users = Vec::new();
    for i in 0..200 {
        users.push(app.new_user(&format!("crowd{i}")).await.token);
    }
    let mut set = tokio::task::JoinSet::new();
    for token in users {
        let (app, path) = (app.clone(), format!("/posts/{id}/reaction"));
        set.spawn(async move {
            react(&app, Some(&token), &path, &json!({"value": 1}))
                .await
                .expect(200)
        });
    }
    let mut last = 0;
    let mut seen = std::collections::BTreeSet::new();
    while let Some(answer) = set.join_next().await {
        let answer = answer.expect("a reaction");
        last = last.max(position(&answer));
        seen.insert(answer["likes"].as_i64().expect("likes"));
    }
    // Every answer saw its own like counted: 200 different counts, the last one 200.
    assert_eq!(seen.len(), 200);
    assert_eq!(seen.last(), Some(&200));
    let shown = app
        .get(&format!("/posts/{id}?after={last}"))
        .await
        .expect(200);
    assert_eq!(counts(&shown), (200, 0));
    app.assert_no_server_errors();
}

#[tokio::test]
async fn reaction_counts_are_the_same_after_a_rebuild() {
    let app = spawn_app().await;
    let admin = app.new_admin("radmin").await;
    let others = [app.new_user("rone").await, app.new_user("rtwo").await];
    let post = app
        .create_post(
            &admin.token,
            &json!({"body": "rebuild me", "anonymous": false}),
        )
        .await
        .expect(201);
    let id = str_field(&post, "post_id").to_owned();
    let comment = app
        .comment(
            &admin.token,
            &id,
            &json!({"body": "and me", "anonymous": true}),
        )
        .await
        .expect(201);
    let cid = str_field(&comment, "comment_id").to_owned();
    let mut last = 0;
    for (i, u) in others.iter().enumerate() {
        let value = if i == 0 { 1 } else { -1 };
        react(
            &app,
            Some(&u.token),
            &format!("/posts/{id}/reaction"),
            &json!({"value": value}),
        )
        .await
        .expect(200);
        let r = react(
            &app,
            Some(&u.token),
            &format!("/posts/{id}/comments/{cid}/reaction"),
            &json!({"value": 1}),
        )
        .await
        .expect(200);
        last = position(&r);
    }
    let before_post = app
        .get(&format!("/posts/{id}?after={last}"))
        .await
        .expect(200);
    let before_comments = app
        .get(&format!("/posts/{id}/comments?after={last}"))
        .await
        .expect(200);
    assert_eq!(counts(&before_post), (1, 1));
    assert_eq!(counts(&before_comments["items"][0]), (2, 0));
    app.rebuild(&admin.token, "feed").await;
    app.rebuild(&admin.token, "comments").await;
    let after_post = app.get(&format!("/posts/{id}")).await.expect(200);
    let after_comments = app.get(&format!("/posts/{id}/comments")).await.expect(200);
    assert_eq!(counts(&after_post), (1, 1));
    assert_eq!(counts(&after_comments["items"][0]), (2, 0));
}

#[tokio::test]
async fn nobody_learns_who_reacted_from_an_answer_or_the_log() {
    let app = spawn_app().await;
    let author = app.new_user("quietauthor").await;
    let reactor = app.new_user("quietreactor").await;
    let post = app
        .create_post(
            &author.token,
            &json!({"body": "who liked this?", "anonymous": true}),
        )
        .await
        .expect(201);
    let id = str_field(&post, "post_id").to_owned();
    let comment = app
        .comment(
            &reactor.token,
            &id,
            &json!({"body": "an anonymous word", "anonymous": true}),
        )
        .await
        .expect(201);
    let cid = str_field(&comment, "comment_id").to_owned();
    let from = app.head().await;
    let on_post = react(
        &app,
        Some(&reactor.token),
        &format!("/posts/{id}/reaction"),
        &json!({"value": 1}),
    )
    .await
    .expect(200);
    react(
        &app,
        Some(&reactor.token),
        &format!("/posts/{id}/comments/{cid}/reaction"),
        &json!({"value": -1}),
    )
    .await
    .expect(200);
    let answers = serde_json::to_string(&on_post).unwrap();
    assert!(!answers.contains(&reactor.user_id) && !answers.contains(&reactor.username));

    let store = app.event_store();
    let events = store.read_all_raw(from, 100).await.expect("the log");
    assert_eq!(events.len(), 2, "one event per reaction");
    let mut reactors = Vec::new();
    for e in &events {
        assert_eq!(e.event_type, "ReactionSet");
        let text = format!("{} {}", e.data.get(), e.metadata.get());
        assert!(!text.contains(&reactor.user_id), "{text}");
        assert!(!text.contains(&reactor.username), "{text}");
        let metadata: Value = serde_json::from_str(e.metadata.get()).unwrap();
        assert!(
            metadata.get("actor").is_none(),
            "an actor is recorded: {text}"
        );
        let data: Value = serde_json::from_str(e.data.get()).unwrap();
        reactors.push(data["reactor"].as_str().expect("a handle").to_owned());
    }
    // Two items, two handles: the log cannot tell that one user reacted to both, nor tie the
    // reaction to the anonymous comment's author token.
    assert_ne!(reactors[0], reactors[1]);
    let comment_event = store.read_all_raw(from - 1, 1).await.expect("the log");
    let token =
        serde_json::from_str::<Value>(comment_event[0].data.get()).unwrap()["author"]["anonymous"]
            ["token"]
            .as_str()
            .expect("a token")
            .to_owned();
    assert!(reactors.iter().all(|r| *r != token));
}

#[tokio::test]
async fn reactions_are_rate_limited_per_user() {
    let app = spawn_app_with(|s| {
        s.rate_limits.enabled = true;
        s.rate_limits.reactions_per_user_per_minute = 2;
    })
    .await;
    let (a, b) = (app.new_user("eager").await, app.new_user("calm").await);
    let post = app
        .create_post(&a.token, &json!({"body": "limits", "anonymous": false}))
        .await
        .expect(201);
    let path = format!("/posts/{}/reaction", str_field(&post, "post_id"));
    for value in [1, -1] {
        react(&app, Some(&a.token), &path, &json!({"value": value}))
            .await
            .expect(200);
    }
    let head = app.head().await;
    let refused = react(&app, Some(&a.token), &path, &json!({"value": 0})).await;
    assert_eq!(refused.status.as_u16(), 429, "{}", refused.text);
    crate::helpers::assert_problem_shape(&refused, &refused.json());
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(app.head().await, head);
    // Another user's reactions are their own.
    react(&app, Some(&b.token), &path, &json!({"value": 1}))
        .await
        .expect(200);
}

#[tokio::test]
async fn bad_reactions_get_problems_and_change_nothing() {
    let app = spawn_app().await;
    let user = app.new_user("badreactor").await;
    let post = app
        .create_post(&user.token, &json!({"body": "target", "anonymous": false}))
        .await
        .expect(201);
    let id = str_field(&post, "post_id").to_owned();
    let gone = app
        .create_post(
            &user.token,
            &json!({"body": "soon gone", "anonymous": false}),
        )
        .await
        .expect(201);
    let gone_id = str_field(&gone, "post_id").to_owned();
    app.delete(&format!("/posts/{gone_id}"), &user.token)
        .await
        .expect(200);
    let other = app
        .create_post(&user.token, &json!({"body": "another", "anonymous": false}))
        .await
        .expect(201);
    let other_id = str_field(&other, "post_id").to_owned();
    let comment = app
        .comment(
            &user.token,
            &other_id,
            &json!({"body": "elsewhere", "anonymous": false}),
        )
        .await
        .expect(201);
    let cid = str_field(&comment, "comment_id").to_owned();
    let unknown = uuid::Uuid::now_v7().to_string();
    let post_path = format!("/posts/{id}/reaction");
    let cases: Vec<(&str, Option<&str>, String, Value, u16)> = vec![
        (
            "value 2",
            Some(&user.token),
            post_path.clone(),
            json!({"value": 2}),
            422,
        ),
        (
            "value -2",
            Some(&user.token),
            post_path.clone(),
            json!({"value": -2}),
            422,
        ),
        (
            "value a string",
            Some(&user.token),
            post_path.clone(),
            json!({"value": "1"}),
            422,
        ),
        (
            "value a fraction",
            Some(&user.token),
            post_path.clone(),
            json!({"value": 0.5}),
            422,
        ),
        (
            "value missing",
            Some(&user.token),
            post_path.clone(),
            json!({}),
            422,
        ),
        (
            "unknown field",
            Some(&user.token),
            post_path.clone(),
            json!({"value": 1, "who": "me"}),
            422,
        ),
        (
            "not an object",
            Some(&user.token),
            post_path.clone(),
            json!([1]),
            422,
        ),
        (
            "no session",
            None,
            post_path.clone(),
            json!({"value": 1}),
            401,
        ),
        (
            "unknown post",
            Some(&user.token),
            format!("/posts/{unknown}/reaction"),
            json!({"value": 1}),
            404,
        ),
        (
            "bad post id",
            Some(&user.token),
            "/posts/nope/reaction".into(),
            json!({"value": 1}),
            404,
        ),
        (
            "deleted post",
            Some(&user.token),
            format!("/posts/{gone_id}/reaction"),
            json!({"value": 1}),
            410,
        ),
        (
            "a comment of another post",
            Some(&user.token),
            format!("/posts/{id}/comments/{cid}/reaction"),
            json!({"value": 1}),
            404,
        ),
        (
            "unknown comment",
            Some(&user.token),
            format!("/posts/{id}/comments/{unknown}/reaction"),
            json!({"value": 1}),
            404,
        ),
        (
            "unknown comment, flat",
            Some(&user.token),
            format!("/comments/{unknown}/reaction"),
            json!({"value": 1}),
            404,
        ),
        (
            "bad comment id, flat",
            Some(&user.token),
            "/comments/42/reaction".into(),
            json!({"value": 1}),
            404,
        ),
        (
            "bad value, flat",
            Some(&user.token),
            format!("/comments/{cid}/reaction"),
            json!({"value": 9}),
            422,
        ),
    ];
    let head = app.head().await;
    for (name, token, path, body, status) in cases {
        let reply = react(&app, token, &path, &body).await;
        assert_eq!(reply.status.as_u16(), status, "{name}: {}", reply.text);
        let problem = reply.json();
        crate::helpers::assert_problem_shape(&reply, &problem);
        assert_eq!(app.head().await, head, "{name} changed the log");
    }
    app.assert_no_server_errors();
}
