//! A viral post: 200 users comment anonymously at the same moment. Each must get a name of its
//! own (the first 200 of the scheme, handed out in commit order), keep it, and never be shown
//! as the host.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use domain::pseudonym::PseudonymScheme;
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::helpers::{TestApp, TestUser, position, spawn_app, str_field};

const COMMENTERS: usize = 200;

/// What a comment command answered, with who sent it.
struct Sent {
    user_id: String,
    comment_id: String,
    author_name: String,
    position: u64,
}

async fn comment_all_at_once(
    app: &Arc<TestApp>,
    users: &[TestUser],
    post_id: &str,
    round: &str,
) -> Vec<Sent> {
    let barrier = Arc::new(Barrier::new(users.len()));
    let tasks: Vec<_> = users
        .iter()
        .cloned()
        .map(|user| {
            let (app, barrier, post_id) = (app.clone(), barrier.clone(), post_id.to_owned());
            let body = format!("{round} comment of {}", user.username);
            tokio::spawn(async move {
                barrier.wait().await;
                let reply = app
                    .comment(
                        &user.token,
                        &post_id,
                        &json!({"body": body, "anonymous": true}),
                    )
                    .await;
                (user, reply)
            })
        })
        .collect();
    let mut sent = Vec::with_capacity(users.len());
    for task in tasks {
        let (user, reply) = task.await.expect("a comment task");
        let body = reply.expect(201);
        sent.push(Sent {
            user_id: user.user_id,
            comment_id: str_field(&body, "comment_id").to_owned(),
            author_name: str_field(&body, "author_name").to_owned(),
            position: position(&body),
        });
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_simultaneous_anonymous_commenters_get_distinct_stable_names() {
    let app = Arc::new(spawn_app().await);
    let scheme = PseudonymScheme::default();
    let host = app.new_user("hot_host").await;
    let users: Vec<TestUser> = stream::iter(0..COMMENTERS)
        .map(|i| {
            let app = app.clone();
            async move { app.new_user(&format!("hot_user_{i:03}")).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let distinct_ids: HashSet<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(
        distinct_ids.len(),
        COMMENTERS,
        "registration reused a user id"
    );

    let post = app
        .create_post(
            &host.token,
            &json!({"title": "食堂", "body": "二食堂的麻辣烫是不是涨价了？", "anonymous": true}),
        )
        .await
        .expect(201);
    assert_eq!(post["author_name"], scheme.host_name());
    let post_id = str_field(&post, "post_id").to_owned();

    // Round 1: everyone's first anonymous comment, fired together.
    let mut first = comment_all_at_once(&app, &users, &post_id, "first").await;
    first.sort_by_key(|s| s.position);
    let names: HashSet<&str> = first.iter().map(|s| s.author_name.as_str()).collect();
    assert_eq!(names.len(), COMMENTERS, "two commenters share a name");
    assert!(
        !names.contains(scheme.host_name()),
        "a commenter appears as the host"
    );
    let expected: HashSet<String> = (0..COMMENTERS).map(|i| scheme.name_at(i)).collect();
    assert_eq!(
        names,
        expected.iter().map(String::as_str).collect::<HashSet<_>>(),
        "the names are not the first {COMMENTERS} of the scheme"
    );
    for (i, s) in first.iter().enumerate() {
        assert_eq!(
            s.author_name,
            scheme.name_at(i),
            "names are not handed out in commit order"
        );
    }
    let name_of: HashMap<&str, &str> = first
        .iter()
        .map(|s| (s.user_id.as_str(), s.author_name.as_str()))
        .collect();

    // Round 2: everyone again, concurrently; nobody's name changes.
    let second = comment_all_at_once(&app, &users, &post_id, "second").await;
    for s in &second {
        assert_eq!(
            s.author_name,
            name_of[s.user_id.as_str()],
            "a commenter's name changed under the same post"
        );
    }

    // The host is 洞主 when anonymous and themself when not; so is a named commenter.
    let host_anon = app
        .comment(
            &host.token,
            &post_id,
            &json!({"body": "楼主本人", "anonymous": true}),
        )
        .await
        .expect(201);
    assert_eq!(host_anon["author_name"], scheme.host_name());
    let host_named = app
        .comment(
            &host.token,
            &post_id,
            &json!({"body": "实名回复", "anonymous": false}),
        )
        .await
        .expect(201);
    assert_eq!(host_named["author_name"], host.username.as_str());
    let named_user = &users[7];
    let named = app
        .comment(
            &named_user.token,
            &post_id,
            &json!({"body": "named", "anonymous": false, "reply_to": first[0].comment_id}),
        )
        .await
        .expect(201);
    assert_eq!(named["author_name"], named_user.username.as_str());

    // What the command answers said is what the comment list shows, in position order.
    let mut sent: HashMap<String, (String, u64, bool, bool)> = HashMap::new();
    for s in first.iter().chain(&second) {
        sent.insert(
            s.comment_id.clone(),
            (s.author_name.clone(), s.position, true, false),
        );
    }
    for (body, anonymous, is_host) in [
        (&host_anon, true, true),
        // A named comment never carries the host mark: it would unmask the anonymous post.
        (&host_named, false, false),
        (&named, false, false),
    ] {
        sent.insert(
            str_field(body, "comment_id").to_owned(),
            (
                str_field(body, "author_name").to_owned(),
                position(body),
                anonymous,
                is_host,
            ),
        );
    }
    let last = sent.values().map(|v| v.1).max().expect("comments");
    let listed = app
        .all_pages(&format!("/posts/{post_id}/comments"), last)
        .await;
    assert_eq!(listed.len(), sent.len(), "the comment list is incomplete");
    let mut previous = 0;
    let mut seen = HashSet::new();
    for item in &listed {
        let id = str_field(item, "comment_id");
        assert!(seen.insert(id.to_owned()), "comment {id} listed twice");
        let (name, pos, anonymous, is_host) = sent
            .get(id)
            .unwrap_or_else(|| panic!("unknown comment listed: {item}"));
        assert_eq!(item["author_name"], name.as_str(), "{item}");
        assert_eq!(item["anonymous"], *anonymous, "{item}");
        assert_eq!(item["is_host"], *is_host, "{item}");
        assert!(*pos > previous, "comments are not oldest first");
        previous = *pos;
    }
    let post_view: Value = app
        .get(&format!("/posts/{post_id}?after={last}"))
        .await
        .expect(200);
    assert_eq!(post_view["comment_count"], json!(sent.len()));
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_comment_leaves_its_authors_name_taken() {
    let app = spawn_app().await;
    let host = app.new_user("keep_host").await;
    let (first, second) = (
        app.new_user("keep_first").await,
        app.new_user("keep_second").await,
    );
    let post = app
        .create_post(
            &host.token,
            &json!({"body": "names stick", "anonymous": false}),
        )
        .await
        .expect(201);
    let post_id = str_field(&post, "post_id");
    let anon = json!({"body": "hello", "anonymous": true});
    let said = app.comment(&first.token, post_id, &anon).await.expect(201);
    assert_eq!(said["author_name"], "Alice");
    app.delete(
        &format!(
            "/posts/{post_id}/comments/{}",
            str_field(&said, "comment_id")
        ),
        &first.token,
    )
    .await
    .expect(200);
    // The name is not handed to the next commenter, and its owner gets it back.
    let other = app.comment(&second.token, post_id, &anon).await.expect(201);
    assert_eq!(other["author_name"], "Bob");
    let again = app.comment(&first.token, post_id, &anon).await.expect(201);
    assert_eq!(again["author_name"], "Alice");
    // Under a named post its author commenting anonymously gets a pseudonym like anyone:
    // the host name would tie the anonymous comment to the named post.
    let host_says = app.comment(&host.token, post_id, &anon).await.expect(201);
    assert_eq!(host_says["author_name"], "Carol");
    let listed = app
        .all_pages(&format!("/posts/{post_id}/comments"), position(&host_says))
        .await;
    let names: Vec<&str> = listed.iter().map(|c| str_field(c, "author_name")).collect();
    assert_eq!(names, ["Bob", "Alice", "Carol"]);
    assert!(listed.iter().all(|c| c["is_host"] == false), "{listed:?}");
    app.assert_no_server_errors();
}
