//! Follows, the notification inbox and its live stream (issue 18): the notification matrix,
//! resuming a stream without a gap or a repeat, and a stream that ends with its session.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, position, spawn_app, str_field};

/// One Server-Sent Event as a client reads it.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    event: String,
    id: Option<String>,
    data: String,
}

/// A notification stream being read.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, token: &str, last_event_id: Option<u64>) -> Stream {
        let mut request = app
            .client
            .get(app.url("/me/notifications/stream"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(3600));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("the stream opens");
        assert_eq!(response.status(), 200, "the stream answers 200");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` if none comes within `wait` or the stream
    /// ended. `Err(())` when the stream ended.
    async fn next(&mut self, wait: Duration) -> Result<Option<Sse>, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse {
                    event: "message".into(),
                    id: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        sse.event = v.trim().to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        sse.id = Some(v.trim().to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        sse.data.push_str(v.trim_start());
                        any = true;
                    }
                }
                if any {
                    return Ok(Some(sse));
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return Ok(None),
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) => return Err(()),
            }
        }
    }

    /// Every event that arrives until none has for `quiet`.
    async fn drain(&mut self, quiet: Duration) -> Vec<Sse> {
        let mut out = Vec::new();
        while let Ok(Some(e)) = self.next(quiet).await {
            out.push(e);
        }
        out
    }
}

fn seq(e: &Sse) -> u64 {
    e.id.as_deref()
        .expect("an id")
        .parse()
        .expect("a sequence number")
}

async fn named_post(app: &TestApp, author: &TestUser) -> String {
    let post = app
        .create_post(
            &author.token,
            &json!({"body": "who answers?", "anonymous": false}),
        )
        .await
        .expect(201);
    str_field(&post, "post_id").to_owned()
}

async fn notifications(app: &TestApp, user: &TestUser, after: u64) -> Value {
    app.get_auth(&format!("/me/notifications?after={after}"), &user.token)
        .await
        .expect(200)
}

/// A comment by `user` on `post`, accepted.
async fn say(app: &TestApp, user: &TestUser, post: &str, body: &str, anonymous: bool) -> Value {
    app.comment(
        &user.token,
        post,
        &json!({"body": body, "anonymous": anonymous}),
    )
    .await
    .expect(201)
}

/// `user` follows `post` (or stops), accepted.
async fn follow(app: &TestApp, user: &TestUser, post: &str, following: bool) -> Value {
    app.send(
        app.client
            .put(app.url(&format!("/posts/{post}/follow")))
            .bearer_auth(&user.token)
            .json(&json!({"following": following})),
    )
    .await
    .expect(200)
}

/// Whether `user` has no notification, once the inbox has reached `after`.
async fn nothing_for(app: &TestApp, user: &TestUser, after: u64) -> bool {
    notifications(app, user, after).await["items"]
        .as_array()
        .expect("items")
        .is_empty()
}

fn reasons(n: &Value) -> Vec<String> {
    n["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r.as_str().expect("a reason").to_owned())
        .collect()
}

#[tokio::test]
async fn a_reply_notifies_its_addressee_and_the_followers_once_and_never_the_commenter() {
    let app = spawn_app().await;
    let (a, b, c) = (
        app.new_user("nmatrixa").await,
        app.new_user("nmatrixb").await,
        app.new_user("nmatrixc").await,
    );
    let post = named_post(&app, &a).await;
    // B comments on A's post: A gets a "reply" (and follows the post as its author).
    let b_comment = say(&app, &b, &post, "I do", false).await;
    let seen = notifications(&app, &a, position(&b_comment)).await;
    assert_eq!(seen["unread"], 1);
    let items = seen["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(reasons(&items[0]), ["reply", "followed"]);
    assert_eq!(items[0]["name"], "nmatrixb");
    assert_eq!(items[0]["comment_id"], b_comment["comment_id"]);
    assert!(nothing_for(&app, &b, 0).await, "nothing to the commenter");

    // C replies to B's comment anonymously: B gets a "reply", A a "followed", C nothing.
    let c_reply = app
        .comment(
            &c.token,
            &post,
            &json!({"body": "me too", "anonymous": true,
                    "reply_to": b_comment["comment_id"]}),
        )
        .await
        .expect(201);
    let after = position(&c_reply);
    let pseudonym = str_field(&c_reply, "author_name").to_owned();
    let to_b = notifications(&app, &b, after).await;
    let to_b = to_b["items"].as_array().expect("items");
    assert_eq!(to_b.len(), 1);
    assert_eq!(reasons(&to_b[0]), ["reply", "followed"]);
    assert_eq!(to_b[0]["name"], pseudonym.as_str());
    let to_a = notifications(&app, &a, after).await;
    let to_a = to_a["items"].as_array().expect("items");
    assert_eq!(to_a.len(), 2);
    assert_eq!(reasons(&to_a[0]), ["followed"]);
    assert_eq!(to_a[0]["name"], pseudonym.as_str());
    assert_eq!(to_a[0]["seq"].as_u64(), Some(after));
    assert!(nothing_for(&app, &c, after).await);
    // Nothing but C's own account answers (registration, login) carries C's id or username.
    for reply in app.replies() {
        let text = reply.everything();
        let first = text.lines().next().unwrap_or_default();
        if ["/users", "/sessions", "/auth/codes"]
            .iter()
            .any(|own| first.ends_with(own))
        {
            continue;
        }
        assert!(
            !text.contains(&c.user_id) && !text.contains(&c.username),
            "an answer carries C: {text}"
        );
    }

    // Reading up to B's comment leaves one unread; the mark never moves back.
    let read = app
        .post_json(
            "/me/notifications/read",
            Some(&a.token),
            &json!({"up_to": position(&b_comment)}),
        )
        .await
        .expect(200);
    assert_eq!(read["read_up_to"].as_u64(), Some(position(&b_comment)));
    let state = notifications(&app, &a, position(&read)).await;
    assert_eq!(state["unread"], 1);
    assert_eq!(state["items"][0]["read"], false);
    assert_eq!(state["items"][1]["read"], true);
    let back = app
        .post_json(
            "/me/notifications/read",
            Some(&a.token),
            &json!({"up_to": 1}),
        )
        .await
        .expect(200);
    assert_eq!(back["position"], 0);
    assert_eq!(back["read_up_to"].as_u64(), Some(position(&b_comment)));

    // Deleting C's reply withdraws its notifications.
    let deleted = app
        .delete(
            &format!(
                "/posts/{post}/comments/{}",
                str_field(&c_reply, "comment_id")
            ),
            &c.token,
        )
        .await
        .expect(200);
    let to_b = notifications(&app, &b, position(&deleted)).await;
    assert!(to_b["items"].as_array().unwrap().is_empty());
    assert_eq!(to_b["unread"], 0);
    app.assert_no_server_errors();
}

#[tokio::test]
async fn following_is_automatic_and_can_be_turned_off_and_on() {
    let app = spawn_app().await;
    let (a, b, c) = (
        app.new_user("nfollowa").await,
        app.new_user("nfollowb").await,
        app.new_user("nfollowc").await,
    );
    let post = named_post(&app, &a).await;
    let first = say(&app, &b, &post, "first", true).await;
    let following = app
        .get_auth(
            &format!("/me/following?after={}", position(&first)),
            &b.token,
        )
        .await
        .expect(200);
    assert_eq!(following["items"][0]["post_id"], post.as_str());
    assert_eq!(following["items"][0]["explicit"], false);

    // B turns it off: C's comment tells A (the author) but not B.
    let off = follow(&app, &b, &post, false).await;
    assert_eq!(off["followers"], 0);
    assert!(position(&off) > 0);
    let head = app.head().await;
    let again = follow(&app, &b, &post, false).await;
    assert_eq!(
        again["position"], 0,
        "the same choice again records nothing"
    );
    assert_eq!(app.head().await, head);
    let c_comment = say(&app, &c, &post, "second", false).await;
    let after = position(&c_comment);
    assert!(nothing_for(&app, &b, after).await);
    assert_eq!(
        notifications(&app, &a, after).await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let none = app
        .get_auth(&format!("/me/following?after={after}"), &b.token)
        .await
        .expect(200);
    assert!(none["items"].as_array().unwrap().is_empty());

    // A stranger follows explicitly: counted, listed, told of the next comment.
    let stranger = app.new_user("nfollowd").await;
    let on = follow(&app, &stranger, &post, true).await;
    assert_eq!(on["followers"], 1);
    let shown = app
        .get(&format!("/posts/{post}?after={}", position(&on)))
        .await
        .expect(200);
    assert_eq!(shown["followers"], 1);
    let third = say(&app, &c, &post, "third", false).await;
    let told = notifications(&app, &stranger, position(&third)).await;
    assert_eq!(reasons(&told["items"][0]), ["followed"]);
    let listed = app
        .get_auth("/me/following", &stranger.token)
        .await
        .expect(200);
    assert_eq!(listed["items"][0]["explicit"], true);
    app.assert_no_server_errors();
}

#[tokio::test]
async fn a_resumed_stream_gets_exactly_what_it_missed_in_order_then_live_events() {
    let app = spawn_app().await;
    let (a, b) = (app.new_user("nssea").await, app.new_user("nsseb").await);
    let post = named_post(&app, &a).await;
    let mut stream = Stream::open(&app, &a.token, None).await;
    // Event n.
    let n = say(&app, &b, &post, "n", false).await;
    let first = stream
        .next(Duration::from_secs(10))
        .await
        .expect("open")
        .expect("event n arrives");
    assert_eq!(first.event, "notification");
    assert_eq!(seq(&first), position(&n));
    let data: Value = serde_json::from_str(&first.data).expect("JSON data");
    assert_eq!(data["comment_id"], n["comment_id"]);
    drop(stream);
    // n+1 and n+2 while disconnected.
    let n1 = say(&app, &b, &post, "n+1", true).await;
    let n2 = say(&app, &b, &post, "n+2", false).await;
    let mut resumed = Stream::open(&app, &a.token, Some(position(&n))).await;
    let missed = resumed.drain(Duration::from_millis(700)).await;
    assert_eq!(
        missed.iter().map(seq).collect::<Vec<_>>(),
        vec![position(&n1), position(&n2)],
        "exactly n+1 and n+2, in order: {missed:?}"
    );
    // Then live ones.
    let n3 = say(&app, &b, &post, "n+3", false).await;
    let live = resumed
        .next(Duration::from_secs(10))
        .await
        .expect("open")
        .expect("a live event");
    assert_eq!(seq(&live), position(&n3));
    // `?after=` works as Last-Event-ID does.
    let by_query = app
        .client
        .get(app.url(&format!("/me/notifications/stream?after={}", position(&n2))))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("the stream opens");
    let mut by_query = Stream {
        response: by_query,
        buffer: String::new(),
    };
    let got = by_query.drain(Duration::from_millis(700)).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), vec![position(&n3)]);
}

#[tokio::test]
async fn events_caused_while_a_stream_connects_arrive_exactly_once() {
    let app = std::sync::Arc::new(spawn_app().await);
    let (a, b) = (app.new_user("nracea").await, app.new_user("nraceb").await);
    let post = named_post(&app, &a).await;
    let first = say(&app, &b, &post, "0", false).await;
    // Comments keep coming while streams connect, resuming from the first.
    let writer = {
        let (app, token, post) = (app.clone(), b.token.clone(), post.clone());
        tokio::spawn(async move {
            for i in 1..=40 {
                app.comment(
                    &token,
                    &post,
                    &json!({"body": format!("{i}"), "anonymous": i % 2 == 0}),
                )
                .await
                .expect(201);
            }
        })
    };
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(Stream::open(&app, &a.token, Some(position(&first))).await);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    writer.await.expect("the writer");
    let head = app.head().await;
    let all = app
        .get_auth(
            &format!("/me/notifications?limit=100&after={head}"),
            &a.token,
        )
        .await
        .expect(200);
    let expected: Vec<u64> = {
        let mut v: Vec<u64> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["seq"].as_u64().unwrap())
            .filter(|s| *s > position(&first))
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(expected.len(), 40);
    for stream in &mut streams {
        let got: Vec<u64> = stream
            .drain(Duration::from_millis(1000))
            .await
            .iter()
            .map(seq)
            .collect();
        assert_eq!(got, expected, "every event once, in order");
    }
}

#[tokio::test]
async fn logging_out_closes_the_stream_within_a_second() {
    let app = spawn_app().await;
    let a = app.new_user("nlogout").await;
    let mut stream = Stream::open(&app, &a.token, None).await;
    assert_eq!(stream.next(Duration::from_millis(100)).await, Ok(None));
    app.delete("/sessions/current", &a.token).await.expect(200);
    let started = tokio::time::Instant::now();
    let ended = loop {
        match stream.next(Duration::from_secs(3)).await {
            Err(()) => break true,
            Ok(None) => break false,
            Ok(Some(_)) => {}
        }
    };
    assert!(ended, "the stream ends after logout");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "within a second: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_bad_resume_point_or_follow_is_a_problem_and_writes_nothing() {
    let app = spawn_app().await;
    let a = app.new_user("nbadinput").await;
    let post = named_post(&app, &a).await;
    let head = app.head().await;
    let stream = |id: &str| {
        app.client
            .get(app.url("/me/notifications/stream"))
            .bearer_auth(&a.token)
            .header("Last-Event-ID", id)
    };
    for bad in ["x", "-1", "1.5", "99999999999999999999999", ""] {
        app.send(stream(bad)).await.expect_problem(400);
    }
    app.send(
        app.client
            .get(app.url("/me/notifications/stream?after=3"))
            .bearer_auth(&a.token)
            .header("Last-Event-ID", "2"),
    )
    .await
    .expect_problem(400);
    app.send(
        app.client
            .get(app.url("/me/notifications/stream"))
            .header("Last-Event-ID", "2"),
    )
    .await
    .expect_problem(401);
    let follow = |path: String, body: Value| {
        app.client
            .put(app.url(&path))
            .bearer_auth(&a.token)
            .json(&body)
    };
    app.send(follow(
        format!("/posts/{post}/follow"),
        json!({"following": "yes"}),
    ))
    .await
    .expect_problem(422);
    app.send(follow(format!("/posts/{post}/follow"), json!({})))
        .await
        .expect_problem(422);
    app.send(follow(
        "/posts/0190a6d1-0000-7000-8000-000000000000/follow".into(),
        json!({"following": true}),
    ))
    .await
    .expect_problem(404);
    app.send(follow(
        "/posts/nope/follow".into(),
        json!({"following": true}),
    ))
    .await
    .expect_problem(404);
    for body in [
        json!({"up_to": -1}),
        json!({"up_to": "1"}),
        json!({"up_to": 1_000_000_000u64}),
        json!({}),
    ] {
        app.post_json("/me/notifications/read", Some(&a.token), &body)
            .await
            .expect_problem(422);
    }
    app.get_auth("/me/notifications?limit=0", &a.token)
        .await
        .expect_problem(400);
    app.get_auth("/me/following?cursor=bogus", &a.token)
        .await
        .expect_problem(400);
    assert_eq!(app.head().await, head, "no bad request wrote anything");
    app.assert_no_server_errors();
}

#[tokio::test]
async fn favourites_are_private_in_at_most_ten_folders_and_survive_a_rebuild() {
    let app = spawn_app().await;
    let (a, b) = (app.new_user("nfava").await, app.new_user("nfavb").await);
    let admin = app.new_admin("nfavadmin").await;
    let mut posts = Vec::new();
    for _ in 0..12 {
        posts.push(named_post(&app, &b).await);
    }
    let put = |post: &str, body: Value| {
        app.client
            .put(app.url(&format!("/me/favourites/{post}")))
            .bearer_auth(&a.token)
            .json(&body)
    };
    let kept = app.send(put(&posts[0], json!({}))).await.expect(200);
    assert!(position(&kept) > 0);
    let head = app.head().await;
    let again = app
        .send(put(&posts[0], json!({"folder": null})))
        .await
        .expect(200);
    assert_eq!(again["position"], 0, "the same again records nothing");
    assert_eq!(app.head().await, head);
    for (i, post) in posts.iter().enumerate().skip(1).take(10) {
        app.send(put(post, json!({"folder": format!("夹子 {i}")})))
            .await
            .expect(200);
    }
    app.send(put(&posts[11], json!({"folder": "one too many"})))
        .await
        .expect_problem(409);
    let last = app
        .send(put(&posts[11], json!({"folder": "夹子 1"})))
        .await
        .expect(200);
    let listed = app
        .get_auth(
            &format!("/me/favourites?folder=夹子 1&after={}", position(&last)),
            &a.token,
        )
        .await
        .expect(200);
    let items: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["post_id"].as_str().unwrap())
        .collect();
    assert_eq!(items, [posts[11].as_str(), posts[1].as_str()]);
    assert_eq!(listed["folders"].as_array().unwrap().len(), 10);
    assert_eq!(listed["folders"][0]["name"], "夹子 1");
    assert_eq!(listed["folders"][0]["count"], 2);
    let none = app
        .get_auth("/me/favourites?folder=", &a.token)
        .await
        .expect(200);
    assert_eq!(none["items"][0]["post_id"], posts[0].as_str());
    // Private: B sees none of A's.
    let theirs = app.get_auth("/me/favourites", &b.token).await.expect(200);
    assert!(theirs["items"].as_array().unwrap().is_empty());
    // Bad input.
    app.send(put(&posts[0], json!({"folder": ""})))
        .await
        .expect_problem(422);
    app.send(put(&posts[0], json!({"folder": "x".repeat(31)})))
        .await
        .expect_problem(422);
    app.send(put(&posts[0], json!({"folder": 3})))
        .await
        .expect_problem(422);
    app.send(put("0190a6d1-0000-7000-8000-000000000000", json!({})))
        .await
        .expect_problem(404);
    // A deleted post leaves the favourites; an unfavourite leaves the list.
    let deleted = app
        .delete(&format!("/posts/{}", posts[1]), &b.token)
        .await
        .expect(200);
    let dropped = app
        .delete(&format!("/me/favourites/{}", posts[0]), &a.token)
        .await
        .expect(200);
    assert!(position(&dropped) > position(&deleted));
    let before = app
        .get_auth(
            &format!("/me/favourites?limit=100&after={}", position(&dropped)),
            &a.token,
        )
        .await
        .expect(200);
    assert_eq!(before["items"].as_array().unwrap().len(), 10);
    let notified_before = notifications(&app, &b, position(&dropped)).await;
    app.rebuild(&admin.token, "inbox").await;
    let after = app
        .get_auth("/me/favourites?limit=100", &a.token)
        .await
        .expect(200);
    assert_eq!(after, before, "the same after a rebuild");
    assert_eq!(notifications(&app, &b, 0).await, notified_before);
    app.assert_no_server_errors();
}

/// Two `serve` processes on one PostgreSQL database: the one holding the stream runs no
/// projector at all, so what reaches its stream comes from the projection the other runs, and
/// a logout served by the other ends the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_on_another_process_is_fed_by_the_projection_and_ends_with_a_logout_there() {
    if !crate::helpers::on_postgres() {
        crate::helpers::skipped_here(
            "two servers on one database need TREEHOLE_TEST_HTTP_BACKEND=postgres",
        );
        return;
    }
    let here = spawn_app().await;
    let database_url = here.database_url.clone();
    let secret = hex::encode(here.secret());
    let there = crate::helpers::spawn_app_with(|s| {
        s.database_url = database_url.clone().map(Into::into);
        s.secret = Some(secret.clone().into());
        s.projectors = "none".into();
    })
    .await;
    let (a, b) = (here.new_user("ntwoa").await, here.new_user("ntwob").await);
    let post = named_post(&here, &a).await;
    let first = say(&here, &b, &post, "one", true).await;
    // `there` answers once it has observed the users projection's progress.
    there
        .get_auth(&format!("/me?after={}", position(&first)), &a.token)
        .await
        .expect(200);
    let mut stream = Stream::open(&there, &a.token, Some(0)).await;
    let missed = stream.drain(Duration::from_millis(700)).await;
    assert_eq!(
        missed.iter().map(seq).collect::<Vec<_>>(),
        vec![position(&first)]
    );
    let second = say(&here, &b, &post, "two", false).await;
    let live = stream
        .next(Duration::from_secs(10))
        .await
        .expect("open")
        .expect("the live event");
    assert_eq!(seq(&live), position(&second));
    here.delete("/sessions/current", &a.token).await.expect(200);
    let started = tokio::time::Instant::now();
    let ended = loop {
        match stream.next(Duration::from_secs(5)).await {
            Err(()) => break true,
            Ok(None) => break false,
            Ok(Some(_)) => {}
        }
    };
    assert!(ended, "the stream ends after a logout on the other process");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    here.assert_no_server_errors();
    there.assert_no_server_errors();
}

/// Sets the inbox retention's mark as if notifications up to `up_to` had been dropped (the
/// retention keeps 30 days, which a test cannot wait for).
async fn pretend_pruned(app: &TestApp, up_to: u64) {
    let up_to = up_to as i64;
    match &app.database_url {
        Some(url) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
            let g: i32 = sqlx::query_scalar(
                "SELECT number FROM generations WHERE projection = 'inbox' AND state = 'live'",
            )
            .fetch_one(&mut conn)
            .await
            .expect("the live inbox");
            sqlx::query(&format!(
                "INSERT INTO inbox_pruned_g{g} (id, up_to) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET up_to = excluded.up_to"
            ))
            .bind(up_to)
            .execute(&mut conn)
            .await
            .expect("the mark");
        }
        None => {
            // On the blocking pool: the test runs on a one-thread runtime that also runs the
            // server, whose read-model transactions span awaits. Waiting for the write lock on
            // that thread kept the server from ever finishing the transaction that held it
            // (two clean-clone runs failed on "database is locked", with 5 s and then 60 s).
            let path = app.data.join("readmodels.db");
            tokio::task::spawn_blocking(move || {
                let db = rusqlite::Connection::open(path).expect("the file");
                db.busy_timeout(Duration::from_secs(60)).expect("a timeout");
                let g: i64 = db
                    .query_row(
                        "SELECT number FROM generations \
                         WHERE projection = 'inbox' AND state = 'live'",
                        [],
                        |r| r.get(0),
                    )
                    .expect("the live inbox");
                db.execute(
                    &format!("INSERT OR REPLACE INTO inbox_pruned_g{g} (id, up_to) VALUES (1, ?1)"),
                    [up_to],
                )
                .expect("the mark");
            })
            .await
            .expect("the mark's task");
        }
    }
}

#[tokio::test]
async fn a_stream_further_behind_than_the_retention_is_told_to_reset_then_gets_live_events() {
    let app = spawn_app().await;
    let (a, b) = (app.new_user("nreseta").await, app.new_user("nresetb").await);
    let post = named_post(&app, &a).await;
    let mut last = Value::Null;
    for i in 0..3 {
        last = say(&app, &b, &post, &format!("{i}"), false).await;
    }
    notifications(&app, &a, position(&last)).await;
    pretend_pruned(&app, position(&last) - 1).await;
    // From 1: further back than what is kept.
    let mut stream = Stream::open(&app, &a.token, Some(1)).await;
    let first = stream
        .next(Duration::from_secs(5))
        .await
        .expect("open")
        .expect("an event");
    assert_eq!(first.event, "reset");
    assert!(first.id.is_none());
    assert_eq!(
        stream.next(Duration::from_millis(500)).await,
        Ok(None),
        "no replay"
    );
    let live = say(&app, &b, &post, "live", true).await;
    let next = stream
        .next(Duration::from_secs(10))
        .await
        .expect("open")
        .expect("the live event");
    assert_eq!(seq(&next), position(&live));
    // From the last one kept: no reset.
    let mut kept = Stream::open(&app, &a.token, Some(position(&last) - 1)).await;
    let got = kept.drain(Duration::from_millis(700)).await;
    assert_eq!(
        got.iter().map(seq).collect::<Vec<_>>(),
        vec![position(&last), position(&live)]
    );
}

#[tokio::test]
async fn a_user_may_hold_only_so_many_streams_open() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.rate_limits.enabled = true;
        s.rate_limits.streams_per_user = 2;
    })
    .await;
    let a = app.new_user("nstreamcap").await;
    let one = Stream::open(&app, &a.token, None).await;
    let _two = Stream::open(&app, &a.token, None).await;
    let third = app
        .send(
            app.client
                .get(app.url("/me/notifications/stream"))
                .bearer_auth(&a.token),
        )
        .await;
    third.expect_problem(429);
    // A closed stream frees its place.
    drop(one);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reply = app
            .client
            .get(app.url("/me/notifications/stream"))
            .bearer_auth(&a.token)
            .send()
            .await
            .expect("an answer");
        if reply.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_quiet_stream_gets_a_heartbeat_every_25_seconds() {
    let app = spawn_app().await;
    let a = app.new_user("nheartbeat").await;
    let mut stream = Stream::open(&app, &a.token, None).await;
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        if stream.buffer.contains(": heartbeat") {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.response.chunk()).await {
            Ok(Ok(Some(bytes))) => stream.buffer.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("no heartbeat within 30 s: {other:?}"),
        }
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(20) && waited <= Duration::from_secs(27),
        "a heartbeat after {waited:?}"
    );
}

/// A reply to an anonymous author who has left is accepted, and its event carries a sealed
/// addressee as any other does: the log does not say when the author left.
#[tokio::test]
async fn a_reply_to_an_author_who_left_looks_like_any_other_in_the_log() {
    let app = spawn_app().await;
    let (a, b, c) = (
        app.new_user("nlefta").await,
        app.new_user("nleftb").await,
        app.new_user("nleftc").await,
    );
    let post = named_post(&app, &a).await;
    let before = say(&app, &b, &post, "still here", true).await;
    app.request_code(&b.email).await.expect(202);
    let code = app.code_for(&b.email);
    crate::privacy::unregister(&app, &b.token, crate::helpers::PASSWORD, &code)
        .await
        .expect(200);
    let reply = app
        .comment(
            &c.token,
            &post,
            &json!({"body": "where did you go?", "anonymous": true,
                    "reply_to": before["comment_id"]}),
        )
        .await
        .expect(201);
    let stored = app
        .event_store()
        .read_all(position(&reply) - 1, 1)
        .await
        .expect("the log");
    let sealed = &stored[0].data["addressee"]["$sealed"];
    assert!(
        sealed["ct"].as_str().is_some_and(|ct| ct.len() > 40),
        "{sealed}"
    );
    // Nobody is told: the author is gone, and A follows the post only.
    let to_a = notifications(&app, &a, position(&reply)).await;
    assert_eq!(reasons(&to_a["items"][0]), ["followed"]);
    app.assert_no_server_errors();
}
