//! Polls (issue 18): 2 to 4 options opened with a post; one vote per user, final; counts are
//! public, voters are not, in answers or in the log.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{TestApp, position, spawn_app, str_field};

async fn vote(app: &TestApp, token: &str, post: &str, body: &Value) -> crate::helpers::Reply {
    app.post_json(&format!("/posts/{post}/poll/votes"), Some(token), body)
        .await
}

async fn poll_post(app: &TestApp, token: &str, options: &[&str]) -> String {
    let post = app
        .create_post(
            token,
            &json!({"body": "which one?", "anonymous": true, "poll": {"options": options}}),
        )
        .await
        .expect(201);
    str_field(&post, "post_id").to_owned()
}

#[tokio::test]
async fn a_vote_counts_once_and_a_second_vote_is_refused() {
    let app = spawn_app().await;
    let (a, b) = (app.new_user("voterA").await, app.new_user("voterB").await);
    let id = poll_post(&app, &a.token, &["食堂", "外卖", "自己做"]).await;
    let shown = app.get(&format!("/posts/{id}")).await;
    let shown = if shown.status == 200 {
        shown.json()
    } else {
        // The feed may not have the post yet: wait for the head.
        let head = app.head().await;
        app.get(&format!("/posts/{id}?after={head}"))
            .await
            .expect(200)
    };
    assert_eq!(shown["poll"]["options"], json!(["食堂", "外卖", "自己做"]));
    assert_eq!(shown["poll"]["counts"], json!([0, 0, 0]));

    let first = vote(&app, &a.token, &id, &json!({"option": 1}))
        .await
        .expect(201);
    assert_eq!(first["counts"], json!([0, 1, 0]));
    assert_eq!(first["mine"], 1);
    let head = app.head().await;
    let again = vote(&app, &a.token, &id, &json!({"option": 2})).await;
    assert_eq!(again.status.as_u16(), 409, "{}", again.text);
    crate::helpers::assert_problem_shape(&again, &again.json());
    assert_eq!(app.head().await, head);
    let second = vote(&app, &b.token, &id, &json!({"option": 2}))
        .await
        .expect(201);
    assert_eq!(second["counts"], json!([0, 1, 1]));
    let shown = app
        .get(&format!("/posts/{id}?after={}", position(&second)))
        .await
        .expect(200);
    assert_eq!(shown["poll"]["counts"], json!([0, 1, 1]));
    let listed = app
        .get(&format!("/posts?after={}", position(&second)))
        .await
        .expect(200);
    assert_eq!(listed["items"][0]["poll"]["counts"], json!([0, 1, 1]));
    // A post without a poll shows none.
    let plain = app
        .create_post(&a.token, &json!({"body": "no poll", "anonymous": false}))
        .await
        .expect(201);
    let plain = app
        .get(&format!(
            "/posts/{}?after={}",
            str_field(&plain, "post_id"),
            position(&plain)
        ))
        .await
        .expect(200);
    assert!(plain["poll"].is_null(), "{plain}");
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_voters_at_once_are_all_counted() {
    let app = Arc::new(spawn_app().await);
    let author = app.new_user("pollster").await;
    let id = poll_post(&app, &author.token, &["left", "right"]).await;
    let mut tokens = Vec::new();
    for i in 0..200 {
        tokens.push(app.new_user(&format!("pvoter{i}")).await.token);
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (app, id) = (app.clone(), id.clone());
        set.spawn(async move {
            vote(&app, &token, &id, &json!({"option": i % 2}))
                .await
                .expect(201)
        });
    }
    let mut last = 0;
    while let Some(answer) = set.join_next().await {
        last = last.max(position(&answer.expect("a vote")));
    }
    let shown = app
        .get(&format!("/posts/{id}?after={last}"))
        .await
        .expect(200);
    assert_eq!(shown["poll"]["counts"], json!([100, 100]));
    app.assert_no_server_errors();
}

#[tokio::test]
async fn poll_counts_are_the_same_after_a_rebuild_and_the_log_names_no_voter() {
    let app = spawn_app().await;
    let admin = app.new_admin("polladmin").await;
    let voter = app.new_user("secretvoter").await;
    let id = poll_post(&app, &admin.token, &["a", "b"]).await;
    let from = app.head().await;
    let voted = vote(&app, &voter.token, &id, &json!({"option": 0}))
        .await
        .expect(201);
    // The same user's reaction to the same post has another handle.
    let reacted = app
        .send(
            app.client
                .put(app.url(&format!("/posts/{id}/reaction")))
                .bearer_auth(&voter.token)
                .json(&json!({"value": 1})),
        )
        .await
        .expect(200);
    let events = app
        .event_store()
        .read_all_raw(from, 10)
        .await
        .expect("the log");
    assert_eq!(events.len(), 2);
    let handles: Vec<String> = events
        .iter()
        .map(|e| {
            let text = format!("{} {}", e.data.get(), e.metadata.get());
            assert!(
                !text.contains(&voter.user_id) && !text.contains(&voter.username),
                "{text}"
            );
            let metadata: Value = serde_json::from_str(e.metadata.get()).unwrap();
            assert!(metadata.get("actor").is_none(), "{text}");
            let data: Value = serde_json::from_str(e.data.get()).unwrap();
            data["voter"]
                .as_str()
                .or(data["reactor"].as_str())
                .expect("a handle")
                .to_owned()
        })
        .collect();
    assert_ne!(handles[0], handles[1]);

    app.get(&format!("/posts/{id}?after={}", position(&reacted)))
        .await
        .expect(200);
    app.rebuild(&admin.token, "feed").await;
    let after = app.get(&format!("/posts/{id}")).await.expect(200);
    assert_eq!(after["poll"]["counts"], json!([1, 0]));
    assert_eq!(after["likes"], 1);
    assert!(position(&voted) > from);
}

#[tokio::test]
async fn bad_polls_and_votes_get_problems_and_change_nothing() {
    let app = spawn_app().await;
    let user = app.new_user("badpoller").await;
    let id = poll_post(&app, &user.token, &["x", "y"]).await;
    let plain = app
        .create_post(&user.token, &json!({"body": "no poll", "anonymous": false}))
        .await
        .expect(201);
    let plain = str_field(&plain, "post_id").to_owned();
    let gone = poll_post(&app, &user.token, &["p", "q"]).await;
    app.delete(&format!("/posts/{gone}"), &user.token)
        .await
        .expect(200);
    let unknown = uuid::Uuid::now_v7().to_string();
    let poll =
        |options: Value| json!({"body": "b", "anonymous": false, "poll": {"options": options}});
    let posts: Vec<(&str, Value, u16)> = vec![
        ("one option", poll(json!(["only"])), 422),
        ("five options", poll(json!(["a", "b", "c", "d", "e"])), 422),
        ("no options", poll(json!([])), 422),
        (
            "an option too long",
            poll(json!(["a", "b".repeat(31)])),
            422,
        ),
        ("a blank option", poll(json!(["a", "  "])), 422),
        ("two options alike", poll(json!(["Yes", "yes"])), 422),
        ("options not strings", poll(json!([1, 2])), 422),
        (
            "poll not an object",
            json!({"body": "b", "anonymous": false, "poll": ["a", "b"]}),
            422,
        ),
        (
            "unknown poll field",
            json!({"body": "b", "anonymous": false, "poll": {"options": ["a", "b"], "multi": true}}),
            422,
        ),
    ];
    let head = app.head().await;
    for (name, body, status) in posts {
        let reply = app.create_post(&user.token, &body).await;
        assert_eq!(reply.status.as_u16(), status, "{name}: {}", reply.text);
        crate::helpers::assert_problem_shape(&reply, &reply.json());
        assert_eq!(app.head().await, head, "{name} changed the log");
    }
    let votes: Vec<(&str, String, Value, u16)> = vec![
        ("no poll", plain.clone(), json!({"option": 0}), 409),
        ("unknown post", unknown.clone(), json!({"option": 0}), 404),
        ("deleted post", gone.clone(), json!({"option": 0}), 410),
        ("option out of range", id.clone(), json!({"option": 2}), 422),
        ("negative option", id.clone(), json!({"option": -1}), 422),
        ("option a string", id.clone(), json!({"option": "0"}), 422),
        ("option missing", id.clone(), json!({}), 422),
        (
            "unknown field",
            id.clone(),
            json!({"option": 0, "also": 1}),
            422,
        ),
        (
            "bad post id",
            "not-a-post".into(),
            json!({"option": 0}),
            404,
        ),
    ];
    for (name, post, body, status) in votes {
        let reply = vote(&app, &user.token, &post, &body).await;
        assert_eq!(reply.status.as_u16(), status, "{name}: {}", reply.text);
        crate::helpers::assert_problem_shape(&reply, &reply.json());
        assert_eq!(app.head().await, head, "{name} changed the log");
    }
    let anonymous = app
        .post_json(
            &format!("/posts/{id}/poll/votes"),
            None,
            &json!({"option": 0}),
        )
        .await;
    assert_eq!(anonymous.status.as_u16(), 401);
    app.assert_no_server_errors();
}

#[tokio::test]
async fn a_signed_in_reader_sees_their_own_vote_and_reaction_and_nobody_elses() {
    let app = spawn_app().await;
    let (a, b) = (app.new_user("minea").await, app.new_user("mineb").await);
    let id = poll_post(&app, &a.token, &["湖边", "山上"]).await;
    let voted = vote(&app, &b.token, &id, &json!({"option": 1}))
        .await
        .expect(201);
    let reacted = app
        .send(
            app.client
                .put(app.url(&format!("/posts/{id}/reaction")))
                .bearer_auth(&b.token)
                .json(&json!({"value": -1})),
        )
        .await
        .expect(200);
    let after = position(&voted).max(position(&reacted));
    let seen_by_b = app
        .get_auth(&format!("/posts/{id}?after={after}"), &b.token)
        .await
        .expect(200);
    assert_eq!(seen_by_b["mine"], json!({"reaction": -1, "vote": 1}));
    assert_eq!(seen_by_b["poll"]["counts"], json!([0, 1]));
    let seen_by_a = app
        .get_auth(&format!("/posts/{id}?after={after}"), &a.token)
        .await
        .expect(200);
    assert_eq!(seen_by_a["mine"], json!({"reaction": 0, "vote": null}));
    let public = app
        .get(&format!("/posts/{id}?after={after}"))
        .await
        .expect(200);
    assert!(
        public.get("mine").is_none(),
        "no reader, no `mine`: {public}"
    );
    // A bad token is refused, not read as no reader.
    app.send(
        app.client
            .get(app.url(&format!("/posts/{id}")))
            .bearer_auth("not-a-token"),
    )
    .await
    .expect_problem(401);
    // Cleared: no reaction shown.
    let cleared = app
        .send(
            app.client
                .put(app.url(&format!("/posts/{id}/reaction")))
                .bearer_auth(&b.token)
                .json(&json!({"value": 0})),
        )
        .await
        .expect(200);
    let again = app
        .get_auth(
            &format!("/posts/{id}?after={}", position(&cleared)),
            &b.token,
        )
        .await
        .expect(200);
    assert_eq!(again["mine"], json!({"reaction": 0, "vote": 1}));
}
