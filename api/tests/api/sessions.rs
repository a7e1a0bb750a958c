//! Bearer sessions served from memory (issue 15): a cached session still expires, and a session
//! ended by another process is refused once this process's users projection has applied the
//! end. (A logout in the same process: `auth::logout_kills_the_token_on_the_very_next_request`.)

use chrono::{Duration, Utc};
use commands::{CommandContext, CommandHandler, Passwords, sessions};
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, on_postgres, position, spawn_app, spawn_app_with};

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
    let handler = CommandHandler::new(app.event_store());
    let passwords = Passwords::new(api::config::Settings::default().password.policy())
        .expect("a password policy");
    let ttl = Duration::seconds(2);
    let session = sessions::login(
        &handler,
        &passwords,
        &app.secret(),
        "brief_visit",
        PASSWORD,
        ttl,
        &CommandContext::new(Utc::now()),
    )
    .await
    .expect("a login");
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
        s.database_url = database_url.clone();
        s.secret = Some(secret.clone());
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
