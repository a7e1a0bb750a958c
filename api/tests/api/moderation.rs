//! Moderation (issue 19): reports and community weight, moderators' acts on content ids, the
//! sanction ladder and appeals, the public log; and that none of it tells anyone who wrote an
//! anonymous item or who reported it.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, TestUser, position, spawn_app, str_field};

async fn report(app: &TestApp, token: &str, path: &str, reason: &str) -> Reply {
    app.post_json(path, Some(token), &json!({"reason": reason}))
        .await
}

async fn act(app: &TestApp, token: &str, path: &str, act: &str, reason: &str) -> Reply {
    app.post_json(path, Some(token), &json!({"act": act, "reason": reason}))
        .await
}

async fn users(app: &TestApp, prefix: &str, n: usize) -> Vec<TestUser> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(app.new_user(&format!("{prefix}{i}")).await);
    }
    out
}

async fn anonymous_post(app: &TestApp, author: &TestUser, body: &str) -> String {
    let post = app
        .create_post(&author.token, &json!({"body": body, "anonymous": true}))
        .await
        .expect(201);
    str_field(&post, "post_id").to_owned()
}

/// The caller's sanctions once every event so far is applied.
async fn sanctions(app: &TestApp, user: &TestUser) -> Value {
    let head = app.head().await;
    app.get_auth(&format!("/me/sanctions?after={head}"), &user.token)
        .await
        .expect(200)
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

fn length(sanction: &Value) -> Duration {
    time(&sanction["ends_at"]) - time(&sanction["starts_at"])
}

/// The acts of the public log on `post` (its comments included), newest first.
async fn acts_on(app: &TestApp, post: &str) -> Vec<String> {
    let head = app.head().await;
    let log = app
        .get(&format!("/moderation/log?limit=100&after={head}"))
        .await
        .expect(200);
    log["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["post_id"] == post)
        .map(|e| e["act"].as_str().expect("act").to_owned())
        .collect()
}

/// The first item of the moderation queue, as `moderator` sees it once everything is applied.
async fn queued(app: &TestApp, moderator: &TestUser) -> Value {
    let head = app.head().await;
    app.get_auth(&format!("/moderation/queue?after={head}"), &moderator.token)
        .await
        .expect(200)["items"][0]
        .clone()
}

/// The moderation notices in the user's inbox, newest first, as `act reason`.
async fn notices(app: &TestApp, user: &TestUser) -> Vec<String> {
    let head = app.head().await;
    let inbox = app
        .get_auth(&format!("/me/notifications?after={head}"), &user.token)
        .await
        .expect(200);
    inbox["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|n| n["reasons"] == json!(["moderation"]))
        .map(|n| {
            format!(
                "{} {}",
                n["notice"]["act"].as_str().unwrap_or("?"),
                n["notice"]["reason"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Asserts that a write of `user` is refused as sanctioned and a read is answered.
async fn can_read_not_write(app: &TestApp, user: &TestUser, other_post: &str) {
    let refused = app
        .create_post(&user.token, &json!({"body": "let me", "anonymous": false}))
        .await;
    assert_eq!(
        refused.expect_problem(403),
        "urn:treehole:problem:sanctioned"
    );
    assert!(
        refused.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("until"))
    );
    app.comment(
        &user.token,
        other_post,
        &json!({"body": "hi", "anonymous": true}),
    )
    .await
    .expect_problem(403);
    let react = app
        .client
        .put(app.url(&format!("/posts/{other_post}/reaction")))
        .bearer_auth(&user.token)
        .json(&json!({"value": 1}));
    app.send(react).await.expect_problem(403);
    report(
        app,
        &user.token,
        &format!("/posts/{other_post}/reports"),
        "spam",
    )
    .await
    .expect_problem(403);
    app.get("/posts").await.expect(200);
    app.get(&format!("/posts/{other_post}")).await.expect(200);
    app.get_auth("/me", &user.token).await.expect(200);
}

#[tokio::test]
async fn ten_reports_remove_an_item_and_sanction_its_author_for_a_day() {
    let app = spawn_app().await;
    let author = app.new_user("weighed").await;
    let bystander = app.new_user("bystander").await;
    let id = anonymous_post(&app, &author, "a take that will not last").await;
    let other = anonymous_post(&app, &bystander, "an innocent post").await;
    let reporters = users(&app, "weigher", 10).await;
    let path = format!("/posts/{id}/reports");
    let reasons = [
        "spam",
        "abuse",
        "nsfw",
        "flame_war",
        "privacy",
        "illegal",
        "misinformation",
        "other",
    ];
    for (r, reason) in reporters[..8].iter().zip(reasons) {
        assert!(position(&report(&app, &r.token, &path, reason).await.expect(201)) > 0);
    }
    // A repeat counts once: nothing is recorded.
    let head = app.head().await;
    let again = report(&app, &reporters[0].token, &path, "abuse")
        .await
        .expect(200);
    assert_eq!(again["position"], 0);
    assert_eq!(app.head().await, head);
    report(&app, &reporters[8].token, &path, "spam")
        .await
        .expect(201);
    // Nine reports: still there (the second spam report folded it).
    let head = app.head().await;
    let shown = app
        .get(&format!("/posts/{id}?after={head}"))
        .await
        .expect(200);
    assert_eq!(shown["folded"], "spam");
    assert!(
        sanctions(&app, &author).await["items"]
            .as_array()
            .expect("items")
            .is_empty()
    );

    // The tenth removes it and sanctions its author, for a day.
    report(&app, &reporters[9].token, &path, "abuse")
        .await
        .expect(201);
    let head = app.head().await;
    app.get(&format!("/posts/{id}?after={head}"))
        .await
        .expect_problem(404);
    let feed = app.get(&format!("/posts?after={head}")).await.expect(200);
    assert!(
        feed["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|p| p["post_id"] != id.as_str())
    );
    report(&app, &bystander.token, &path, "spam")
        .await
        .expect_problem(410);
    let mine = sanctions(&app, &author).await;
    let items = mine["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{mine}");
    assert_eq!(items[0]["step"], 1);
    assert_eq!(items[0]["post_id"], id.as_str());
    assert_eq!(length(&items[0]), Duration::days(1));
    assert!(mine["sanctioned_until"].is_string());
    assert_eq!(acts_on(&app, &id).await, ["sanction", "remove", "fold"]);
    // The anonymous author is told, in their inbox, and so is nobody else.
    assert_eq!(
        notices(&app, &author).await,
        ["sanctioned abuse", "removed abuse", "folded spam"]
    );
    assert!(notices(&app, &reporters[9]).await.is_empty());

    can_read_not_write(&app, &author, &other).await;
    // A day later (the clock is the application's, moved on) they write again.
    app.advance_clock(Duration::hours(25));
    app.create_post(
        &author.token,
        &json!({"body": "I have learned", "anonymous": false}),
    )
    .await
    .expect(201);
    assert!(sanctions(&app, &author).await["sanctioned_until"].is_null());
    app.assert_no_server_errors();
}

#[tokio::test]
async fn two_reports_with_one_reason_fold_an_item_out_of_the_hot_list_and_search() {
    let app = spawn_app().await;
    let (author, moderator) = (
        app.new_user("folded").await,
        app.new_moderator("foldmod").await,
    );
    let reporters = users(&app, "folder", 2).await;
    let folded = app
        .create_post(
            &author.token,
            &json!({"body": "kumquat festival tonight", "anonymous": false}),
        )
        .await
        .expect(201);
    let folded = str_field(&folded, "post_id").to_owned();
    let plain = anonymous_post(&app, &author, "kumquat recipes").await;
    let comment = app
        .comment(
            &author.token,
            &plain,
            &json!({"body": "kumquat jam", "anonymous": true}),
        )
        .await
        .expect(201);
    let (comment, at) = (
        str_field(&comment, "comment_id").to_owned(),
        position(&comment),
    );
    for r in &reporters {
        report(&app, &r.token, &format!("/posts/{folded}/reports"), "nsfw")
            .await
            .expect(201);
        report(
            &app,
            &r.token,
            &format!("/comments/{comment}/reports?after={at}"),
            "spam",
        )
        .await
        .expect(201);
    }
    let head = app.head().await;
    let feed = app.get(&format!("/posts?after={head}")).await.expect(200);
    let folded_of = |id: &str| {
        feed["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|p| p["post_id"] == id)
            .map(|p| p["folded"].clone())
    };
    assert_eq!(folded_of(&folded), Some(json!("nsfw")));
    assert_eq!(folded_of(&plain), Some(Value::Null));
    // Still readable on request.
    let shown = app.get(&format!("/posts/{folded}")).await.expect(200);
    assert_eq!(shown["body"], "kumquat festival tonight");
    let comments = app
        .get(&format!("/posts/{plain}/comments?after={head}"))
        .await
        .expect(200);
    assert_eq!(comments["items"][0]["folded"], "spam");

    let hot_ids = |hot: &Value| -> Vec<String> {
        hot["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| p["post_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let hot = app
        .get(&format!("/posts/hot?after={head}"))
        .await
        .expect(200);
    assert_eq!(hot_ids(&hot), [plain.as_str()]);
    let hits = |found: &Value| -> Vec<String> {
        found["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .map(|h| h["post_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let found = app
        .get(&format!("/search?q=kumquat&after={head}"))
        .await
        .expect(200);
    assert_eq!(hits(&found), [plain.as_str()]);
    // The folded comment's words are not found either.
    let found = app
        .get(&format!("/search?q=jam&after={head}"))
        .await
        .expect(200);
    assert!(hits(&found).is_empty(), "{found}");

    // Unfolded by a moderator, it is back.
    let done = act(
        &app,
        &moderator.token,
        &format!("/moderation/posts/{folded}/acts"),
        "unfold",
        "other",
    )
    .await
    .expect(200);
    let at = position(&done);
    let hot = app.get(&format!("/posts/hot?after={at}")).await.expect(200);
    assert!(hot_ids(&hot).contains(&folded));
    // The named author was told of both, and of the anonymous comment's folding.
    assert_eq!(
        notices(&app, &author).await,
        ["unfolded other", "folded spam", "folded nsfw"]
    );
    let found = app
        .get(&format!("/search?q=festival&after={at}"))
        .await
        .expect(200);
    assert_eq!(hits(&found), [folded.as_str()]);
    app.assert_no_server_errors();
}

#[tokio::test]
async fn removals_climb_the_ladder_and_an_overturned_appeal_leaves_it() {
    let app = spawn_app().await;
    let (author, moderator, admin) = (
        app.new_user("laddered").await,
        app.new_moderator("laddermod").await,
        app.new_admin("ladderadmin").await,
    );
    let elsewhere = anonymous_post(&app, &admin, "elsewhere").await;
    let posts = [
        anonymous_post(&app, &author, "first offence").await,
        anonymous_post(&app, &author, "second offence").await,
        anonymous_post(&app, &author, "third offence").await,
    ];
    let remove = |id: &str| {
        let path = format!("/moderation/posts/{id}/acts");
        let (app, token) = (&app, moderator.token.clone());
        async move { act(app, &token, &path, "remove", "abuse").await.expect(200) }
    };
    let done = remove(&posts[0]).await;
    assert_eq!(done, json!({"act": "remove", "position": position(&done)}));
    remove(&posts[1]).await;
    let mine = sanctions(&app, &author).await;
    let items = mine["items"].as_array().expect("items").clone();
    // Newest first: the second is 3 days and starts when the first ends.
    assert_eq!(
        (items[1]["step"].clone(), length(&items[1])),
        (json!(1), Duration::days(1))
    );
    assert_eq!(
        (items[0]["step"].clone(), length(&items[0])),
        (json!(2), Duration::days(3))
    );
    assert_eq!(items[0]["starts_at"], items[1]["ends_at"]);
    can_read_not_write(&app, &author, &elsewhere).await;

    // The second is appealed, once, and overturned.
    let second = str_field(&items[0], "sanction_id").to_owned();
    let appeal = format!("/me/sanctions/{second}/appeal");
    app.post_json(
        &appeal,
        Some(&author.token),
        &json!({"text": "it was satire"}),
    )
    .await
    .expect(201);
    app.post_json(&appeal, Some(&author.token), &json!({}))
        .await
        .expect_problem(409);
    let head = app.head().await;
    let appeals = app
        .get_auth(
            &format!("/moderation/appeals?after={head}"),
            &moderator.token,
        )
        .await
        .expect(200);
    assert_eq!(appeals["items"][0]["sanction_id"], second.as_str());
    assert_eq!(appeals["items"][0]["appeal"], "it was satire");
    assert_eq!(appeals["items"][0]["decision"], "pending");
    let decision = format!("/moderation/sanctions/{second}/decision");
    app.post_json(&decision, Some(&moderator.token), &json!({"uphold": false}))
        .await
        .expect(200);
    app.post_json(&decision, Some(&admin.token), &json!({"uphold": true}))
        .await
        .expect_problem(409);
    let mine = sanctions(&app, &author).await;
    assert_eq!(mine["items"][0]["decision"], "overturned");

    // The next removal is step 2 again, not 3.
    remove(&posts[2]).await;
    let mine = sanctions(&app, &author).await;
    let third = &mine["items"][0];
    assert_eq!(
        (third["step"].clone(), length(third)),
        (json!(2), Duration::days(3))
    );
    let log = acts_on(&app, &posts[1]).await;
    assert_eq!(log, ["overturn", "sanction", "remove"]);

    // The third starts when the first ends: a day and an hour on, still sanctioned; four days
    // and an hour on, free.
    app.advance_clock(Duration::hours(25));
    can_read_not_write(&app, &author, &elsewhere).await;
    app.advance_clock(Duration::days(3));
    app.create_post(&author.token, &json!({"body": "free", "anonymous": true}))
        .await
        .expect(201);

    // The log and the sanctions are projections: rebuilt, they are the same.
    let before = (
        acts_on(&app, &posts[1]).await,
        sanctions(&app, &author).await["items"].clone(),
    );
    app.rebuild(&admin.token, "moderation").await;
    app.rebuild(&admin.token, "users").await;
    let after = (
        acts_on(&app, &posts[1]).await,
        sanctions(&app, &author).await["items"].clone(),
    );
    assert_eq!(before, after);
    app.assert_no_server_errors();
}

#[tokio::test]
async fn nobody_learns_from_moderation_who_wrote_an_item_or_who_reported_it() {
    let app = spawn_app().await;
    let (author, moderator) = (
        app.new_user("hiddenauthor").await,
        app.new_moderator("blindmod").await,
    );
    let reporters = users(&app, "hiddenreporter", 3).await;
    let post = anonymous_post(&app, &author, "who wrote this?").await;
    let comment = app
        .comment(
            &author.token,
            &post,
            &json!({"body": "me again", "anonymous": true}),
        )
        .await
        .expect(201);
    let (comment, at) = (
        str_field(&comment, "comment_id").to_owned(),
        position(&comment),
    );
    let mut seen: Vec<Reply> = Vec::new();
    for r in &reporters {
        seen.push(
            app.post_json(
                &format!("/posts/{post}/reports"),
                Some(&r.token),
                &json!({"reason": "privacy", "text": "this names a classmate"}),
            )
            .await,
        );
        seen.push(
            report(
                &app,
                &r.token,
                &format!("/comments/{comment}/reports?after={at}"),
                "abuse",
            )
            .await,
        );
    }
    let post_acts = format!("/moderation/posts/{post}/acts");
    let comment_acts = format!("/moderation/comments/{comment}/acts?after={at}");
    seen.push(act(&app, &moderator.token, &comment_acts, "remove", "abuse").await);
    seen.push(act(&app, &moderator.token, &post_acts, "sanction", "privacy").await);
    seen.push(act(&app, &moderator.token, &post_acts, "sanction", "privacy").await);
    seen.push(act(&app, &moderator.token, &comment_acts, "restore", "other").await);
    let head = app.head().await;
    for path in [
        "/moderation/queue",
        "/moderation/appeals",
        "/moderation/log",
    ] {
        seen.push(
            app.get_auth(&format!("{path}?after={head}"), &moderator.token)
                .await,
        );
    }
    seen.push(app.get(&format!("/moderation/log?after={head}")).await);
    seen.push(app.get(&format!("/posts/{post}?after={head}")).await);
    seen.push(
        app.get(&format!("/posts/{post}/comments?after={head}"))
            .await,
    );
    for reply in &seen {
        assert!(
            reply.status.is_success() || reply.status.as_u16() == 409,
            "{}",
            reply.everything()
        );
    }
    // The queue shows counts, reasons and texts.
    let queue = seen
        .iter()
        .find(|r| r.path.contains("/moderation/queue"))
        .expect("the queue")
        .json();
    let queued = &queue["items"][0];
    assert_eq!(queued["post_id"], post.as_str());
    assert_eq!(queued["reports"], 3);
    assert_eq!(
        queued["reasons"],
        json!([{"reason": "privacy", "reports": 3}])
    );
    // Every byte, every spelling: no id, username or e-mail of the author or a reporter.
    let everything: String = seen.iter().map(Reply::everything).collect();
    let lower = everything.to_lowercase();
    for person in std::iter::once(&author).chain(&reporters) {
        let simple = person.user_id.replace('-', "");
        for secret in [&person.user_id, &simple, &person.username, &person.email] {
            assert!(
                !lower.contains(&secret.to_lowercase()),
                "{secret} shows in what moderators, reporters or the public saw"
            );
        }
    }
    // And the sanction reached its subject.
    assert_eq!(
        sanctions(&app, &author).await["items"][0]["reason"],
        "privacy"
    );
    app.assert_no_server_errors();
}

#[tokio::test]
async fn a_user_who_is_not_a_moderator_gets_403_on_every_moderator_route() {
    let app = spawn_app().await;
    let (author, user, moderator) = (
        app.new_user("modauthor").await,
        app.new_user("plainuser").await,
        app.new_moderator("realmod").await,
    );
    let post = anonymous_post(&app, &author, "leave me be").await;
    let comment = app
        .comment(
            &author.token,
            &post,
            &json!({"body": "c", "anonymous": true}),
        )
        .await
        .expect(201);
    let comment = str_field(&comment, "comment_id").to_owned();
    let some_id = "0190a6d1-0000-7000-8000-00000000abcd";
    let head = app.head().await;
    let body = json!({"act": "fold", "reason": "spam"});
    for reply in [
        app.post_json(
            &format!("/moderation/posts/{post}/acts"),
            Some(&user.token),
            &body,
        )
        .await,
        app.post_json(
            &format!("/moderation/comments/{comment}/acts"),
            Some(&user.token),
            &body,
        )
        .await,
        app.get_auth("/moderation/queue", &user.token).await,
        app.get_auth("/moderation/appeals", &user.token).await,
        app.post_json(
            &format!("/moderation/sanctions/{some_id}/decision"),
            Some(&user.token),
            &json!({"uphold": true}),
        )
        .await,
        app.send(
            app.client
                .put(app.url(&format!("/admin/users/{}/moderator", user.user_id)))
                .bearer_auth(&user.token)
                .json(&json!({"moderator": true})),
        )
        .await,
    ] {
        assert_eq!(reply.status.as_u16(), 403, "{}", reply.everything());
    }
    // A moderator is not an admin: granting moderators is for admins.
    let grant = app
        .client
        .put(app.url(&format!("/admin/users/{}/moderator", user.user_id)))
        .bearer_auth(&moderator.token)
        .json(&json!({"moderator": true}));
    app.send(grant).await.expect_problem(403);
    assert_eq!(app.head().await, head, "nothing was recorded");
}

#[tokio::test]
async fn a_hundred_users_reporting_at_once_remove_once_and_sanction_once() {
    let app = Arc::new(spawn_app().await);
    let author = app.new_user("crowdtarget").await;
    let id = anonymous_post(&app, &author, "everyone hates this").await;
    let reporters = users(&app, "crowdreporter", 100).await;
    let mut set = tokio::task::JoinSet::new();
    for r in reporters {
        let (app, path) = (app.clone(), format!("/posts/{id}/reports"));
        set.spawn(async move { report(&app, &r.token, &path, "spam").await.status.as_u16() });
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(status) = set.join_next().await {
        *statuses.entry(status.expect("a report")).or_default() += 1;
    }
    // Ten count; those decided after the removal find it removed.
    assert_eq!(statuses.get(&201), Some(&10), "{statuses:?}");
    assert_eq!(statuses.get(&410), Some(&90), "{statuses:?}");
    let acts = acts_on(&app, &id).await;
    assert_eq!(
        acts.iter().filter(|a| *a == "remove").count(),
        1,
        "{acts:?}"
    );
    assert_eq!(
        acts.iter().filter(|a| *a == "sanction").count(),
        1,
        "{acts:?}"
    );
    assert_eq!(
        sanctions(&app, &author).await["items"]
            .as_array()
            .expect("items")
            .len(),
        1
    );
    app.assert_no_server_errors();
}

#[tokio::test]
async fn a_removal_whose_sanction_was_not_imposed_is_swept_up() {
    let app = crate::helpers::spawn_app_with(|s| s.moderation.sweep_interval_ms = 50).await;
    let author = app.new_user("sweptauthor").await;
    let id = anonymous_post(&app, &author, "removed as the process died").await;
    // A removal recorded without its sanction: what a process stopping between the two leaves.
    let handler = commands::CommandHandler::new(app.event_store());
    let post_id = domain::PostId::new(id.parse().expect("a uuid"));
    let removal = domain::post::PostCommand::Moderate {
        comment_id: None,
        act: domain::moderation::Act::Remove,
        reason: domain::moderation::Reason::Illegal,
        note: None,
        by: domain::moderation::Role::Admin,
        actor: domain::UserId::new(uuid::Uuid::now_v7()),
        token: domain::AuthorToken::new("tsomeone-else"),
        sanction: true,
    };
    handler
        .execute::<domain::post::Post>(
            &post_id.stream(),
            &removal,
            &domain::post::PostServices::default(),
            &commands::CommandContext::new(Utc::now()),
        )
        .await
        .expect("the removal");
    let mut found = Value::Null;
    for _ in 0..100 {
        found = sanctions(&app, &author).await;
        if !found["items"].as_array().expect("items").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found["items"][0]["reason"], "illegal", "{found}");
    assert_eq!(found["items"].as_array().expect("items").len(), 1);
    // Swept once: the next sweeps find nothing due.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        sanctions(&app, &author).await["items"]
            .as_array()
            .expect("items")
            .len(),
        1
    );
    assert_eq!(acts_on(&app, &id).await, ["sanction", "remove"]);
}

#[tokio::test]
async fn a_reporter_who_leaves_takes_their_text_along_and_a_rebuild_agrees() {
    let app = spawn_app().await;
    let (author, moderator, admin) = (
        app.new_user("leftreported").await,
        app.new_moderator("leftmod").await,
        app.new_admin("leftadmin").await,
    );
    let leaver = app.new_user("leavingreporter").await;
    let stayer = app.new_user("stayingreporter").await;
    let id = anonymous_post(&app, &author, "reported, then left behind").await;
    for (user, text) in [(&leaver, "my words, mine to take"), (&stayer, "I stay")] {
        app.post_json(
            &format!("/posts/{id}/reports"),
            Some(&user.token),
            &json!({"reason": "other", "text": text}),
        )
        .await
        .expect(201);
    }
    let before = queued(&app, &moderator).await;
    assert_eq!(before["texts"], json!(["my words, mine to take", "I stay"]));
    app.request_code(&leaver.email).await.expect(202);
    let code = app.code_for(&leaver.email);
    crate::privacy::unregister(&app, &leaver.token, crate::helpers::PASSWORD, &code)
        .await
        .expect(200);
    let after = queued(&app, &moderator).await;
    assert_eq!(after["texts"], json!(["I stay"]));
    assert_eq!(after["reports"], 2, "the report still counts");
    app.rebuild(&admin.token, "moderation").await;
    assert_eq!(queued(&app, &moderator).await, after);
}

#[tokio::test]
async fn sanctioning_an_author_who_left_answers_and_logs_as_for_anyone() {
    let app = spawn_app().await;
    let moderator = app.new_moderator("departedmod").await;
    let (stays, leaves) = (
        app.new_user("departedstays").await,
        app.new_user("departedleaves").await,
    );
    let kept = anonymous_post(&app, &stays, "an author who stays").await;
    let left = anonymous_post(&app, &leaves, "an author who leaves").await;
    app.request_code(&leaves.email).await.expect(202);
    let code = app.code_for(&leaves.email);
    crate::privacy::unregister(&app, &leaves.token, crate::helpers::PASSWORD, &code)
        .await
        .expect(200);

    let mut answers = Vec::new();
    for post in [&kept, &left] {
        let reply = act(
            &app,
            &moderator.token,
            &format!("/moderation/posts/{post}/acts"),
            "sanction",
            "abuse",
        )
        .await;
        let body = reply.expect(200);
        assert!(position(&body) > 0, "{body}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
        answers.push(body["act"].clone());
        assert_eq!(acts_on(&app, post).await, ["sanction"]);
    }
    assert_eq!(answers[0], answers[1]);
    // The one who stayed is sanctioned; the ledger's other entry binds nobody.
    let mine = sanctions(&app, &stays).await;
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1), "{mine}");
    // A second sanction for either item is refused alike.
    for post in [&kept, &left] {
        act(
            &app,
            &moderator.token,
            &format!("/moderation/posts/{post}/acts"),
            "sanction",
            "abuse",
        )
        .await
        .expect_problem(409);
    }
    // Every projection took the sanction that binds nobody in its stride.
    let head = app.head().await;
    app.get_auth(&format!("/me/sanctions?after={head}"), &stays.token)
        .await
        .expect(200);
    app.get(&format!("/moderation/log?after={head}"))
        .await
        .expect(200);
    app.get_auth(&format!("/me/notifications?after={head}"), &stays.token)
        .await
        .expect(200);
    app.get("/readyz").await.expect(200);
    app.assert_no_server_errors();
}
