//! Bearer sessions served from memory (issue 15): a cached session still expires, and a session
//! ended by another process is refused once this process's users projection has applied the
//! end. (A logout in the same process: `auth::logout_kills_the_token_on_the_very_next_request`.)
//!
//! Per-device sessions (issue 19): at most `sessions.max_per_user` live sessions, the oldest
//! evicted by a newer login, under concurrency too; `GET /me/sessions` lists exactly the live
//! ones; `DELETE /me/sessions/{id}` ends one, refused by its very next request; sessions from
//! before user streams recorded them still count; last-seen days recorded apart from requests.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use commands::sessions::{Login, NoEarlierSessions, SessionPolicy};
use commands::{
    CommandContext, CommandHandler, EventStore, ExpectedVersion, Passwords, StreamWrite, sessions,
};
use domain::session::SessionEvent;
use domain::{NewEvent, SessionId, UserId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    PASSWORD, TestApp, on_postgres, position, spawn_app, spawn_app_with, str_field,
};

/// `GET /me` twice: the first reads the session from SQL, the second from the cache.
async fn me_twice(app: &TestApp, token: &str, after: u64) {
    app.get_auth(&format!("/me?after={after}"), token)
        .await
        .expect(200);
    app.get_auth("/me", token).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cached_session_is_refused_once_it_expires() {
    let app = spawn_app().await;
    app.new_user("brief_visit").await;
    // A session of two seconds, opened through the command side: the server's sessions last
    // hours.
    let session = login_directly(&app, "brief_visit", Duration::seconds(2), Utc::now()).await;
    me_twice(&app, &session.token, session.position).await;

    let left = session.expires_at - Utc::now() + Duration::milliseconds(200);
    tokio::time::sleep(left.to_std().unwrap_or_default()).await;
    let kind = app
        .get_auth("/me", &session.token)
        .await
        .expect_problem(401);
    assert_eq!(kind, "urn:treehole:problem:unauthorized");
    app.create_post(&session.token, &json!({"body": "late", "anonymous": true}))
        .await
        .expect_problem(401);
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_on_another_server_is_refused_once_the_users_projection_has_applied_it() {
    // `here` serves the logins and logouts and projects nothing; `there` runs the projectors,
    // so its own users projection applies each logout it must then honour.
    logout_elsewhere("none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_on_another_server_is_refused_when_both_servers_project() {
    // Both projectors race for each batch; the loser re-attaches past events it never applied.
    logout_elsewhere("all").await;
}

/// Logs in and out on one server (running the projectors `here_projects`) while a second one
/// on the same PostgreSQL database, running all of them, authenticates the token.
async fn logout_elsewhere(here_projects: &str) {
    if !on_postgres() {
        crate::helpers::skipped_here(
            "two servers on one database need TREEHOLE_TEST_HTTP_BACKEND=postgres",
        );
        return;
    }
    let here = spawn_app_with(|s| s.projectors = here_projects.into()).await;
    let database_url = here.database_url.clone();
    // Replicas of one database share the server secret: it unwraps the users' data keys.
    let secret = hex::encode(here.secret());
    let there = spawn_app_with(|s| {
        s.database_url = database_url.clone().map(Into::into);
        s.secret = Some(secret.clone().into());
    })
    .await;
    let user = here.new_user("two_homes").await;
    for _ in 0..3 {
        let login = here.login_reply("two_homes", PASSWORD).await.expect(201);
        let token = login["token"].as_str().expect("a token").to_owned();
        me_twice(&there, &token, position(&login)).await;

        let out = here.delete("/sessions/current", &token).await.expect(200);
        let after = position(&out);
        let kind = there
            .get_auth(&format!("/me?after={after}"), &token)
            .await
            .expect_problem(401);
        assert_eq!(kind, "urn:treehole:problem:unauthorized");
        there
            .create_post(&token, &json!({"body": "ghost", "anonymous": true}))
            .await
            .expect_problem(401);
    }
    // Only those sessions ended.
    there.get_auth("/me", &user.token).await.expect(200);
    here.assert_no_server_errors();
    there.assert_no_server_errors();
}

/// A login through the command side, at `at`, for `ttl`, on a command handler of its own (as
/// another process would): what the server cannot be asked for (a session of seconds, one
/// opened days ago, logins that share no lock).
async fn login_on_own_handler(
    app: &TestApp,
    login: &str,
    ttl: Duration,
    at: chrono::DateTime<Utc>,
) -> Result<sessions::LoggedIn, sessions::LoginError> {
    let handler = CommandHandler::new(app.event_store());
    let passwords = Passwords::new(api::cli::config::Settings::default().password.policy())
        .expect("a password policy");
    let request = Login {
        login,
        password: PASSWORD,
        device: None,
    };
    let policy = SessionPolicy {
        ttl,
        max_per_user: 6,
    };
    let ctx = CommandContext::new(at);
    let secret = app.secret();
    sessions::login(
        &handler,
        &passwords,
        &secret,
        &NoEarlierSessions,
        request,
        policy,
        &ctx,
    )
    .await
}

/// [`login_on_own_handler`], which must succeed.
async fn login_directly(
    app: &TestApp,
    login: &str,
    ttl: Duration,
    at: chrono::DateTime<Utc>,
) -> sessions::LoggedIn {
    login_on_own_handler(app, login, ttl, at)
        .await
        .expect("a login")
}

/// The session id a token carries (`<simple uuid>.<secret>`), hyphenated as the API shows it.
fn session_of(token: &str) -> String {
    let (id, _) = token.split_once('.').expect("a session token");
    Uuid::parse_str(id)
        .expect("a session id")
        .hyphenated()
        .to_string()
}

/// The ids of a listing, and the one marked `current`.
fn ids_and_current(listed: &[Value]) -> (BTreeSet<String>, Vec<String>) {
    let ids = listed
        .iter()
        .map(|s| str_field(s, "session_id").to_owned())
        .collect();
    let current = listed
        .iter()
        .filter(|s| s["current"] == true)
        .map(|s| str_field(s, "session_id").to_owned())
        .collect();
    (ids, current)
}

/// Asserts that exactly the tokens of `live` work and are listed, each marked `current` on its
/// own listing, and that the tokens of `dead` are refused.
async fn assert_live(app: &TestApp, live: &[String], dead: &[String], after: u64) {
    let wanted: BTreeSet<String> = live.iter().map(|t| session_of(t)).collect();
    for token in live {
        let listed = app.my_sessions(token, after).await;
        let (ids, current) = ids_and_current(&listed);
        assert_eq!(ids, wanted, "the listing shows exactly the live sessions");
        assert_eq!(
            current,
            vec![session_of(token)],
            "current marks the asking session"
        );
    }
    for token in dead {
        let kind = app
            .get_auth(&format!("/me?after={after}"), token)
            .await
            .expect_problem(401);
        assert_eq!(kind, "urn:treehole:problem:unauthorized");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seventh_login_ends_the_oldest_session() {
    let app = spawn_app().await;
    let first = app.new_user("seven_devices").await.token;
    let mut tokens = vec![first];
    let mut last = 0;
    for n in 2..=6 {
        let reply = app
            .login_on("seven_devices", &format!("device {n}"))
            .await
            .expect(201);
        last = position(&reply);
        tokens.push(str_field(&reply, "token").to_owned());
    }
    assert_live(&app, &tokens, &[], last).await;
    let seventh = app.login_on("seven_devices", "device 7").await.expect(201);
    assert_eq!(
        str_field(&seventh, "session_id"),
        session_of(str_field(&seventh, "token"))
    );
    // The answer waited for the users projection: the oldest token is dead on the very next
    // request, without `?after=`.
    let oldest = tokens.remove(0);
    app.get_auth("/me", &oldest).await.expect_problem(401);
    tokens.push(str_field(&seventh, "token").to_owned());
    for token in &tokens {
        app.get_auth("/me", token).await.expect(200);
    }
    assert_live(&app, &tokens, &[oldest], position(&seventh)).await;
    let listed = app.my_sessions(&tokens[5], position(&seventh)).await;
    let labels: Vec<&str> = listed.iter().map(|s| str_field(s, "device")).collect();
    assert_eq!(labels[0], "device 7", "newest first: {labels:?}");
    assert!(!labels.contains(&"device 1"));
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ending_session_b_from_a_refuses_b_on_its_next_request() {
    let app = spawn_app().await;
    let a = app.new_user("two_devices").await.token;
    let b = str_field(
        &app.login_on("two_devices", "tablet").await.expect(201),
        "token",
    )
    .to_owned();
    // B is cached in this process: its next request must still be refused.
    app.get_auth("/me", &b).await.expect(200);
    app.get_auth("/me", &b).await.expect(200);
    let reply = app
        .delete(&format!("/me/sessions/{}", session_of(&b)), &a)
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert!(
        crate::helpers::position(&reply.json()) > 0,
        "{}",
        reply.text
    );
    let kind = app.get_auth("/me", &b).await.expect_problem(401);
    assert_eq!(kind, "urn:treehole:problem:unauthorized");
    app.create_post(
        &b,
        &json!({"body": "from the lost tablet", "anonymous": true}),
    )
    .await
    .expect_problem(401);
    app.get_auth("/me", &a).await.expect(200);
    let head = app.head().await;
    assert_live(
        &app,
        std::slice::from_ref(&a),
        std::slice::from_ref(&b),
        head,
    )
    .await;
    // B's id is now unknown to A, and to B itself.
    app.delete(&format!("/me/sessions/{}", session_of(&b)), &a)
        .await
        .expect_problem(404);
    // A may end itself this way too: a logout by id.
    let c = app.login("two_devices", PASSWORD).await;
    let reply = app
        .delete(&format!("/me/sessions/{}", session_of(&a)), &a)
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert!(
        crate::helpers::position(&reply.json()) > 0,
        "{}",
        reply.text
    );
    app.get_auth("/me", &a).await.expect_problem(401);
    app.get_auth("/me", &c).await.expect(200);
    assert_eq!(
        app.head().await,
        head + 4,
        "one login and one end, an event on two streams each"
    );
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_list_shows_exactly_the_live_sessions() {
    let app = spawn_app_with(|s| s.sessions.max_per_user = 3).await;
    let other = app.new_user("someone_else").await;
    let first = app.new_user("lister").await.token;
    // A session that expires in two seconds, opened on the command side.
    let brief = login_directly(&app, "lister", Duration::seconds(2), Utc::now()).await;
    let second = app.login("lister", PASSWORD).await;
    let mut live = vec![first.clone(), brief.token.clone(), second.clone()];
    let head = app.head().await;
    assert_live(&app, &live, &[], head).await;
    let listed = app.my_sessions(&first, head).await;
    for s in &listed {
        let session_id = str_field(s, "session_id");
        assert!(Uuid::parse_str(session_id).is_ok());
        assert!(s["device"].is_null(), "{s}");
        let created: chrono::DateTime<Utc> = str_field(s, "created_at").parse().expect("a time");
        assert_eq!(str_field(s, "last_seen"), created.date_naive().to_string());
        assert!(
            str_field(s, "expires_at")
                .parse::<chrono::DateTime<Utc>>()
                .is_ok()
        );
    }
    // An end: gone from every listing.
    let reply = app
        .delete(&format!("/me/sessions/{}", session_of(&second)), &first)
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert!(
        crate::helpers::position(&reply.json()) > 0,
        "{}",
        reply.text
    );
    live.retain(|t| *t != second);
    let head = app.head().await;
    assert_live(&app, &live, std::slice::from_ref(&second), head).await;
    // An expiry: gone from the listing, without any event.
    let left = brief.expires_at - Utc::now() + Duration::milliseconds(200);
    tokio::time::sleep(left.to_std().unwrap_or_default()).await;
    live.retain(|t| *t != brief.token);
    assert_live(&app, &live, std::slice::from_ref(&brief.token), head).await;
    assert_eq!(app.head().await, head);
    // Evictions: three more logins under a cap of three leave those three. The expired session
    // is closed, not evicted, so `first` goes only with the third.
    let mut newer = Vec::new();
    for _ in 0..3 {
        newer.push(app.login("lister", PASSWORD).await);
    }
    let head = app.head().await;
    assert_live(&app, &newer, &[first], head).await;
    // Another user's sessions are theirs alone, and never listed here.
    let mine: BTreeSet<String> = ids_and_current(&app.my_sessions(&newer[0], head).await).0;
    assert!(!mine.contains(&session_of(&other.token)));
    assert_live(&app, std::slice::from_ref(&other.token), &[], head).await;
    app.assert_no_server_errors();
}

/// Logs `user` in `n` times at once, on `apps` in turn; returns the tokens and the highest
/// position answered. Every login succeeds.
async fn logins_at_once(apps: &[&TestApp], user: &str, n: usize) -> (Vec<String>, u64) {
    let logins = (0..n).map(|i| {
        let app = apps[i % apps.len()];
        async move { app.login_on(user, &format!("rush {i}")).await }
    });
    let replies = futures::future::join_all(logins).await;
    let mut tokens = Vec::new();
    let mut last = 0;
    for reply in replies {
        let body = reply.expect(201);
        last = last.max(position(&body));
        tokens.push(str_field(&body, "token").to_owned());
    }
    (tokens, last)
}

/// Which of `tokens` `app` still accepts, after `after`.
async fn working(app: &TestApp, tokens: &[String], after: u64) -> Vec<String> {
    let mut live = Vec::new();
    for token in tokens {
        let reply = app.get_auth(&format!("/me?after={after}"), token).await;
        match reply.status.as_u16() {
            200 => live.push(token.clone()),
            401 => {}
            other => panic!("GET /me answered {other}: {}", reply.text),
        }
    }
    live
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_logins_leave_at_most_six_live() {
    let app = spawn_app().await;
    let first = app.new_user("rush_hour").await.token;
    let (mut tokens, last) = logins_at_once(&[&app], "rush_hour", 10).await;
    tokens.insert(0, first);
    let live = working(&app, &tokens, last).await;
    assert_eq!(live.len(), 6, "eleven logins, a cap of six");
    let dead: Vec<String> = tokens
        .iter()
        .filter(|t| !live.contains(t))
        .cloned()
        .collect();
    assert!(dead.contains(&tokens[0]), "the oldest went first");
    assert_live(&app, &live, &dead, last).await;
    app.assert_no_server_errors();
}

/// The same without the user stream's lock in between: each login runs on a command handler of
/// its own, as in separate processes, so only the atomic append's version expectations keep
/// the cap (on the embedded store too).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_without_a_shared_lock_leave_at_most_six_live() {
    let app = spawn_app().await;
    let first = app.new_user("no_lock").await.token;
    let logins =
        (0..10).map(|_| login_on_own_handler(&app, "no_lock", Duration::hours(1), Utc::now()));
    let mut tokens = vec![first];
    let mut last = 0;
    for outcome in futures::future::join_all(logins).await {
        match outcome {
            Ok(done) => {
                last = last.max(done.position);
                tokens.push(done.token);
            }
            // Ten writers on one stream may outlast the retries; that login then did nothing.
            Err(sessions::LoginError::Contention) => {}
            Err(e) => panic!("a login failed: {e}"),
        }
    }
    assert!(
        tokens.len() >= 7,
        "most logins got through: {}",
        tokens.len()
    );
    let live = working(&app, &tokens, last).await;
    assert_eq!(live.len(), 6);
    let dead: Vec<String> = tokens
        .iter()
        .filter(|t| !live.contains(t))
        .cloned()
        .collect();
    assert_live(&app, &live, &dead, last).await;
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_on_two_servers_leave_at_most_six_live() {
    if !on_postgres() {
        crate::helpers::skipped_here(
            "two servers on one database need TREEHOLE_TEST_HTTP_BACKEND=postgres",
        );
        return;
    }
    let here = spawn_app().await;
    let database_url = here.database_url.clone();
    let secret = hex::encode(here.secret());
    let there = spawn_app_with(|s| {
        s.database_url = database_url.clone().map(Into::into);
        s.secret = Some(secret.clone().into());
    })
    .await;
    here.new_user("two_doors").await;
    let (tokens, last) = logins_at_once(&[&here, &there], "two_doors", 16).await;
    let live = working(&there, &tokens, last).await;
    assert_eq!(live.len(), 6, "seventeen logins, a cap of six");
    let listed = there.my_sessions(&live[0], last).await;
    assert_eq!(listed.len(), live.len());
    assert_eq!(working(&here, &tokens, last).await, live);
    here.assert_no_server_errors();
    there.assert_no_server_errors();
}

/// Appends a session as a store written before user streams recorded sessions holds it: a
/// `SessionStarted` on its own stream and nothing on the user's. Returns its token.
async fn legacy_session(store: &dyn EventStore, user: UserId) -> (String, u64) {
    let session_id = SessionId::new(Uuid::now_v7());
    let token = format!(
        "{}.legacy-secret-{}",
        session_id.as_uuid().simple(),
        Uuid::new_v4().simple()
    );
    let started = SessionEvent::SessionStarted {
        session_id,
        user_id: user,
        token_hash: sessions::token_hash(&token),
        expires_at: Utc::now() + Duration::days(30),
        device: None,
    };
    let write = StreamWrite {
        stream: session_id.stream(),
        expected: ExpectedVersion::NoStream,
        events: vec![NewEvent::from_domain(
            &started,
            Uuid::now_v7(),
            Utc::now(),
            Default::default(),
        )],
    };
    let committed = store
        .append_many(vec![write], None)
        .await
        .expect("a legacy session");
    (token, committed.last_position())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_from_before_the_cap_still_work_and_count() {
    let app = spawn_app().await;
    let registered = app
        .register("old@campus.edu", "old_timer", PASSWORD)
        .await
        .expect(201);
    let user = UserId::new(Uuid::parse_str(str_field(&registered, "user_id")).expect("an id"));
    let mut legacy = Vec::new();
    let mut last = 0;
    for _ in 0..7 {
        let (token, at) = legacy_session(app.event_store().as_ref(), user).await;
        legacy.push(token);
        last = at;
    }
    // They work, and all seven are listed: the cap is decided at logins.
    assert_live(&app, &legacy, &[], last).await;
    // One can be ended from another, like any session.
    let ended = legacy.remove(3);
    let reply = app
        .delete(&format!("/me/sessions/{}", session_of(&ended)), &legacy[0])
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert!(
        crate::helpers::position(&reply.json()) > 0,
        "{}",
        reply.text
    );
    // The first login since counts the six left: with itself seven, so the oldest goes.
    let new = app.login_on("old_timer", "new phone").await.expect(201);
    let oldest = legacy.remove(0);
    legacy.push(str_field(&new, "token").to_owned());
    assert_live(&app, &legacy, &[oldest, ended], position(&new)).await;
    // From then on the user's stream keeps count: the next login evicts the next oldest.
    let newer = app.login("old_timer", PASSWORD).await;
    let next = legacy.remove(0);
    legacy.push(newer);
    assert_live(&app, &legacy, &[next], app.head().await).await;
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_is_seen_once_a_day_and_recorded_apart_from_its_requests() {
    let app = spawn_app_with(|s| s.sessions.seen_flush_secs = 1).await;
    let other_device = app.new_user("regular").await.token;
    // A session opened two days ago: last seen then.
    let two_days_ago = Utc::now() - Duration::days(2);
    let old = login_directly(&app, "regular", Duration::days(31), two_days_ago).await;
    let mine = |listed: &[Value]| {
        listed
            .iter()
            .find(|s| s["session_id"] == session_of(&old.token))
            .cloned()
            .expect("the old session is listed")
    };
    // Used today, several times, an anonymous post among the uses.
    app.get_auth(&format!("/me?after={}", old.position), &old.token)
        .await
        .expect(200);
    let post = app
        .create_post(
            &old.token,
            &json!({"body": "written today", "anonymous": true}),
        )
        .await
        .expect(201);
    let request_id = post_request_id(&app, &post).await;
    let today = Utc::now().date_naive().to_string();
    let mut seen = Vec::new();
    for _ in 0..100 {
        app.get_auth("/me", &old.token).await.expect(200);
        seen = seen_events(&app, &old.session_id).await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen.len(), 1, "recorded within the flush interval");
    let event = &seen[0];
    assert_eq!(event.data["day"], today);
    assert_eq!(event.metadata.correlation_id, None, "no request id");
    assert_eq!(event.metadata.actor, None, "no actor");
    assert_ne!(event.metadata.correlation_id, request_id);
    // Listed from another session: the asking one is seen today by definition.
    let listed = app.my_sessions(&other_device, event.position).await;
    assert_eq!(mine(&listed)["last_seen"], today);
    let created: chrono::DateTime<Utc> = str_field(&mine(&listed), "created_at")
        .parse()
        .expect("a time");
    assert_eq!(created.date_naive(), two_days_ago.date_naive());
    // More use today records nothing more.
    for _ in 0..3 {
        app.get_auth("/me", &old.token).await.expect(200);
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
    assert_eq!(seen_events(&app, &old.session_id).await.len(), 1);
    app.assert_no_server_errors();
}

/// The request id of the command that wrote a post.
async fn post_request_id(app: &TestApp, post: &Value) -> Option<String> {
    let stream = format!("post-{}", str_field(post, "post_id"));
    let stream = domain::StreamId::parse(stream).expect("a post stream");
    let events = app
        .event_store()
        .read_stream(&stream, 1)
        .await
        .expect("the post");
    let id = events[0].metadata.correlation_id.clone();
    assert!(id.is_some(), "a post names its request");
    id
}

async fn seen_events(app: &TestApp, session: &SessionId) -> Vec<domain::Envelope> {
    app.event_store()
        .read_stream(&session.stream(), 1)
        .await
        .expect("the session's stream")
        .into_iter()
        .filter(|e| e.event_type == "SessionSeen")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_label_is_sealed_in_the_log_and_shown_to_its_owner_only() {
    let app = spawn_app().await;
    let other = app.new_user("neighbour").await;
    app.new_user("labeller").await;
    let label = "Zhang's 秘密 phone";
    let login = app
        .login_on("labeller", &format!("  {label} "))
        .await
        .expect(201);
    let token = str_field(&login, "token");
    let listed = app.my_sessions(token, position(&login)).await;
    let current: Vec<&Value> = listed.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current[0]["device"], label, "trimmed");
    let theirs = app.my_sessions(&other.token, position(&login)).await;
    assert!(!serde_json::to_string(&theirs).unwrap().contains("秘密"));
    let raw = app
        .event_store()
        .read_all_raw(0, 10_000)
        .await
        .expect("the log");
    let stored = serde_json::to_string(&raw).expect("JSON");
    assert!(!stored.contains("秘密"), "the label is sealed in the log");
    let export = app.get_auth("/me/export", token).await.expect(200);
    assert!(export["sessions"].to_string().contains(label));
    app.assert_no_server_errors();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_documented_device_label_bound_is_enforced() {
    let app = spawn_app().await;
    app.new_user("bounded").await;
    let doc = app
        .send(
            app.client
                .get(format!("{}/api/v1/openapi.json", app.address)),
        )
        .await
        .expect(200);
    let max = doc["components"]["schemas"]["LoginRequest"]["properties"]["device"]["maxLength"]
        .as_u64()
        .expect("a documented maximum") as usize;
    assert_eq!(max, 60);
    app.login_on("bounded", &"机".repeat(max)).await.expect(201);
    let head = app.head().await;
    app.login_on("bounded", &"机".repeat(max + 1))
        .await
        .expect_problem(422);
    assert_eq!(app.head().await, head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ending_someone_elses_session_is_answered_like_ending_none() {
    let app = spawn_app().await;
    let ann = app.new_user("ann_ends").await;
    let bob = app.new_user("bob_stays").await;
    let head = app.head().await;
    let theirs = app
        .delete(
            &format!("/me/sessions/{}", session_of(&bob.token)),
            &ann.token,
        )
        .await;
    let nobodys = app
        .delete(&format!("/me/sessions/{}", Uuid::now_v7()), &ann.token)
        .await;
    assert_eq!(theirs.expect_problem(404), nobodys.expect_problem(404));
    assert_eq!(theirs.text, nobodys.text, "the same answer, byte for byte");
    assert_eq!(app.head().await, head);
    app.get_auth("/me", &bob.token).await.expect(200);
    app.assert_no_server_errors();
}
