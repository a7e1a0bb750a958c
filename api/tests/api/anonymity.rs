//! The promise of a tree hole (ARCHITECTURE.md §6): no public answer, not even an error,
//! carries the real author of anonymous content.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, position, spawn_app, str_field};

/// Everything that identifies `user`, in the forms it could leak in.
fn secrets(user: &TestUser) -> Vec<String> {
    vec![
        user.user_id.to_lowercase(),
        user.user_id.replace('-', "").to_lowercase(),
        user.email.to_lowercase(),
        user.username.to_lowercase(),
        user.token.clone(),
    ]
}

fn ids_of(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| str_field(i, field).to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_public_answer_names_the_author_of_anonymous_content() {
    let app = spawn_app().await;
    // Distinctive identities, so that any trace of them is found by a plain substring search.
    let kestrel = app.new_user("zx_hidden_kestrel").await;
    let otter = app.new_user("qv_secret_otter").await;
    let nora = app.new_user("named_nora").await;
    let mallory = app.new_user("mallory_meddler").await;
    // Everything the server answers from here on is public as far as the two hidden authors
    // are concerned: neither of them asks for their own account again.
    let mark = app.replies().len();

    let p1 = app
        .create_post(
            &kestrel.token,
            &json!({"title": "匿名的树洞", "body": "没人知道我是谁", "anonymous": true, "tags": ["secret", "树洞"]}),
        )
        .await
        .expect(201);
    assert_eq!(p1["author_name"], "洞主");
    let p1_id = str_field(&p1, "post_id").to_owned();
    let p2 = app
        .create_post(
            &nora.token,
            &json!({"body": "a named post by nora", "anonymous": false}),
        )
        .await
        .expect(201);
    assert_eq!(p2["author_name"], "named_nora");
    let p2_id = str_field(&p2, "post_id").to_owned();

    let otter_on_p1 = app
        .comment(
            &otter.token,
            &p1_id,
            &json!({"body": "otter here, anonymously", "anonymous": true}),
        )
        .await
        .expect(201);
    let otter_c1 = str_field(&otter_on_p1, "comment_id").to_owned();
    let kestrel_on_p1 = app
        .comment(
            &kestrel.token,
            &p1_id,
            &json!({"body": "the host answers", "anonymous": true, "reply_to": otter_c1}),
        )
        .await
        .expect(201);
    assert_eq!(kestrel_on_p1["author_name"], "洞主");
    app.comment(
        &nora.token,
        &p1_id,
        &json!({"body": "nora, by name", "anonymous": false}),
    )
    .await
    .expect(201);
    let kestrel_on_p2 = app
        .comment(
            &kestrel.token,
            &p2_id,
            &json!({"body": "kestrel on someone else's post", "anonymous": true}),
        )
        .await
        .expect(201);
    assert_eq!(kestrel_on_p2["author_name"], "Alice");
    let kestrel_c2 = str_field(&kestrel_on_p2, "comment_id").to_owned();
    let otter_on_p2 = app
        .comment(
            &otter.token,
            &p2_id,
            &json!({"body": "otter on p2", "anonymous": true}),
        )
        .await
        .expect(201);
    assert_eq!(otter_on_p2["author_name"], "Bob");

    // A repeat with the same Idempotency-Key answers again; a different body is refused.
    let keyed = |body: &str| {
        app.client
            .post(app.url(&format!("/posts/{p2_id}/comments")))
            .bearer_auth(&kestrel.token)
            .header("idempotency-key", "kestrel-1")
            .json(&json!({"body": body, "anonymous": true}))
    };
    let first = app.send(keyed("said once")).await.expect(201);
    let again = app.send(keyed("said once")).await.expect(200);
    assert_eq!(first, again);
    app.send(keyed("said otherwise")).await.expect_problem(422);

    // Others may not delete anonymous content, and the refusal must not say whose it is.
    app.delete(&format!("/posts/{p1_id}"), &mallory.token)
        .await
        .expect_problem(403);
    app.delete(
        &format!("/posts/{p2_id}/comments/{kestrel_c2}"),
        &mallory.token,
    )
    .await
    .expect_problem(403);
    app.delete(
        &format!("/posts/{p1_id}/comments/{otter_c1}"),
        &kestrel.token,
    )
    .await
    .expect_problem(403);
    // Taken identities: the refusal names neither the owner nor the content.
    app.register(
        "ZX_Hidden_Kestrel@campus.edu",
        "someone_else",
        "a long password",
    )
    .await
    .expect_problem(409);
    app.register(
        "someone.else@campus.edu",
        "ZX_HIDDEN_KESTREL",
        "a long password",
    )
    .await
    .expect_problem(409);

    let last = position(&otter_on_p2).max(position(&first));
    let feed = app.all_pages("/posts", last).await;
    let feed_ids = ids_of(&feed, "post_id");
    assert!(feed_ids.contains(&p1_id) && feed_ids.contains(&p2_id));
    let p1_view = app
        .get(&format!("/posts/{p1_id}?after={last}"))
        .await
        .expect(200);
    assert_eq!(p1_view["author_name"], "洞主");
    assert_eq!(p1_view["anonymous"], true);
    app.get(&format!("/posts/{p2_id}")).await.expect(200);
    let p1_comments = app
        .all_pages(&format!("/posts/{p1_id}/comments"), last)
        .await;
    assert_eq!(p1_comments.len(), 3);
    let p2_comments = app
        .all_pages(&format!("/posts/{p2_id}/comments"), last)
        .await;
    assert_eq!(p2_comments.len(), 3);

    // Deleting: a comment leaves the list; a post leaves every view with its comments.
    let gone = app
        .delete(
            &format!("/posts/{p2_id}/comments/{kestrel_c2}"),
            &kestrel.token,
        )
        .await
        .expect(200);
    let p2_comments = app
        .all_pages(&format!("/posts/{p2_id}/comments"), position(&gone))
        .await;
    assert!(!ids_of(&p2_comments, "comment_id").contains(&kestrel_c2));
    assert_eq!(p2_comments.len(), 2);
    app.delete(
        &format!("/posts/{p2_id}/comments/{kestrel_c2}"),
        &kestrel.token,
    )
    .await
    .expect_problem(404);

    let deleted = app
        .delete(&format!("/posts/{p1_id}"), &kestrel.token)
        .await
        .expect(200);
    let after = position(&deleted);
    app.get(&format!("/posts/{p1_id}?after={after}"))
        .await
        .expect_problem(404);
    app.get(&format!("/posts/{p1_id}/comments?after={after}"))
        .await
        .expect_problem(404);
    let feed = app.all_pages("/posts", after).await;
    assert_eq!(ids_of(&feed, "post_id"), vec![p2_id.clone()]);
    for token in [&otter.token, &kestrel.token] {
        app.comment(
            token,
            &p1_id,
            &json!({"body": "too late", "anonymous": true}),
        )
        .await
        .expect_problem(410);
    }
    app.delete(&format!("/posts/{p1_id}"), &mallory.token)
        .await
        .expect_problem(410);
    app.delete(&format!("/posts/{p1_id}"), &kestrel.token)
        .await
        .expect_problem(410);
    app.delete(&format!("/posts/{p1_id}/comments/{otter_c1}"), &otter.token)
        .await
        .expect_problem(410);

    // The statistics count the anonymous content and name no one.
    let overview = app
        .get(&format!("/stats/overview?after={after}"))
        .await
        .expect(200);
    assert!(
        overview["anonymous_comments"].as_u64() >= Some(2),
        "{overview}"
    );
    let today = chrono::Utc::now().date_naive();
    let (from, to) = (today - chrono::Days::new(1), today + chrono::Days::new(1));
    app.get(&format!("/stats/daily?from={from}&to={to}&after={after}"))
        .await
        .expect(200);

    assert_nothing_public_names(&app, mark, &[&kestrel, &otter]);
    app.assert_no_server_errors();
}

/// Searches every answer since `mark` (status line, headers and body) for the hidden authors.
#[track_caller]
fn assert_nothing_public_names(app: &TestApp, mark: usize, hidden: &[&TestUser]) {
    let replies = app.replies();
    assert!(replies.len() > mark + 30, "too few answers were collected");
    for reply in &replies[mark..] {
        let text = reply.everything().to_lowercase();
        for user in hidden {
            for secret in secrets(user) {
                assert!(
                    !text.contains(&secret),
                    "{} {} reveals {secret:?} of {}: {}",
                    reply.method,
                    reply.path,
                    user.username,
                    reply.text
                );
            }
        }
    }
}
