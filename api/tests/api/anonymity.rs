//! The promise of a tree hole (ARCHITECTURE.md §6): no public answer, not even an error,
//! carries the real author of anonymous content.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::export::{Target, envelopes, stdout, succeeded};
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

/// Who wrote an item, and how it shows.
#[derive(Debug, Clone)]
struct Item {
    id: String,
    post: String,
    author: &'static str,
    anonymous: bool,
}

impl Item {
    /// Whether the design lets anyone see that `self` and `other` share an author: both named,
    /// or both anonymous under one post (the shared pseudonym, or the host name).
    fn may_link(&self, other: &Item) -> bool {
        self.author == other.author
            && ((!self.anonymous && !other.anonymous)
                || (self.anonymous && other.anonymous && self.post == other.post))
    }
}

/// Groups items that share any key: what an observer can join.
fn linked_groups(keys: &HashMap<String, Vec<String>>) -> HashMap<String, usize> {
    let mut group: HashMap<String, usize> = HashMap::new();
    let mut by_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for (item, ks) in keys {
        for k in ks {
            by_key.entry(k).or_default().push(item);
        }
    }
    let mut next = 0;
    for start in keys.keys() {
        if group.contains_key(start) {
            continue;
        }
        let mut stack = vec![start.as_str()];
        while let Some(item) = stack.pop() {
            if group.insert(item.to_owned(), next).is_some() {
                continue;
            }
            for k in &keys[item] {
                stack.extend(
                    by_key[k.as_str()]
                        .iter()
                        .filter(|i| !group.contains_key(**i)),
                );
            }
        }
        next += 1;
    }
    group
}

/// The keys an observer can join items by, from what an item shows: a named item its name,
/// an anonymous one its name under its post, and the host marker ties a comment to its post.
fn shown_keys(post: &str, author_name: &str, anonymous: bool, host: bool) -> Vec<String> {
    let mut keys = vec![if anonymous {
        format!("anonymous:{post}:{author_name}")
    } else {
        format!("named:{author_name}")
    }];
    if host {
        keys.push(format!("host:{post}"));
    }
    keys
}

#[track_caller]
fn assert_links_only_what_the_design_allows(
    items: &[Item],
    keys: &HashMap<String, Vec<String>>,
    surface: &str,
) {
    let group = linked_groups(keys);
    for a in items.iter().filter(|i| keys.contains_key(&i.id)) {
        for b in items.iter().filter(|i| keys.contains_key(&i.id)) {
            if a.id == b.id {
                continue;
            }
            let linked = group[&a.id] == group[&b.id];
            assert!(
                !linked || a.may_link(b),
                "{surface} ties {a:?} to {b:?}: {:?} / {:?}",
                keys[&a.id],
                keys[&b.id]
            );
            // The design's own links show, so this check sees what it judges.
            assert!(
                linked || !a.may_link(b),
                "{surface} does not join {a:?} and {b:?}"
            );
        }
    }
}

