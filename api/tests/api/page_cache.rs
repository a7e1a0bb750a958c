//! Public pages answered from memory (`api::http::page_cache`) are the pages a fresh read gives: each
//! write that changes one is visible on the next read that asks for its position, on the feed,
//! a post and a post's comments, through deletes and a rebuild's promotion.

use serde_json::{Value, json};

use crate::helpers::{TestApp, position, spawn_app, str_field};
use crate::tasks::admin;

/// The page at `path`, read twice: the second answer (from memory when nothing moved between)
/// must be the first one, byte for byte, with the same projection position.
async fn read_twice(app: &TestApp, path: &str) -> Value {
    let first = app.get(path).await;
    let body = first.expect(200);
    let again = app.get(path).await;
    again.expect(200);
    if again.headers.get("x-projection-position") == first.headers.get("x-projection-position") {
        assert_eq!(again.text, first.text, "{path}: a kept page differs");
    }
    assert_eq!(again.content_type(), first.content_type());
    body
}

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn kept_pages_follow_every_write_that_changes_them() {
    let app = spawn_app().await;
    let ops = admin(&app, "ops_pages").await;
    let ann = app.new_user("ann_pages").await;
    let bob = app.new_user("bob_pages").await;

    let made = app
        .create_post(
            &ann.token,
            &json!({"body": "a quiet library", "anonymous": false}),
        )
        .await
        .expect(201);
    let post = str_field(&made, "post_id").to_owned();
    let at = position(&made);
    let feed = read_twice(&app, &format!("/posts?after={at}")).await;
    assert_eq!(items(&feed).len(), 1);
    let shown = read_twice(&app, &format!("/posts/{post}?after={at}")).await;
    assert_eq!(shown["comment_count"], 0);
    let comments_path = format!("/posts/{post}/comments");
    assert!(items(&read_twice(&app, &comments_path).await).is_empty());
    // The same pages without `after`: kept now, and still right.
    read_twice(&app, "/posts").await;
    read_twice(&app, &format!("/posts/{post}")).await;

    // A comment: the comment page, the post's count and the feed's count move.
    let said = app
        .comment(
            &bob.token,
            &post,
            &json!({"body": "so quiet", "anonymous": true}),
        )
        .await
        .expect(201);
    let comment = str_field(&said, "comment_id").to_owned();
    let at = position(&said);
    let page = read_twice(&app, &format!("{comments_path}?after={at}")).await;
    assert_eq!(items(&page).len(), 1, "{page}");
    assert_eq!(items(&page)[0]["body"], "so quiet");
    let shown = read_twice(&app, &format!("/posts/{post}?after={at}")).await;
    assert_eq!(shown["comment_count"], 1, "{shown}");
    let feed = read_twice(&app, &format!("/posts?after={at}")).await;
    assert_eq!(items(&feed)[0]["comment_count"], 1, "{feed}");

    // A second post joins the feed page kept before it.
    let second = app
        .create_post(
            &bob.token,
            &json!({"body": "a loud canteen", "anonymous": true}),
        )
        .await
        .expect(201);
    let at = position(&second);
    assert_eq!(
        items(&read_twice(&app, &format!("/posts?after={at}")).await).len(),
        2
    );

    // A rebuild of the feed and the comments: the same pages from the new generations.
    let before_feed = app.get("/posts").await.text;
    let before_comments = app.get(&comments_path).await.text;
    app.rebuild(&ops.token, "feed").await;
    app.rebuild(&ops.token, "comments").await;
    assert_eq!(app.get("/posts").await.text, before_feed);
    assert_eq!(app.get(&comments_path).await.text, before_comments);

    // Deleting the comment, then the post.
    let gone = app
        .delete(&format!("/posts/{post}/comments/{comment}"), &bob.token)
        .await
        .expect(200);
    let at = position(&gone);
    assert!(items(&read_twice(&app, &format!("{comments_path}?after={at}")).await).is_empty());
    let shown = read_twice(&app, &format!("/posts/{post}?after={at}")).await;
    assert_eq!(shown["comment_count"], 0, "{shown}");
    let gone = app
        .delete(&format!("/posts/{post}"), &ann.token)
        .await
        .expect(200);
    let at = position(&gone);
    app.get(&format!("/posts/{post}?after={at}"))
        .await
        .expect_problem(404);
    app.get(&format!("{comments_path}?after={at}"))
        .await
        .expect_problem(404);
    let feed = read_twice(&app, &format!("/posts?after={at}")).await;
    assert_eq!(items(&feed).len(), 1, "{feed}");
    app.assert_no_server_errors();
}
