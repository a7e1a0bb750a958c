//! The hot list (issue 18): the documented formula over what the events recorded, the same
//! after a rebuild; one busy commenter counts once; deleted posts leave at once.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, position, spawn_app, str_field};

/// The documented score with the default weights: (1 * commenters + 3 * likes - 1 *
/// dislikes + 2 * explicit followers) * 1800 + created_at in Unix seconds.
fn score(post: &Value) -> i64 {
    let n = |f: &str| post[f].as_i64().unwrap_or_else(|| panic!("{f} in {post}"));
    let created: DateTime<Utc> = post["created_at"]
        .as_str()
        .expect("created_at")
        .parse()
        .expect("a time");
    (n("commenters") + 3 * n("likes") - n("dislikes") + 2 * n("followers")) * 1800
        + created.timestamp()
}

async fn react(app: &TestApp, token: &str, post: &str, value: i64) -> Value {
    app.send(
        app.client
            .put(app.url(&format!("/posts/{post}/reaction")))
            .bearer_auth(token)
            .json(&json!({"value": value})),
    )
    .await
    .expect(200)
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| str_field(p, "post_id").to_owned())
        .collect()
}

#[tokio::test]
async fn the_hot_list_follows_the_documented_formula_and_survives_a_rebuild() {
    let app = spawn_app().await;
    let admin = app.new_admin("hotadmin").await;
    let users = [
        app.new_user("hot1").await,
        app.new_user("hot2").await,
        app.new_user("hot3").await,
    ];
    let mut posts = Vec::new();
    for i in 0..4 {
        let p = app
            .create_post(
                &admin.token,
                &json!({"body": format!("hot {i}"), "anonymous": i % 2 == 0}),
            )
            .await
            .expect(201);
        posts.push(str_field(&p, "post_id").to_owned());
    }
    // posts[1]: two likes (6 points). posts[3]: two explicit followers (4). posts[2]: three
    // commenters, one of them commenting six times (3 points, not 8). posts[0]: a dislike (-1).
    for u in &users[1..] {
        app.send(
            app.client
                .put(app.url(&format!("/posts/{}/follow", posts[3])))
                .bearer_auth(&u.token)
                .json(&json!({"following": true})),
        )
        .await
        .expect(200);
    }
    react(&app, &users[0].token, &posts[1], 1).await;
    react(&app, &users[1].token, &posts[1], 1).await;
    for u in &users {
        app.comment(
            &u.token,
            &posts[2],
            &json!({"body": "first", "anonymous": true}),
        )
        .await
        .expect(201);
    }
    for _ in 0..5 {
        app.comment(
            &users[0].token,
            &posts[2],
            &json!({"body": "again", "anonymous": true}),
        )
        .await
        .expect(201);
    }
    let last = react(&app, &users[2].token, &posts[0], -1).await;

    let hot = app
        .get(&format!("/posts/hot?after={}", position(&last)))
        .await
        .expect(200);
    let items = hot["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 4);
    let by_id = |id: &str| {
        items
            .iter()
            .find(|p| p["post_id"] == id)
            .expect("listed")
            .clone()
    };
    assert_eq!(
        by_id(&posts[2])["commenters"],
        3,
        "one busy commenter counts once"
    );
    assert_eq!(by_id(&posts[2])["comment_count"], 8);
    // The order is the formula's, ties newest first.
    let scores: Vec<i64> = items.iter().map(score).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "not by score: {scores:?}"
    );
    assert_eq!(by_id(&posts[3])["followers"], 2);
    assert_eq!(
        ids(&hot)[..3],
        [posts[1].clone(), posts[3].clone(), posts[2].clone()]
    );
    assert_eq!(ids(&hot).last(), Some(&posts[0]));

    app.rebuild(&admin.token, "feed").await;
    let rebuilt = app.get("/posts/hot").await.expect(200);
    assert_eq!(ids(&rebuilt), ids(&hot), "the same order after a rebuild");
    assert_eq!(rebuilt["items"], hot["items"]);

    // A deleted post leaves at once.
    let deleted = app
        .delete(&format!("/posts/{}", posts[1]), &admin.token)
        .await
        .expect(200);
    let after = app
        .get(&format!("/posts/hot?after={}", position(&deleted)))
        .await
        .expect(200);
    assert!(!ids(&after).contains(&posts[1]));
    assert_eq!(ids(&after)[0], posts[3]);

    for bad in ["limit=0", "limit=51", "limit=x"] {
        let reply = app.get(&format!("/posts/hot?{bad}")).await;
        assert_eq!(reply.status.as_u16(), 400, "{bad}: {}", reply.text);
        crate::helpers::assert_problem_shape(&reply, &reply.json());
    }
    app.assert_no_server_errors();
}