/// Every combination of an anonymous or named post with anonymous or named comments, by the
/// post's author and by someone else (ISSUE 14 A and 2): the public views and the default
/// export tie two items to one author only where both are named, or both are anonymous under
/// one post.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_surface_links_items_unless_both_are_named_or_anonymous_under_one_post() {
    let app = spawn_app().await;
    let host = app.new_user("host_hannah").await;
    let guest = app.new_user("guest_gideon").await;
    let users = [("host", &host), ("guest", &guest)];
    let mut items: Vec<Item> = Vec::new();
    let mut last = 0;
    let mut deleted = Vec::new();

    for post_anonymous in [true, false] {
        let post = app
            .create_post(
                &host.token,
                &json!({"body": format!("a post, anonymous: {post_anonymous}"), "anonymous": post_anonymous}),
            )
            .await
            .expect(201);
        let post_id = str_field(&post, "post_id").to_owned();
        items.push(Item {
            id: post_id.clone(),
            post: post_id.clone(),
            author: "host",
            anonymous: post_anonymous,
        });
        for round in 0..2 {
            for (author, user) in users {
                for anonymous in [true, false] {
                    let added = app
                        .comment(
                            &user.token,
                            &post_id,
                            &json!({"body": format!("{author} {anonymous} {round}"), "anonymous": anonymous}),
                        )
                        .await
                        .expect(201);
                    last = last.max(position(&added));
                    items.push(Item {
                        id: str_field(&added, "comment_id").to_owned(),
                        post: post_id.clone(),
                        author,
                        anonymous,
                    });
                }
            }
        }
        // The host deletes one named and one anonymous comment of their own: the export keeps
        // the deletes, which must not join them either.
        for anonymous in [true, false] {
            let own = items
                .iter()
                .rev()
                .find(|i| {
                    i.post == post_id
                        && i.author == "host"
                        && i.anonymous == anonymous
                        && i.id != post_id
                })
                .expect("an own comment")
                .id
                .clone();
            let gone = app
                .delete(&format!("/posts/{post_id}/comments/{own}"), &host.token)
                .await
                .expect(200);
            last = last.max(position(&gone));
            deleted.push(own);
        }
    }

    // What anyone can read.
    let mut public: HashMap<String, Vec<String>> = HashMap::new();
    for post in items.iter().filter(|i| i.id == i.post) {
        let view = app
            .get(&format!("/posts/{}?after={last}", post.id))
            .await
            .expect(200);
        let name = str_field(&view, "author_name");
        let anonymous = view["anonymous"] == true;
        if anonymous {
            assert!(users.iter().all(|(_, u)| u.username != name), "{view}");
        }
        public.insert(post.id.clone(), shown_keys(&post.id, name, anonymous, true));
        for comment in app
            .all_pages(&format!("/posts/{}/comments", post.id), last)
            .await
        {
            let name = str_field(&comment, "author_name");
            let anonymous = comment["anonymous"] == true;
            if anonymous {
                assert!(users.iter().all(|(_, u)| u.username != name), "{comment}");
            }
            public.insert(
                str_field(&comment, "comment_id").to_owned(),
                shown_keys(&post.id, name, anonymous, comment["is_host"] == true),
            );
        }
    }
    assert_eq!(public.len(), items.len() - deleted.len());
    assert_links_only_what_the_design_allows(&items, &public, "the public API");

    // The analysts' default export: ids, actors and request ids join too, and so does an
    // author's own delete of an item.
    let out = Target::of(&app).treehole(&["events", "export"]).await;
    let mut exported: HashMap<String, Vec<String>> = HashMap::new();
    for e in envelopes(&stdout(succeeded(&out))) {
        let data = &e.data;
        let mut keys: Vec<String> = [
            Some(format!(
                "correlation:{}",
                e.metadata.correlation_id.clone().unwrap_or_default()
            )),
            Some(format!(
                "causation:{}",
                e.metadata.causation_id.clone().unwrap_or_default()
            )),
            e.metadata.actor.clone().map(|a| format!("actor:{a}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let item = match e.event_type.as_str() {
            "PostPublished" | "CommentAdded" => {
                let post = data["post_id"].as_str().unwrap_or_default();
                let host = e.event_type == "PostPublished" || data["is_host"] == true;
                let author = &data["author"];
                let (name, id) = if let Some(named) = author.get("named") {
                    (
                        &named["username"]["$personal"]["value"],
                        named["user_id"].clone(),
                    )
                } else {
                    let anonymous = &author["anonymous"];
                    keys.push(format!("token:{}", anonymous["token"]));
                    (
                        &anonymous["pseudonym"],
                        anonymous["user_id"]["$personal"]["value"].clone(),
                    )
                };
                keys.extend(shown_keys(
                    post,
                    name.as_str().unwrap_or_default(),
                    data["anonymous"] == true,
                    host,
                ));
                assert!(!id.is_null(), "the export stands in an author id: {e:?}");
                keys.push(format!("id:{id}"));
                data.get("comment_id").unwrap_or(&data["post_id"])
            }
            "CommentDeleted" | "PostDeleted" if data["by_admin"] == false => {
                // An author's own delete names nobody.
                assert!(data["deleted_by"].is_null(), "{e:?}");
                data.get("comment_id").unwrap_or(&data["post_id"])
            }
            _ => continue,
        };
        let item = item.as_str().expect("an id").to_owned();
        if items.iter().any(|i| i.id == item) {
            exported.entry(item).or_default().extend(keys);
        }
    }
    assert_eq!(exported.len(), items.len());
    assert_links_only_what_the_design_allows(&items, &exported, "the analysts' export");
    app.assert_no_server_errors();
}
